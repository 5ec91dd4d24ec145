"""The one benchmark toolkit: import the measuring helpers from here.

Sizes (``zerocopy._bench.units``), CPU and wall time counted one way
(``zerocopy._bench.timing``; its docstring says how CPU is counted and why),
the machine (``zerocopy._bench.machine``) and alternating rounds with their
spreads (``zerocopy._bench.rounds``) are the package's, because ``python -m
zerocopy bench`` uses them too; samples, process trees, the load meter and
rounds' summaries (:mod:`.measure`) and instruction counts (:mod:`.counting`)
are the scripts' alone.  This module holds no logic.
"""

from __future__ import annotations

from zerocopy._bench.machine import machine
from zerocopy._bench.rounds import run_rounds, spread
from zerocopy._bench.timing import CPU_ACCOUNTING, CpuTimes, process_cpu
from zerocopy._bench.units import GiB, KiB, MiB, human, parse_size, size_arg

from .counting import callgrind_instructions
from .measure import (
    LoadMeter,
    MemoryWatch,
    Sample,
    Stopwatch,
    machine_cpu,
    print_machine,
    print_round,
    process_tree,
    process_tree_cpu,
    summarize,
)

__all__ = [
    "CPU_ACCOUNTING",
    "CpuTimes",
    "GiB",
    "KiB",
    "LoadMeter",
    "MemoryWatch",
    "MiB",
    "Sample",
    "Stopwatch",
    "callgrind_instructions",
    "human",
    "machine",
    "machine_cpu",
    "parse_size",
    "print_machine",
    "print_round",
    "process_cpu",
    "process_tree",
    "process_tree_cpu",
    "run_rounds",
    "size_arg",
    "spread",
    "summarize",
]

"""The one benchmark toolkit: ``python -m zerocopy bench`` and benchmarks/ both use it.

Sizes (:mod:`.units`), CPU and wall time counted one way (:mod:`.timing`;
its docstring says how CPU is counted and why), the machine description
(:mod:`.machine`), alternating rounds with medians and spreads
(:mod:`.rounds`) and instruction counts (:mod:`.counting`).  This module
holds no logic; import from it.
"""

from __future__ import annotations

from .counting import callgrind_instructions
from .machine import LoadMeter, machine, print_machine
from .rounds import print_round, run_rounds, spread, summarize
from .timing import (
    CPU_ACCOUNTING,
    CpuTimes,
    Sample,
    Stopwatch,
    process_cpu,
    process_tree,
    process_tree_cpu,
)
from .units import GiB, KiB, MiB, human, parse_size, size_arg

__all__ = [
    "CPU_ACCOUNTING",
    "CpuTimes",
    "GiB",
    "KiB",
    "LoadMeter",
    "MiB",
    "Sample",
    "Stopwatch",
    "callgrind_instructions",
    "human",
    "machine",
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

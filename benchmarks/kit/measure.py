"""What only the scripts measure: samples, process trees, the machine's load, rounds' summaries.

Moved out of ``zerocopy._bench`` (issue 23): ``python -m zerocopy bench``
uses none of it, so the wheel no longer ships it.  CPU is counted as
``zerocopy._bench.timing`` says (its docstring says how and why); this module
adds a server's process tree, the :class:`Sample` a measured run gives,
:class:`LoadMeter` for how busy the machine was meanwhile, and the
per-variant summaries of :func:`zerocopy._bench.rounds.run_rounds`' results.
"""

from __future__ import annotations

import fcntl
import os
import statistics
import struct
import sys
import termios
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from zerocopy._bench import timing
from zerocopy._bench.rounds import spread
from zerocopy._bench.timing import CpuTimes, _stat_fields, process_cpu
from zerocopy._bench.units import GiB, KiB, MiB

__all__ = [
    "LoadMeter",
    "MemoryWatch",
    "Sample",
    "Stopwatch",
    "print_machine",
    "print_round",
    "process_tree",
    "process_tree_cpu",
    "summarize",
]


# --- samples -------------------------------------------------------------------


@dataclass
class Sample:
    """One measured run: wall seconds, CPU seconds, bytes moved, and notes."""

    seconds: float
    user: float
    sys: float
    nbytes: int
    info: dict[str, Any] = field(default_factory=dict)


class Stopwatch(timing.Stopwatch):
    """The package's :class:`~zerocopy._bench.timing.Stopwatch`, giving :class:`Sample` s."""

    def __enter__(self) -> Stopwatch:
        super().__enter__()
        return self

    def sample(self, nbytes: int, **info: Any) -> Sample:
        """This block's figures as a :class:`Sample` of *nbytes* bytes."""
        return Sample(self.seconds, self.user, self.sys, nbytes, info)


# --- a server and its workers ----------------------------------------------------


def _parent_ids() -> dict[int, int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(_stat_fields(int(entry))[1])
            except OSError:
                continue  # gone meanwhile
    return parent


def process_tree(root: int) -> set[int]:
    """*root* and its descendants still running (from ``/proc/<pid>/stat``'s parent ids)."""
    parent = _parent_ids()
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def process_tree_cpu(root: int) -> CpuTimes:
    """:func:`process_cpu` of *root* plus that of its descendants still running.

    For servers that fork workers (nginx): a live worker's CPU is not in its
    parent's ``cutime`` yet.  A reaped one's is, and it is no longer listed,
    so nothing is counted twice.
    """
    user = system = 0.0
    for pid in process_tree(root):
        try:
            cpu = process_cpu(pid)
        except OSError:
            continue
        user += cpu.user
        system += cpu.sys
    return CpuTimes(user, system)


# --- the machine meanwhile -------------------------------------------------------


def _shown(key: str, value: Any) -> Any:
    if key == "filesystem":
        return f"{value['type']} on {value['source']} (mounted at {value['mount']})"
    if key == "loadavg_at_start":
        return " ".join(f"{x:.2f}" for x in value)
    if key == "load_during_run":
        return (
            f"{value['wall_s']} s wall; CPU-s: this benchmark {value['own_cpu_s']}, "
            f"everything else {value['other_cpu_s']}, steal {value['steal_s']}"
        )
    return value


def print_machine(info: dict[str, Any]) -> None:
    """Print ``zerocopy._bench.machine.machine()``'s description, one ``key: value`` per line."""
    for key, value in info.items():
        print(f"{key + ':':<18}{_shown(key, value)}")


def _cpu_counters() -> tuple[float, float, float]:
    """(all CPUs' busy seconds, their steal seconds, this process's CPU)."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
    return busy / tick, v[7] / tick, process_cpu().total


def machine_cpu() -> tuple[float, float]:
    """(busy seconds of all CPUs: user, nice, system, irq, softirq; softirq seconds alone).

    The whole machine's CPU, for a figure that does not depend on which
    process the kernel charged (on loopback the receive work lands on the
    sender's, the proxy's or the receiver's CPU, and softirq may land on any).
    """
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / tick, v[6] / tick


class LoadMeter:
    """How busy the machine was with other work while the benchmark ran.

    Reads the CPU time of every CPU from /proc/stat and subtracts this
    process's (:func:`~zerocopy._bench.timing.process_cpu`: its threads and
    the children it reaped).  What remains is other processes plus kernel
    threads (some of which, such as ksoftirqd and writeback, may be working
    for us).  The benchmark's own peers and servers are reaped only at the
    end: give their *pids*, and their CPU (with their workers') over the
    block counts as the benchmark's, not as everything else's.
    """

    summary: dict[str, float]

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)

    def _ours(self) -> float:
        return sum(process_tree_cpu(pid).total for pid in self.pids)

    def __enter__(self) -> LoadMeter:
        self._ours0 = self._ours()
        self._t0 = perf_counter()
        self._c0 = _cpu_counters()
        return self

    def __exit__(self, *exc: object) -> None:
        c1 = _cpu_counters()
        wall = perf_counter() - self._t0
        ours = self._ours() - self._ours0
        busy, steal, own = (b - a for a, b in zip(self._c0, c1, strict=True))
        self.summary = {
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own + ours, 1),
            "other_cpu_s": round(max(0.0, busy - own - ours), 1),
            "steal_s": round(steal, 1),
        }


# --- a process's memory ----------------------------------------------------------------


class MemoryWatch:
    """Peak RSS, pipe descriptors and bytes held in pipes of process *pid*, every 50 ms.

    The bytes in a pipe are read with FIONREAD through ``/proc/<pid>/fd``:
    opening a pipe's read end there gives another descriptor of the same
    pipe.  Those bytes sit in pipe buffer pages, memory that RSS does not show.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss = 0
        self.pipes = 0
        self.pipe_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        assert self.pid is not None
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    self.rss = max(self.rss, int(line.split()[1]) * KiB)
        pipes = 0
        queued = 0
        fds = f"/proc/{self.pid}/fd"
        for name in os.listdir(fds):
            path = os.path.join(fds, name)
            try:
                if not os.readlink(path).startswith("pipe:"):
                    continue
                pipes += 1
                if os.stat(path, follow_symlinks=False).st_mode & 0o400:  # a read end
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                    try:
                        got = fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4)
                        queued += struct.unpack("i", got)[0]
                    finally:
                        os.close(fd)
            except OSError:
                continue  # closed meanwhile
        self.pipes = max(self.pipes, pipes)
        self.pipe_bytes = max(self.pipe_bytes, queued)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self._sample()
            except OSError:
                return

    def __enter__(self) -> MemoryWatch:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.pid:
            self._thread.join()

    def info(self) -> dict[str, Any]:
        if not self.pid:
            return {}
        return {
            "peak_rss_mib": self.rss / MiB,
            "peak_pipe_fds": self.pipes,
            "peak_pipe_mib": self.pipe_bytes / MiB,
        }


# --- rounds' figures ---------------------------------------------------------------


def print_round(label: str, samples: dict[str, Sample]) -> None:
    """An ``on_round`` for ``run_rounds``: each variant's GiB/s on one stderr line."""
    parts = [f"{name} {s.nbytes / GiB / s.seconds:.2f}" for name, s in samples.items()]
    print(f"  {label}: " + ", ".join(parts) + " GiB/s", file=sys.stderr, flush=True)


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Throughput (GiB/s) and CPU (s/GiB) medians and spreads of one variant's runs.

    Numeric ``info`` entries are summarised by their median, others by the
    set of values seen.
    """
    gib = [s.nbytes / GiB for s in samples]
    pairs = list(zip(gib, samples, strict=True))
    out: dict[str, Any] = {
        "runs": len(samples),
        "gib_s": spread([g / s.seconds for g, s in pairs]),
        "seconds": spread([s.seconds for s in samples]),
        "cpu_user_s_per_gib": statistics.median(s.user / g for g, s in pairs),
        "cpu_sys_s_per_gib": statistics.median(s.sys / g for g, s in pairs),
        "cpu_s_per_gib": statistics.median((s.user + s.sys) / g for g, s in pairs),
    }
    for key in samples[0].info:
        vals = [s.info.get(key) for s in samples]
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in vals):
            out[key] = statistics.median(vals)  # type: ignore[type-var]
        else:
            out[key] = sorted({str(x) for x in vals})
    return out

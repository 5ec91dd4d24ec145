"""CPU and wall time of a measured run, counted one way for every benchmark.

**How CPU is counted.**  A process's CPU time is the user and system time of
all of its threads plus that of the child processes it has waited for:
``getrusage(RUSAGE_SELF)`` + ``getrusage(RUSAGE_CHILDREN)`` for this process,
``utime + stime + cutime + cstime`` from ``/proc/<pid>/stat`` for another
one (see :func:`process_cpu`).  The same figure is used for the measuring
side, for peers that report their own CPU, and for proxies and servers
measured from outside.

Why the process and not the thread (``RUSAGE_THREAD``): what the benchmarks
compare is what moving the bytes costs the side being measured, and some of
the compared variants do part of that work off the calling thread: a relay
with a thread per direction, ``cp`` run as a subprocess, a server's worker
threads.  A thread's counter misses that work and so flatters exactly those
variants; the process's counter includes it.  In a single-threaded measuring
process (``python -m zerocopy bench`` and most scripts) the two agree.  The
peers that send or receive for a measured process are separate processes
that are waited for only after the last measured run, so their CPU never
lands in the measured figure.

``getrusage`` counts in microseconds; ``/proc/<pid>/stat`` in clock ticks
(usually 10 ms), so figures about another process need runs of a second or
more to mean much.
"""

from __future__ import annotations

import os
import resource
from time import perf_counter
from typing import NamedTuple

__all__ = ["CPU_ACCOUNTING", "CpuTimes", "Stopwatch", "process_cpu"]

#: One line for reports: what their CPU figures count.
CPU_ACCOUNTING = "user+system of the process, all its threads and the children it reaped"


class CpuTimes(NamedTuple):
    """User and system CPU seconds."""

    user: float
    sys: float

    @property
    def total(self) -> float:
        return self.user + self.sys

    def minus(self, before: CpuTimes) -> CpuTimes:
        """The CPU spent since *before*."""
        return CpuTimes(self.user - before.user, self.sys - before.sys)


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 is index 0)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        stat = f.read()
    # The command name, in parentheses, may hold spaces and ')': split after the last.
    return stat[stat.rindex(")") + 2 :].split()


def process_cpu(pid: int | None = None) -> CpuTimes:
    """CPU time so far of process *pid* (default: this one), counted as the module says."""
    if pid is None or pid == os.getpid():
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return CpuTimes(me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime)
    fields = _stat_fields(pid)
    tick = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: fields 14-17 of proc(5).
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return CpuTimes((utime + cutime) / tick, (stime + cstime) / tick)


class Stopwatch:
    """Wall time and :func:`process_cpu` (of *pid*, default this process) over a block."""

    seconds: float
    user: float
    sys: float

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid

    def __enter__(self) -> Stopwatch:
        self._cpu0 = process_cpu(self.pid)
        self._t0 = perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = perf_counter() - self._t0
        self.user, self.sys = process_cpu(self.pid).minus(self._cpu0)

"""What a benchmark ran on, and how busy the machine was meanwhile."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from time import perf_counter
from typing import Any

from .. import __version__, _backend
from .timing import CPU_ACCOUNTING, process_cpu
from .units import KiB, human

__all__ = ["LoadMeter", "machine", "print_machine"]


def _first_value(path: str, prefix: str) -> str | None:
    """The text after the first ':' on the first line of *path* starting with *prefix*."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return None


def _filesystem(path: str) -> dict[str, str]:
    """The longest mount point that contains *path* (from /proc/self/mounts)."""
    path = os.path.realpath(path)
    best = {"mount": "?", "type": "?", "source": "?"}
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            source, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best["mount"].replace("?", "")):
                best = {"mount": mnt, "type": fstype, "source": source}
    return best


def machine(workdir: str | None = None) -> dict[str, Any]:
    """Date, kernel, CPU, cores, memory, Python, zerocopy and its backend, load.

    With *workdir*, also the filesystem the benchmark's files live on.
    """
    mem = _first_value("/proc/meminfo", "MemTotal:")
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu": _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory": human(int(mem.split()[0]) * KiB) if mem else "?",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "zerocopy": __version__,
        "backend": _backend.current().NAME,
        "cpu_accounting": CPU_ACCOUNTING,
        "loadavg_at_start": os.getloadavg(),
    }
    if workdir is not None:
        info["workdir"] = workdir
        info["filesystem"] = _filesystem(workdir)
    return info


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
    """Print :func:`machine`'s description, one ``key: value`` per line."""
    for key, value in info.items():
        print(f"{key + ':':<18}{_shown(key, value)}")


def _cpu_counters() -> tuple[float, float, float]:
    """(all CPUs' busy seconds, their steal seconds, this process's CPU)."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
    return busy / tick, v[7] / tick, process_cpu().total


class LoadMeter:
    """How busy the machine was with other work while the benchmark ran.

    Reads the CPU time of every CPU from /proc/stat and subtracts this
    process's (:func:`~zerocopy._bench.timing.process_cpu`: its threads and
    the children it reaped), so reap the peers inside the block or account
    for them.  What remains is other processes plus kernel threads (some of
    which, such as ksoftirqd and writeback, may be working for us).
    """

    summary: dict[str, float]

    def __enter__(self) -> LoadMeter:
        self._t0 = perf_counter()
        self._c0 = _cpu_counters()
        return self

    def __exit__(self, *exc: object) -> None:
        c1 = _cpu_counters()
        wall = perf_counter() - self._t0
        busy, steal, own = (b - a for a, b in zip(self._c0, c1, strict=True))
        self.summary = {
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own, 1),
            "other_cpu_s": round(max(0.0, busy - own), 1),
            "steal_s": round(steal, 1),
        }

"""What a benchmark ran on: the machine, its Python, zerocopy and its backend."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from typing import Any

from .. import __version__, _backend
from .timing import CPU_ACCOUNTING
from .units import KiB, human

__all__ = ["machine"]


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

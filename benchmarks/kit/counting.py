"""Counting instead of timing: user-space instructions of a command under callgrind.

Instruction counts repeat to within a few per call whatever else the
machine is doing, where timings here swing by 2x: per-call costs are
counted as the difference between a run making N calls and one making none.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["callgrind_instructions"]

_TOTAL = re.compile(r"Collected : (\d+)")


def callgrind_instructions(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """User-space instructions that *argv* executes under ``valgrind --tool=callgrind``.

    Raises :class:`subprocess.CalledProcessError` if the command fails, and
    :class:`RuntimeError` if callgrind printed no total.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    match = _TOTAL.search(proc.stderr)
    if match is None:
        raise RuntimeError(f"callgrind printed no total: {proc.stderr[-500:]}")
    return int(match[1])

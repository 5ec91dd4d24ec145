"""What ``import zerocopy`` costs: -X importtime medians and, where valgrind is, instructions.

Each tree is a checkout whose ``src/`` holds the package (with its compiled
module built in place); the first is the baseline.  Rounds alternate between
the trees (A B A B ...) after a warm-up round, in fresh interpreters.  Two
figures per tree:

- the median cumulative microseconds of the ``zerocopy`` line of
  ``python -X importtime -c "import zerocopy"`` (wall time: noisy on a busy
  machine, hence medians of many rounds);
- with ``--callgrind``, the user-space instructions of the same import under
  ``valgrind --tool=callgrind``, less those of a bare interpreter: exact and
  repeatable, whatever else the machine is doing.

It also lists which cffi and pycparser modules the import loaded.

    python benchmarks/import_cost.py /path/to/old-checkout . --rounds 15 --callgrind
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kit.toolkit import callgrind_instructions, machine, print_machine, spread

_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| zerocopy$")
_PROBE = (
    "import sys, zerocopy; "
    "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('cffi', 'pycparser'))))"
)


def _env(tree: Path) -> dict[str, str]:
    # Bytecode cached, as every import after a user's first: with
    # PYTHONDONTWRITEBYTECODE set (this machine sets it), each import compiles
    # every module from source, and a tree's cost grows with its source size
    # (2026-12-07: 432.6 vs 440.4 Minstr for the same modules; 245.4 vs 245.5
    # with their pyc files).
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def importtime_us(tree: Path) -> tuple[int, str]:
    """One fresh interpreter: the zerocopy line's cumulative us, and the compiler modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _PROBE],
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in proc.stderr.splitlines():
        if match := _LINE.match(line):
            return int(match[1]), proc.stdout.strip()
    raise RuntimeError(f"no zerocopy line in -X importtime output for {tree}")


def instructions(tree: Path | None, code: str) -> int:
    """User-space instructions of ``python -c code`` under callgrind."""
    env = _env(tree) if tree is not None else dict(os.environ)
    return callgrind_instructions([sys.executable, "-c", code], env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds per tree")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        parser.error("--callgrind needs valgrind (Debian: apt-get install valgrind)")
    print_machine(machine())
    trees: list[Path] = [t.resolve() for t in args.trees]
    times: dict[Path, list[int]] = {t: [] for t in trees}
    loaded: dict[Path, str] = {}
    for round_no in range(args.rounds + 1):
        for tree in trees:
            us, loaded[tree] = importtime_us(tree)
            if round_no:  # round 0 warms the page cache and the pyc files
                times[tree].append(us)
    bare = instructions(None, "pass") if args.callgrind else 0
    base = trees[0]
    print(f"\n{'tree':<40} {'importtime ms (median, min-max)':>32} {'ratio':>6}  {'Minstr':>8}")
    for tree in trees:
        s = spread(times[tree])
        ratio = s["median"] / spread(times[base])["median"]
        count = ""
        if args.callgrind:
            count = f"{(instructions(tree, 'import zerocopy') - bare) / 1e6:8.1f}"
        figure = f"{s['median'] / 1000:.1f} ({s['min'] / 1000:.1f}-{s['max'] / 1000:.1f})"
        print(f"{tree!s:<40} {figure:>32} {ratio:6.2f}  {count}")
        print(f"  cffi/pycparser modules loaded: {loaded[tree] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""shutil.copytree with and without zerocopy.patch_shutil(): wall time and CPU, side by side.

Two trees (issue 12):

- ``stdlib``: the installed standard library (thousands of files, median a
  few KB): where a drop-in must not be the slower choice;
- ``big``: 200 files of 1 MiB (``--big-files``, ``--big-size``): where the
  kernel's copy should pay.

Each round copies the tree once with plain shutil and once with
``patch_shutil()`` active, alternating (half the rounds put plain shutil
first, half the patched copy), after a warm-up round; each copy goes to a
new directory that is deleted right after its run.  CPU is this process's (the toolkit's one
accounting: ``zerocopy._bench.timing``).  Figures are medians with their
spread, and the ratio against plain shutil.

    python benchmarks/bench_copytree.py                      # both trees, 5 rounds
    python benchmarks/bench_copytree.py --trees big --repeat 9
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

from kit.toolkit import (
    MiB,
    Sample,
    Stopwatch,
    human,
    machine,
    print_machine,
    run_rounds,
    size_arg,
    spread,
)

import zerocopy

_SKIP = shutil.ignore_patterns("__pycache__", "site-packages", "*.pyc")


def tree_bytes(root: Path) -> tuple[int, int]:
    """(files, bytes) under *root*, as copytree with the ignore patterns copies them."""
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "site-packages")]
        for name in filenames:
            if name.endswith(".pyc"):
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                files += 1
                size += os.path.getsize(path)
    return files, size


def make_big_tree(root: Path, count: int, size: int) -> Path:
    """*count* files of *size* random bytes, written and read once (warm page cache)."""
    tree = root / "big"
    tree.mkdir()
    block = os.urandom(size)
    for i in range(count):
        (tree / f"f{i:04d}").write_bytes(block[i % 251 :] + block[: i % 251])
    for path in tree.iterdir():
        path.read_bytes()
    return tree


def copier(src: Path, work: Path, nbytes: int, patched: bool) -> Callable[[], Sample]:
    """One run: copytree *src* into a new directory under *work*, timed, then deleted."""

    def run() -> Sample:
        dst = Path(tempfile.mkdtemp(dir=work)) / "t"
        try:
            with Stopwatch() as sw:
                if patched:
                    with zerocopy.patch_shutil():
                        shutil.copytree(src, dst, ignore=_SKIP, symlinks=True)
                else:
                    shutil.copytree(src, dst, ignore=_SKIP, symlinks=True)
        finally:
            shutil.rmtree(dst.parent)
        return sw.sample(nbytes)

    return run


def report(name: str, results: dict[str, list[Sample]]) -> None:
    """Medians and spreads of wall time and CPU, and the ratios against plain shutil."""
    base_wall = spread([s.seconds for s in results["shutil"]])["median"]
    base_cpu = spread([s.user + s.sys for s in results["shutil"]])["median"]
    print(f"\n{name}")
    print(
        f"  {'variant':<22} {'wall s':>8} {'min-max':>13} {'CPU s':>7} {'speed x':>8} {'CPU x':>6}"
    )
    for variant, samples in results.items():
        wall = spread([s.seconds for s in samples])
        cpu = spread([s.user + s.sys for s in samples])["median"]
        print(
            f"  {variant:<22} {wall['median']:8.3f} {wall['min']:6.3f}-{wall['max']:<6.3f} "
            f"{cpu:7.3f} {base_wall / wall['median']:8.2f} {cpu / base_cpu:6.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", default="stdlib,big", help="stdlib, big, or both")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds")
    parser.add_argument("--big-files", type=int, default=200)
    parser.add_argument("--big-size", type=size_arg, default=MiB)
    args = parser.parse_args()
    print_machine(machine())
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        work = Path(tmp)
        trees = {}
        for name in args.trees.split(","):
            if name == "stdlib":
                trees[name] = Path(sysconfig.get_paths()["stdlib"])
            elif name == "big":
                trees[name] = make_big_tree(work, args.big_files, args.big_size)
            else:
                parser.error(f"unknown tree {name!r}: stdlib or big")
        for name, src in trees.items():
            files, nbytes = tree_bytes(src)
            label = f"{name}: {src} ({files} files, {human(nbytes)})"
            plain = ("shutil", copier(src, work, nbytes, patched=False))
            patched = ("patch_shutil()", copier(src, work, nbytes, patched=True))
            results = run_rounds([plain, patched], args.repeat)
            again = run_rounds([patched, plain], args.repeat, warmup=0)  # the other order too
            for key in results:
                results[key] += again[key]
            report(label, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-call cost of small copies and sends, counted instead of timed.

For each call (``copyfileobj`` over buffered ``open()`` objects, ``copyfile``,
and ``sendall`` of one buffer) and size, a fresh interpreter makes N calls,
and another makes none; both under ``valgrind --tool=callgrind`` (user-space
instructions) and under ``strace -c`` (system calls).  The difference,
divided by N, is the cost of one call, whatever else the machine is doing:
instruction counts repeat to within a few per call, system calls exactly.

Each copy is what a real caller pays: open the source, open the
destination, copy, close both.  Each send is one ``sendall`` over a
connected loopback TCP pair, another interpreter on the other end reading
(neither tool follows it, so only the sender is counted).  The
baseline is shutil (``shutil.copyfileobj``, ``shutil.copyfile``) and
``socket.sendall``.

    python benchmarks/count_small.py                 # the table for the installed zerocopy
    python benchmarks/count_small.py --tree ../old   # PYTHONPATH=../old/src: another checkout
    python benchmarks/count_small.py --calls 200 --only copyfile

Needs valgrind and strace (Debian: ``apt-get install valgrind strace``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kit.toolkit import (
    callgrind_instructions,
    human,
    machine,
    parse_size,
    print_machine,
)

#: The other end of the sendall measurement: connect, read to end of stream.
READER = r"""
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as b:
    while b.recv(1 << 20):
        pass
"""

#: The child: makes N calls of one kind, after the same set-up as with N = 0.
CHILD = r"""
import os, shutil, socket, sys, threading
impl, call, workdir = sys.argv[1], sys.argv[2], sys.argv[5]
size, n = int(sys.argv[3]), int(sys.argv[4])
import zerocopy
src = os.path.join(workdir, "src")
dst = os.path.join(workdir, "dst")
with open(src, "wb") as f:
    f.write(os.urandom(size))
if call == "copyfileobj":
    copy = shutil.copyfileobj if impl == "shutil" else zerocopy.copyfileobj
    for _ in range(n):
        with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
            copy(fsrc, fdst)
elif call == "copyfile":
    copy = shutil.copyfile if impl == "shutil" else zerocopy.copyfile
    for _ in range(n):
        copy(src, dst)
else:  # sendall; the reader is another interpreter, which neither tool follows
    import subprocess
    READER = __READER__
    listener = socket.create_server(("127.0.0.1", 0))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(listener.getsockname()[1])])
    a, _ = listener.accept()
    data = os.urandom(size)
    if impl == "shutil":
        send = a.sendall
    else:
        send = zerocopy.ZeroCopySender(a).sendall
    for _ in range(n):
        send(data)
    a.close()
    listener.close()
    reader.wait()
""".replace("__READER__", repr(READER))

CALLS = ("copyfileobj", "copyfile", "sendall")
BASELINE = {"copyfileobj": "shutil.copyfileobj", "copyfile": "shutil.copyfile"}


def _env(tree: Path | None) -> dict[str, str]:
    # A fixed hash seed: with a random one, dict layouts (and so instruction
    # counts) differ from child to child by a few thousand per call.
    env = dict(os.environ, PYTHONHASHSEED="0")
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "src")
    return env


def _child_args(impl: str, call: str, size: int, n: int, workdir: str) -> list[str]:
    return [sys.executable, "-c", CHILD, impl, call, str(size), str(n), workdir]


def instructions(tree: Path | None, impl: str, call: str, size: int, n: int) -> int:
    """User-space instructions of a child making *n* calls, under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        return callgrind_instructions(_child_args(impl, call, size, n, tmp), _env(tree))


def syscalls(tree: Path | None, impl: str, call: str, size: int, n: int) -> dict[str, int]:
    """System calls, by name, of a child making *n* calls, under strace (not its children)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.out"
        subprocess.run(
            ["strace", "-c", "-o", str(out), *_child_args(impl, call, size, n, tmp)],
            env=_env(tree),
            capture_output=True,
            check=True,
        )
        counts: dict[str, int] = {}
        for line in out.read_text().splitlines():
            fields = line.split()
            # "% time  seconds  usecs/call  calls  [errors]  syscall"
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3])
        return counts


def per_call(tree: Path | None, impl: str, call: str, size: int, n: int) -> dict[str, object]:
    """Instructions and system calls of one call: (N calls - none) / N."""
    instr = (instructions(tree, impl, call, size, n) - instructions(tree, impl, call, size, 0)) / n
    with_n = syscalls(tree, impl, call, size, n)
    without = syscalls(tree, impl, call, size, 0)
    by_name = {
        name: round((with_n.get(name, 0) - without.get(name, 0)) / n, 2)
        for name in sorted(set(with_n) | set(without))
    }
    by_name = {name: v for name, v in by_name.items() if v}
    return {"instructions": instr, "syscalls": sum(by_name.values()), "by_name": by_name}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="a checkout to measure (its src/ on PYTHONPATH)")
    parser.add_argument("--calls", type=int, default=1000, help="N, the calls per child")
    parser.add_argument("--sizes", default="4K,64K", help="comma-separated sizes")
    parser.add_argument("--only", choices=CALLS, action="append", help="measure only these calls")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install {tool})")
    if args.calls <= 0:
        parser.error("--calls must be > 0")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    print_machine(machine())
    if args.tree is not None:
        print(f"tree:             {args.tree.resolve()}")
    rows = []
    print(
        f"\n{'call':<12} {'size':>7} {'instr, zerocopy':>16} {'instr, baseline':>16} "
        f"{'ratio':>6} {'syscalls zc / base':>19}"
    )
    for call in args.only or CALLS:
        for size in sizes:
            zc = per_call(args.tree, "zerocopy", call, size, args.calls)
            base = per_call(args.tree, "shutil", call, size, args.calls)
            ratio = zc["instructions"] / base["instructions"]  # type: ignore[operator]
            print(
                f"{call:<12} {human(size):>7} {zc['instructions']:16,.0f} "
                f"{base['instructions']:16,.0f} {ratio:6.2f} "
                f"{zc['syscalls']:>9g} / {base['syscalls']:<7g}"
            )
            print(f"    zerocopy: {zc['by_name']}\n    baseline: {base['by_name']}")
            rows.append({"call": call, "size": size, "zerocopy": zc, "baseline": base})
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

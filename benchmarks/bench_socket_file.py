#!/usr/bin/env python3
"""Loopback TCP socket -> file: shutil over makefile('rb') against zerocopy.

Target (issue): zerocopy's throughput >= 1.1x ``shutil.copyfileobj(
sock.makefile('rb'), f)``.

The sender is a separate process (started once, reaped at the end): for each
run it connects, waits for a one-byte "go", sends ``--size`` bytes of a fixed
1 MiB pattern with ``sendall``, closes, and reports its CPU time for the run
on stdout.  This process accepts (untimed), then times from the "go" to end
of stream, writing into a new file that is deleted right after the run.

    python benchmarks/bench_socket_file.py [--size 1G] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

from kit import common as c
from kit.toolkit import (
    GiB,
    LoadMeter,
    MiB,
    Sample,
    Stopwatch,
    machine,
    print_round,
    run_rounds,
)

import zerocopy

#: The sender: one transfer per line on stdin; exits when stdin closes.
SENDER = r"""
import random, socket, sys
from kit.toolkit import process_cpu
port, size = int(sys.argv[1]), int(sys.argv[2])
block = memoryview(random.Random(0).randbytes(1 << 20))
for _ in sys.stdin:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.recv(1)
        cpu0 = process_cpu()
        left = size
        while left:
            n = min(left, len(block))
            sock.sendall(block[:n])
            left -= n
        sock.shutdown(socket.SHUT_WR)
        user, sys_ = process_cpu().minus(cpu0)
    print(user, sys_, flush=True)
"""


def _expected(path: str, size: int) -> bool:
    """True if *path* holds *size* bytes of the sender's repeated pattern."""
    block = random.Random(0).randbytes(MiB)
    with open(path, "rb") as f:
        left = size
        while left:
            want = min(left, len(block))
            if f.read(want) != block[:want]:
                return False
            left -= want
        return f.read(1) == b""


def main(argv: Sequence[str] | None = None) -> int:
    args = c.base_parser(__doc__.splitlines()[0], GiB).parse_args(argv)
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    dst = os.path.join(workdir, "dst")
    listener = socket.create_server(("127.0.0.1", 0))
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(listener.getsockname()[1]), str(args.size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None
    assert sender.stdout is not None

    def run(receive: Callable[[socket.socket], None], **info: object) -> Sample:
        """Start one transfer, time *receive* from "go" to end of stream."""
        sender.stdin.write("send\n")  # type: ignore[union-attr]
        sender.stdin.flush()  # type: ignore[union-attr]
        conn, _ = listener.accept()
        with conn, Stopwatch() as sw:
            conn.sendall(b"g")
            receive(conn)
        user, sys_ = map(float, sender.stdout.readline().split())  # type: ignore[union-attr]
        size = os.stat(dst).st_size
        if size != args.size or (args.verify and not _expected(dst, args.size)):
            raise AssertionError(f"bad copy: {size} bytes, expected {args.size}")
        c.unlink(dst)
        return sw.sample(size, sender_cpu_s_per_gib=(user + sys_) / (size / GiB), **info)

    def shutil_makefile() -> Sample:
        def receive(conn: socket.socket) -> None:
            with conn.makefile("rb") as r, open(dst, "wb") as f:
                shutil.copyfileobj(r, f)

        return run(receive)

    def zerocopy_copyfileobj() -> Sample:
        def receive(conn: socket.socket) -> None:
            with conn.makefile("rb") as r, open(dst, "wb") as f:
                zerocopy.copyfileobj(r, f)

        s = run(receive)
        s.info["method"] = zerocopy.last_method()
        return s

    def recv_into_write() -> Sample:
        # Not a target: one reused 1 MiB buffer, for the diagnosis.
        def receive(conn: socket.socket) -> None:
            buf = memoryview(bytearray(MiB))
            with open(dst, "wb", buffering=0) as f:
                while n := conn.recv_into(buf):
                    view = buf[:n]
                    while view:
                        view = view[f.write(view) :]

        return run(receive)

    variants = [
        ("shutil makefile", shutil_makefile),
        ("zerocopy.copyfileobj", zerocopy_copyfileobj),
        ("recv_into+write", recv_into_write),
    ]
    info = machine(workdir)
    with LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                results = run_rounds(
                    c.select(variants, args.only), args.repeat, on_round=print_round
                )
        finally:
            c.stop(sender)
            listener.close()
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_during_run"] = load.summary

    def notes(s: dict[str, object]) -> str:
        extra = f"sender {s['sender_cpu_s_per_gib']:.3f} CPU s/GiB"
        method = ",".join(s.get("method", []))  # type: ignore[arg-type]
        return f"{method}; {extra}" if method else extra

    base = "shutil makefile"
    targets = [c.Target("zerocopy.copyfileobj", base, "throughput", 1.1)]
    c.publish("loopback TCP -> file", args, info, results, base, targets, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

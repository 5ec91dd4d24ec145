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

import argparse
import os
import random
import shutil
import socket
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
    process_cpu,
    run_rounds,
)

import zerocopy


def role_sender(port: int, size: int) -> None:
    """The sender (``--role sender PORT SIZE``): per request, one connection of *size* bytes.

    It connects to *port*, waits for the receiver's "go" byte, sends the
    pattern of :func:`_expected`, and answers its own CPU time for the send.
    """
    block = memoryview(random.Random(0).randbytes(MiB))

    def send(request: dict[str, object]) -> dict[str, object]:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.recv(1)
            cpu0 = process_cpu()
            left = size
            while left:
                n = min(left, len(block))
                sock.sendall(block[:n])
                left -= n
            sock.shutdown(socket.SHUT_WR)
            cpu = process_cpu().minus(cpu0)
        return {"user": cpu.user, "sys": cpu.sys}

    c.serve_peer(send)


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
    parser = c.base_parser(__doc__.splitlines()[0], GiB)
    parser.add_argument("--role", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role_sender(int(args.role[1]), int(args.role[2]))
        return 0
    c.apply_quick(args)
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    dst = os.path.join(workdir, "dst")
    listener = socket.create_server(("127.0.0.1", 0))
    sender = c.Peer(__file__, "sender", str(listener.getsockname()[1]), str(args.size))

    def run(receive: Callable[[socket.socket], None], **info: object) -> Sample:
        """Start one transfer, time *receive* from "go" to end of stream."""
        sender.send({})
        conn, _ = listener.accept()
        with conn, Stopwatch() as sw:
            conn.sendall(b"g")
            receive(conn)
        cpu = sender.receive()
        user, sys_ = cpu["user"], cpu["sys"]
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
            sender.stop()
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

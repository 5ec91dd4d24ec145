#!/usr/bin/env python3
"""File -> loopback TCP socket: shutil over makefile('wb') against sendfile and zerocopy.

Targets (issue): zerocopy's throughput >= 1.3x ``shutil.copyfileobj(f,
sock.makefile('wb'))`` and >= 1.0x ``socket.sendfile``; the sender's CPU
<= 0.7x shutil's.

The receiver is a separate process (started once, reaped at the end, so its
CPU never lands in this process's ``RUSAGE_CHILDREN``): for every connection
it reads to end of stream with ``recv_into`` over one 1 MiB buffer, then
answers with the byte count and its own CPU time for that connection.  The
sender (this process, single-threaded) connects untimed, then times the copy
up to that answer, so a run ends when the last byte was received.

    python benchmarks/bench_file_socket.py [--size 1G] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import os
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


def role_receiver() -> None:
    """The receiver (``--role receiver``): per request, read one connection to its end.

    Answers the byte count and its own CPU time for that connection.
    """
    ls = socket.create_server(("127.0.0.1", 0))
    buf = memoryview(bytearray(MiB))

    def receive(request: dict[str, object]) -> dict[str, object]:
        conn, _ = ls.accept()
        with conn:
            cpu0 = process_cpu()
            total = 0
            while n := conn.recv_into(buf):
                total += n
            cpu = process_cpu().minus(cpu0)
        return {"bytes": total, "user": cpu.user, "sys": cpu.sys}

    c.serve_peer(receive, ports=[ls.getsockname()[1]])


Sender = Callable[[socket.socket, str, int], dict[str, object]]


# --- the senders: each sends the file on a connected socket ---------------------
#
# Each returns notes for its sample (the method zerocopy chose, if any).


def send_shutil(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    with open(src, "rb") as f, sock.makefile("wb") as w:
        shutil.copyfileobj(f, w)
    return {}


def send_socket_sendfile(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    with open(src, "rb") as f:
        sock.sendfile(f)
    return {}


def send_zerocopy_copyfileobj(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    with open(src, "rb") as f, sock.makefile("wb") as w:
        zerocopy.copyfileobj(f, w)
    return {"method": zerocopy.last_method() or ""}


def send_readinto(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    buf = memoryview(bytearray(MiB))
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            sock.sendall(buf[:n])
    return {}


def send_zerocopy_sendfile(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        offset = 0
        while n := zerocopy.sendfile(sock, fd, offset, size - offset):
            offset += n
    finally:
        os.close(fd)
    return {}


def send_splice(sock: socket.socket, src: str, size: int) -> dict[str, object]:
    """Not a target: file -> 1 MiB pipe -> socket, for the diagnosis."""
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    r, w = os.pipe()
    try:
        pipe_size = _grow_pipe(w)
        offset = 0
        while n := zerocopy.splice(fd, w, pipe_size, offset):
            offset += n
            while n:
                n -= zerocopy.splice(r, sock, n)
    finally:
        for x in (fd, r, w):
            os.close(x)
    return {}


SENDERS: list[tuple[str, Sender]] = [
    ("shutil makefile", send_shutil),
    ("socket.sendfile", send_socket_sendfile),
    ("zerocopy.copyfileobj", send_zerocopy_copyfileobj),
    ("readinto+sendall", send_readinto),
    ("zerocopy.sendfile", send_zerocopy_sendfile),
    ("splice via pipe", send_splice),
]


def timed_send(receiver: c.Peer, send: Sender, src: str, size: int) -> Sample:
    """Connect (untimed), then time *send* until the receiver confirms every byte."""
    receiver.send({})
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock, Stopwatch() as sw:
        info = send(sock, src, size)
        sock.shutdown(socket.SHUT_WR)
        got = receiver.receive()
    total, ruser, rsys = got["bytes"], got["user"], got["sys"]
    if total != size:
        raise AssertionError(f"receiver got {total} bytes, expected {size}")
    return sw.sample(total, receiver_cpu_s_per_gib=(ruser + rsys) / (total / GiB), **info)


def targets() -> list[c.Target]:
    base = "shutil makefile"
    out = []
    for name in ("zerocopy.copyfileobj", "zerocopy.sendfile"):
        out += [
            c.Target(name, base, "throughput", 1.3),
            c.Target(name, "socket.sendfile", "throughput", 1.0),
            c.Target(name, base, "cpu", 0.7),
        ]
    return out


def notes(s: dict[str, object]) -> str:
    extra = f"receiver {s['receiver_cpu_s_per_gib']:.3f} CPU s/GiB"
    method = ",".join(s.get("method", []))  # type: ignore[arg-type]
    return f"{method}; {extra}" if method else extra


def main(argv: Sequence[str] | None = None) -> int:
    parser = c.base_parser(__doc__.splitlines()[0], GiB)
    parser.add_argument("--role", choices=["receiver"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role_receiver()
        return 0
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    src = os.path.join(workdir, "src")
    receiver = c.Peer(__file__, "receiver")
    variants = [
        (name, functools.partial(timed_send, receiver, send, src, args.size))
        for name, send in SENDERS
    ]
    info = machine(workdir)
    with LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                c.fill_file(src, args.size)
                results = run_rounds(
                    c.select(variants, args.only), args.repeat, on_round=print_round
                )
        finally:
            receiver.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_during_run"] = load.summary
    c.publish("file -> loopback TCP", args, info, results, "shutil makefile", targets(), notes)
    return 0


def _grow_pipe(w: int) -> int:
    """Grow a pipe to 1 MiB, as zerocopy's pool does; return its size."""
    try:
        return fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MiB)
    except OSError:
        return fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""File -> loopback TCP: zerocopy.send_file against socket.sendfile and read+sendall loops.

Targets (issue): ``zerocopy.send_file``'s throughput >= 1.0x
``socket.socket.sendfile`` and >= 1.3x a 64 KiB ``read`` + ``sendall`` loop;
the sender's CPU <= 0.7x that loop's.  A 1 MiB ``readinto`` + ``sendall``
loop runs alongside for reference.

The receiver is a separate process (started once, reaped at the end): for
each connection it reads to end of stream with ``recv_into`` over one 1 MiB
buffer, then answers with the byte count and its own CPU time for that
connection.  The sender is this process's only thread: it connects
(untimed), then times the send up to the receiver's answer, so a run ends
when the last byte was received.  Sender CPU is this process's over the same
span (the toolkit's one accounting; with one thread, that thread's).  On
loopback part of the receive path (softirq) runs on the sending CPU and is
charged to the sender, for every variant alike.

    python benchmarks/bench_file_socket_sendfile.py [--size 1G] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence

from kit import common as c
from kit.toolkit import (
    GiB,
    KiB,
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


def role_receiver(verify: bool) -> None:
    """The receiver (``--role receiver [verify]``): per request, read one connection to its end.

    Answers the byte count, its own CPU time for that connection and, with
    *verify*, the blake2b-128 digest of what it got.
    """
    ls = socket.create_server(("127.0.0.1", 0))
    buf = memoryview(bytearray(MiB))

    def receive(request: dict[str, object]) -> dict[str, object]:
        conn, _ = ls.accept()
        h = hashlib.blake2b(digest_size=16)
        with conn:
            cpu0 = process_cpu()
            total = 0
            while n := conn.recv_into(buf):
                total += n
                if verify:
                    h.update(buf[:n])
            cpu = process_cpu().minus(cpu0)
        return {"bytes": total, "user": cpu.user, "sys": cpu.sys, "digest": h.hexdigest()}

    c.serve_peer(receive, ports=[ls.getsockname()[1]])


# --- the senders: each sends the file; returns the count it reports, if any ------


def send_zerocopy(sock: socket.socket, src: str) -> int | None:
    with open(src, "rb") as f:
        return zerocopy.send_file(sock, f)


def send_socket_sendfile(sock: socket.socket, src: str) -> int | None:
    with open(src, "rb") as f:
        return sock.sendfile(f)


def send_read_64k(sock: socket.socket, src: str) -> int | None:
    with open(src, "rb", buffering=0) as f:
        while data := f.read(64 * KiB):
            sock.sendall(data)
    return None


def send_readinto_1m(sock: socket.socket, src: str) -> int | None:
    buf = memoryview(bytearray(MiB))
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            sock.sendall(buf[:n])
    return None


SENDERS: list[tuple[str, Callable[[socket.socket, str], int | None]]] = [
    ("read 64K+sendall", send_read_64k),
    ("socket.sendfile", send_socket_sendfile),
    ("zerocopy.send_file", send_zerocopy),
    ("readinto 1M+sendall", send_readinto_1m),
]


class Transfer:
    """One timed send of *src* to the receiver on *port*, checked on arrival."""

    def __init__(self, receiver: c.Peer, src: str, size: int, digest: str | None) -> None:
        self.receiver, self.src, self.size, self.digest = receiver, src, size, digest

    def run(self, send: Callable[[socket.socket, str], int | None]) -> Sample:
        """Connect (untimed), then time *send* until the receiver confirms every byte."""
        self.receiver.send({})
        port = self.receiver.port
        with socket.create_connection(("127.0.0.1", port)) as sock, Stopwatch() as sw:
            sent = send(sock, self.src)
            sock.shutdown(socket.SHUT_WR)
            got = self.receiver.receive()
        total, ruser, rsys, digest = got["bytes"], got["user"], got["sys"], got["digest"]
        if total != self.size or (sent is not None and sent != self.size):
            raise AssertionError(f"receiver got {total} bytes, sent {sent}, wanted {self.size}")
        if self.digest is not None and digest != self.digest:
            raise AssertionError("the receiver got different bytes")
        return sw.sample(total, receiver_cpu_s_per_gib=(ruser + rsys) / (total / GiB))


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = c.base_parser(__doc__.splitlines()[0], GiB)
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role_receiver(args.role[1:] == ["verify"])
        return 0
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    src = os.path.join(workdir, "src")
    receiver = c.Peer(__file__, "receiver", *(["verify"] if args.verify else []))
    info = machine(workdir)
    with LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                c.fill_file(src, args.size)
                transfer = Transfer(receiver, src, args.size, _digest(src) if args.verify else None)
                variants = [(name, functools.partial(transfer.run, send)) for name, send in SENDERS]
                results = run_rounds(
                    c.select(variants, args.only), args.repeat, on_round=print_round
                )
        finally:
            receiver.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_during_run"] = load.summary

    base = "read 64K+sendall"
    targets = [
        c.Target("zerocopy.send_file", "socket.sendfile", "throughput", 1.0),
        c.Target("zerocopy.send_file", base, "throughput", 1.3),
        c.Target("zerocopy.send_file", base, "cpu", 0.7),
    ]

    def notes(s: dict[str, object]) -> str:
        return f"receiver {s['receiver_cpu_s_per_gib']:.3f} CPU s/GiB"

    c.publish("file -> loopback TCP (send_file)", args, info, results, base, targets, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

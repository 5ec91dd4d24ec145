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
when the last byte was received.  Sender CPU is ``getrusage(RUSAGE_THREAD)``
over the same span.  On loopback part of the receive path (softirq) runs on
the sending CPU and is charged to the sender, for every variant alike.

    python benchmarks/bench_file_socket_sendfile.py [--size 1G] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from time import perf_counter

import _common as c

import zerocopy

#: The receiver: prints its port, then serves connections one at a time until
#: its stdin closes.  With "verify" as argument it also hashes what it gets.
RECEIVER = r"""
import hashlib, resource, selectors, socket, struct, sys
verify = sys.argv[1:] == ["verify"]
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ)
sel.register(sys.stdin, selectors.EVENT_READ)
buf = memoryview(bytearray(1 << 20))
while True:
    if any(key.fileobj is sys.stdin for key, _ in sel.select()):
        break
    conn, _ = ls.accept()
    h = hashlib.blake2b(digest_size=16)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    total = 0
    while n := conn.recv_into(buf):
        total += n
        if verify:
            h.update(buf[:n])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    conn.sendall(struct.pack("!Qdd16s", total, r1.ru_utime - r0.ru_utime,
                             r1.ru_stime - r0.ru_stime, h.digest()))
    conn.close()
"""
_ACK = struct.Struct("!Qdd16s")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("receiver closed without an answer")
        data += chunk
    return data


class ThreadStopwatch:
    """Wall time and this thread's CPU time (``RUSAGE_THREAD``)."""

    def __enter__(self) -> ThreadStopwatch:
        self._r0 = resource.getrusage(resource.RUSAGE_THREAD)
        self._t0 = perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = perf_counter() - self._t0
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        self.user = r1.ru_utime - self._r0.ru_utime
        self.sys = r1.ru_stime - self._r0.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    args = c.base_parser(__doc__.splitlines()[0], c.GiB).parse_args(argv)
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    src = os.path.join(workdir, "src")
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, *(["verify"] if args.verify else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    expected_digest = b""

    def run(send: Callable[[socket.socket], int | None]) -> c.Sample:
        """Connect (untimed), then time *send* until the receiver confirms every byte."""
        with socket.create_connection(("127.0.0.1", port)) as sock, ThreadStopwatch() as sw:
            sent = send(sock)
            sock.shutdown(socket.SHUT_WR)
            total, ruser, rsys, digest = _ACK.unpack(_recv_exactly(sock, _ACK.size))
        if total != args.size or (sent is not None and sent != args.size):
            raise AssertionError(f"receiver got {total} bytes, sent {sent}, wanted {args.size}")
        if args.verify and digest != expected_digest:
            raise AssertionError("the receiver got different bytes")
        return c.Sample(
            sw.seconds,
            sw.user,
            sw.sys,
            total,
            {"receiver_cpu_s_per_gib": (ruser + rsys) / (total / c.GiB)},
        )

    def zerocopy_send_file() -> c.Sample:
        def send(sock: socket.socket) -> int:
            with open(src, "rb") as f:
                return zerocopy.send_file(sock, f)

        return run(send)

    def socket_sendfile() -> c.Sample:
        def send(sock: socket.socket) -> int:
            with open(src, "rb") as f:
                return sock.sendfile(f)

        return run(send)

    def read_64k() -> c.Sample:
        def send(sock: socket.socket) -> None:
            with open(src, "rb", buffering=0) as f:
                while data := f.read(64 * c.KiB):
                    sock.sendall(data)

        return run(send)

    def readinto_1m() -> c.Sample:
        def send(sock: socket.socket) -> None:
            buf = memoryview(bytearray(c.MiB))
            with open(src, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    sock.sendall(buf[:n])

        return run(send)

    variants = [
        ("read 64K+sendall", read_64k),
        ("socket.sendfile", socket_sendfile),
        ("zerocopy.send_file", zerocopy_send_file),
        ("readinto 1M+sendall", readinto_1m),
    ]
    machine = c.machine_info(workdir)
    machine["sender_cpu"] = "getrusage(RUSAGE_THREAD) of the sending thread"
    with c.LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                c.fill_file(src, args.size)
                if args.verify:
                    with open(src, "rb") as f:
                        expected_digest = hashlib.file_digest(
                            f, lambda: hashlib.blake2b(digest_size=16)
                        ).digest()
                results = c.run_rounds(c.select(variants, args.only), args.repeat)
        finally:
            c.stop(receiver)
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_during_run"] = load.summary

    base = "read 64K+sendall"
    targets = [
        c.Target("zerocopy.send_file", "socket.sendfile", "throughput", 1.0),
        c.Target("zerocopy.send_file", base, "throughput", 1.3),
        c.Target("zerocopy.send_file", base, "cpu", 0.7),
    ]

    def notes(s: dict[str, object]) -> str:
        return f"receiver {s['receiver_cpu_s_per_gib']:.3f} CPU s/GiB"

    c.publish("file -> loopback TCP (send_file)", args, machine, results, base, targets, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

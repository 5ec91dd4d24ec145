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

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

import _common as c

import zerocopy

#: The receiver: prints its port, then serves connections one at a time until
#: its stdin closes (so it never outlives this script).
RECEIVER = r"""
import resource, selectors, socket, struct, sys
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
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    conn.sendall(struct.pack("!Qdd", total, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
    conn.close()
"""
_ACK = struct.Struct("!Qdd")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("receiver closed without an answer")
        data += chunk
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = c.base_parser(__doc__.splitlines()[0], c.GiB).parse_args(argv)
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    src = os.path.join(workdir, "src")
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    assert receiver.stdin is not None
    port = int(receiver.stdout.readline())

    def run(send: Callable[[socket.socket], None]) -> c.Sample:
        """Connect (untimed), then time *send* until the receiver confirms every byte."""
        with socket.create_connection(("127.0.0.1", port)) as sock, c.Stopwatch() as sw:
            send(sock)
            sock.shutdown(socket.SHUT_WR)
            total, ruser, rsys = _ACK.unpack(_recv_exactly(sock, _ACK.size))
        if total != args.size:
            raise AssertionError(f"receiver got {total} bytes, expected {args.size}")
        gib = total / c.GiB
        return sw.sample(total, receiver_cpu_s_per_gib=(ruser + rsys) / gib)

    def shutil_makefile() -> c.Sample:
        def send(sock: socket.socket) -> None:
            with open(src, "rb") as f, sock.makefile("wb") as w:
                shutil.copyfileobj(f, w)

        return run(send)

    def socket_sendfile() -> c.Sample:
        def send(sock: socket.socket) -> None:
            with open(src, "rb") as f:
                sock.sendfile(f)

        return run(send)

    method = ""

    def zerocopy_copyfileobj() -> c.Sample:
        def send(sock: socket.socket) -> None:
            nonlocal method
            with open(src, "rb") as f, sock.makefile("wb") as w:
                zerocopy.copyfileobj(f, w)
            method = zerocopy.last_method() or ""

        s = run(send)
        s.info["method"] = method
        return s

    def readinto_sendall() -> c.Sample:
        def send(sock: socket.socket) -> None:
            buf = memoryview(bytearray(c.MiB))
            with open(src, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    sock.sendall(buf[:n])

        return run(send)

    def zerocopy_sendfile() -> c.Sample:
        def send(sock: socket.socket) -> None:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                offset = 0
                while n := zerocopy.sendfile(sock, fd, offset, args.size - offset):
                    offset += n
            finally:
                os.close(fd)

        return run(send)

    def splice_pipe() -> c.Sample:
        # Not a target: file -> 1 MiB pipe -> socket, for the diagnosis.
        def send(sock: socket.socket) -> None:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            r, w = os.pipe()
            try:
                size = _grow_pipe(w)
                offset = 0
                while n := zerocopy.splice(fd, w, size, offset):
                    offset += n
                    while n:
                        n -= zerocopy.splice(r, sock, n)
            finally:
                for x in (fd, r, w):
                    os.close(x)

        return run(send)

    variants = [
        ("shutil makefile", shutil_makefile),
        ("socket.sendfile", socket_sendfile),
        ("zerocopy.copyfileobj", zerocopy_copyfileobj),
        ("readinto+sendall", readinto_sendall),
        ("zerocopy.sendfile", zerocopy_sendfile),
        ("splice via pipe", splice_pipe),
    ]
    machine = c.machine_info(workdir)
    with c.LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                c.fill_file(src, args.size)
                results = c.run_rounds(c.select(variants, args.only), args.repeat)
        finally:
            c.stop(receiver)
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_during_run"] = load.summary

    base = "shutil makefile"
    targets = []
    for name in ("zerocopy.copyfileobj", "zerocopy.sendfile"):
        targets += [
            c.Target(name, base, "throughput", 1.3),
            c.Target(name, "socket.sendfile", "throughput", 1.0),
            c.Target(name, base, "cpu", 0.7),
        ]

    def notes(s: dict[str, object]) -> str:
        extra = f"receiver {s['receiver_cpu_s_per_gib']:.3f} CPU s/GiB"
        method = ",".join(s.get("method", []))  # type: ignore[arg-type]
        return f"{method}; {extra}" if method else extra

    c.publish("file -> loopback TCP", args, machine, results, base, targets, notes)
    return 0


def _grow_pipe(w: int) -> int:
    """Grow a pipe to 1 MiB, as zerocopy's pool does; return its size."""
    try:
        return fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, c.MiB)
    except OSError:
        return fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)


if __name__ == "__main__":
    sys.exit(main())

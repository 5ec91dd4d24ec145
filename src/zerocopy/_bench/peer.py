"""A benchmark peer in its own process, so its CPU is not the measured side's.

``python -m zerocopy._bench.peer sink``: accepts connections one after the
other, reads each to its end into one reused 1 MiB buffer, and prints the byte
count of each on a line.  ``... source SIZE``: sends SIZE bytes on each
accepted connection, then closes it.  Both print their port first.  Both stop
when their standard input closes.  They listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

__all__ = ["main"]


def _serve(listener: socket.socket, handle: object) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            handle(conn)  # type: ignore[operator]


def _sink(conn: socket.socket) -> None:
    buf = memoryview(bytearray(1 << 20))
    total = 0
    while n := conn.recv_into(buf):
        total += n
    print(total, flush=True)


def _source(size: int) -> object:
    chunk = memoryview(os.urandom(1 << 20))

    def handle(conn: socket.socket) -> None:
        left = size
        while left:
            view = chunk[: min(left, len(chunk))]
            conn.sendall(view)
            left -= len(view)

    return handle


def main(argv: list[str]) -> int:
    mode = argv[0]
    listener = socket.create_server(("127.0.0.1", 0))
    handle = _sink if mode == "sink" else _source(int(argv[1]))
    print(listener.getsockname()[1], flush=True)
    threading.Thread(target=_serve, args=(listener, handle), daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

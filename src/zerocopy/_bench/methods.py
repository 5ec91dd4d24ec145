"""The methods ``bench`` compares, one function each.

Each takes ``(src, dst, size, calls)``: fds (or, for memory sources, a
buffer), the bytes to move, and a one-element list counting the system calls
it makes.  Each moves exactly *size* bytes or raises.
"""

from __future__ import annotations

import mmap
import os
import socket
from collections.abc import Callable
from typing import Any

from .. import _lowlevel
from .._msg_zerocopy import ZeroCopySender
from .._pipes import default_pool

__all__ = ["METHODS", "Method"]

CHUNK = 1 << 20
SMALL = 64 * 1024

Method = Callable[[Any, int, int, list[int]], None]


def _write_all(fd: int, view: memoryview, calls: list[int]) -> None:
    while view:
        n = os.write(fd, view)
        calls[0] += 1
        view = view[n:]


def read_write(src: int, dst: int, size: int, calls: list[int]) -> None:
    left = size
    while left:
        data = os.read(src, min(SMALL, left))
        calls[0] += 1
        if not data:
            raise EOFError("source ended early")
        _write_all(dst, memoryview(data), calls)
        left -= len(data)


def readinto_write(src: int, dst: int, size: int, calls: list[int]) -> None:
    buf = memoryview(bytearray(CHUNK))
    left = size
    while left:
        n = os.readv(src, [buf[: min(CHUNK, left)]])
        calls[0] += 1
        if not n:
            raise EOFError("source ended early")
        _write_all(dst, buf[:n], calls)
        left -= n


def mmap_write(src: int, dst: int, size: int, calls: list[int]) -> None:
    with mmap.mmap(src, size, prot=mmap.PROT_READ) as mm:
        calls[0] += 1
        view = memoryview(mm)
        try:
            for off in range(0, size, CHUNK):
                _write_all(dst, view[off : off + CHUNK], calls)
        finally:
            view.release()


def sendfile(src: int, dst: int, size: int, calls: list[int]) -> None:
    left = size
    while left:
        n = _lowlevel.sendfile(dst, src, None, left)
        calls[0] += 1
        if not n:
            raise EOFError("source ended early")
        left -= n


def copy_file_range(src: int, dst: int, size: int, calls: list[int]) -> None:
    left = size
    while left:
        n = _lowlevel.copy_file_range(src, dst, left)
        calls[0] += 1
        if not n:
            raise EOFError("source ended early")
        left -= n


def _drain(pipe_r: int, dst: int, n: int, calls: list[int]) -> None:
    while n:
        n -= _lowlevel.splice(pipe_r, dst, n)
        calls[0] += 1


def splice(src: int, dst: int, size: int, calls: list[int]) -> None:
    with default_pool().lease() as pipe:
        left = size
        while left:
            n = _lowlevel.splice(src, pipe.w, min(pipe.size, left))
            calls[0] += 1
            if not n:
                raise EOFError("source ended early")
            _drain(pipe.r, dst, n, calls)
            left -= n


def vmsplice_splice(src: Any, dst: int, size: int, calls: list[int]) -> None:
    # The buffer stays alive and unchanged for the whole run, and every
    # chunk is drained from the pipe before the next: vmsplice's contract.
    view = memoryview(src)
    with default_pool().lease() as pipe:
        off = 0
        while off < size:
            n = _lowlevel.vmsplice(pipe.w, [view[off : off + min(pipe.size, size - off)]])
            calls[0] += 1
            _drain(pipe.r, dst, n, calls)
            off += n


def sendall(src: Any, dst: int, size: int, calls: list[int]) -> None:
    view = memoryview(src)
    for off in range(0, size, CHUNK):
        _write_all(dst, view[off : off + CHUNK], calls)


def _zerocopy_send(view: memoryview, dst: int, size: int, calls: list[int]) -> None:
    sock = socket.socket(fileno=os.dup(dst))
    try:
        sender = ZeroCopySender(sock, threshold=0, stop_on_copied=False)
        for off in range(0, size, CHUNK):
            sender.sendall(view[off : off + CHUNK])
            calls[0] += 1
            calls[0] += sender.poll() and 1
        sender.flush()
        calls[0] += 1
    finally:
        sock.close()


def msg_zerocopy_file(src: int, dst: int, size: int, calls: list[int]) -> None:
    with mmap.mmap(src, size, prot=mmap.PROT_READ) as mm:
        view = memoryview(mm)
        try:
            _zerocopy_send(view, dst, size, calls)
        finally:
            view.release()


def msg_zerocopy_memory(src: Any, dst: int, size: int, calls: list[int]) -> None:
    _zerocopy_send(memoryview(src), dst, size, calls)


def recv_send(src: int, dst: int, size: int, calls: list[int]) -> None:
    readinto_write(src, dst, size, calls)


#: scenario -> [(method name, function, feature it needs or None)]
METHODS: dict[str, list[tuple[str, Method, str | None]]] = {
    "file-file": [
        ("read/write", read_write, None),
        ("readinto/write", readinto_write, None),
        ("mmap+write", mmap_write, None),
        ("sendfile", sendfile, "sendfile"),
        ("splice", splice, "splice"),
        ("copy_file_range", copy_file_range, "copy_file_range"),
    ],
    "file-socket": [
        ("read/write", read_write, None),
        ("readinto/write", readinto_write, None),
        ("mmap+write", mmap_write, None),
        ("sendfile", sendfile, "sendfile"),
        ("splice", splice, "splice"),
        ("MSG_ZEROCOPY", msg_zerocopy_file, "msg_zerocopy"),
    ],
    "socket-socket": [
        ("readinto/write", recv_send, None),
        ("splice", splice, "splice"),
    ],
    "memory-socket": [
        ("write", sendall, None),
        ("vmsplice+splice", vmsplice_splice, "vmsplice"),
        ("MSG_ZEROCOPY", msg_zerocopy_memory, "msg_zerocopy"),
    ],
}

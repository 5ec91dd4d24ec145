"""Checks on the two sides of a relay, shared by its blocking, asyncio and anyio forms."""

from __future__ import annotations

import os
import socket

__all__ = ["check_distinct"]


def check_distinct(a: socket.socket, b: socket.socket) -> None:
    """Refuse *a* and *b* if they are one socket: :class:`ValueError`.

    The same object, two objects over one fd, or two fds of one socket
    (``dup``, ``fromfd``, a stream's socket beside the raw one) all name one
    kernel socket, and a relay between it and itself would echo every byte
    back to its peer.  sockfs gives every socket an inode of its own, so
    ``fstat`` tells them apart however many fds refer to it.
    """
    sa = os.fstat(a.fileno())
    sb = os.fstat(b.fileno())
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        raise ValueError("a and b are the same socket: a relay needs two connections")

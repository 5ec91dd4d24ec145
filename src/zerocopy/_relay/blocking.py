"""The blocking relay: on the relay hub (Linux), else the async relay's rounds with poll()."""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine
from typing import Any

from .._args import check_timeout
from .._loop import BlockingLoop, run_blocking
from .asyncloop import relay_sockets
from .sides import check_distinct

__all__ = ["check_relay_args", "relay", "run_on_sockets"]


def relay(a: socket.socket, b: socket.socket, *, timeout: float | None = None) -> tuple[int, int]:
    """Copy both directions between connected stream sockets *a* and *b* until both end.

    Bytes go through the kernel with ``splice`` via pooled pipes, one per
    direction while it has bytes in flight (an idle relay holds none).  An end
    of stream from one side becomes ``shutdown(SHUT_WR)`` on the other, and
    the other direction carries on.  Returns ``(a_to_b, b_to_a)``.

    On Linux the splices run in one of the process's relay hubs (threads,
    up to one per CPU) that step every relay in one C call per batch of
    wake-ups; this thread waits
    for the end (a signal handler's exception ends the relay first, counts
    final).  Elsewhere, or when no descriptor is left for the hub, the relay
    steps in this thread, waiting with ``poll()``.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`, one that is
    not a number a :class:`TypeError`).  *a* and *b* must be two sockets:
    one socket twice, under one fd or two, is a :class:`ValueError`.  A reset or
    error on either side stops both directions and raises it
    (``ConnectionResetError``, ``BrokenPipeError``...).  Every exception out
    of ``relay`` carries the bytes delivered so far as ``a_to_b`` and
    ``b_to_a`` (and the pair as ``bytes_transferred``).  The sockets are left
    open, their blocking mode restored; the caller closes them.
    """
    return run_on_sockets(a, b, timeout, lambda: relay_sockets(BlockingLoop(), a, b, timeout))


def run_on_sockets(
    a: socket.socket,
    b: socket.socket,
    timeout: float | None,
    transfer: Callable[[], Coroutine[Any, Any, tuple[int, int]]],
) -> tuple[int, int]:
    """What every blocking relay does around *transfer*: the checks, then the sockets
    non-blocking for its duration (their modes restored), run in this thread."""
    check_relay_args(a, b, timeout)
    saved = (a.gettimeout(), b.gettimeout())
    try:
        a.setblocking(False)
        b.setblocking(False)
        return run_blocking(transfer())
    finally:
        a.settimeout(saved[0])
        b.settimeout(saved[1])


def check_relay_args(a: socket.socket, b: socket.socket, timeout: float | None) -> None:
    """What :func:`relay` refuses before anything moves (TypeError, ValueError)."""
    for name, sock in (("a", a), ("b", b)):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{name} must be a socket.socket, not {type(sock).__name__}")
        if type(sock) is not socket.socket:
            # ssl.SSLSocket: splice would move ciphertext between the peers.
            raise TypeError(f"{name} must be a plain socket.socket, not {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
    check_timeout(timeout, negative=False)
    check_distinct(a, b)

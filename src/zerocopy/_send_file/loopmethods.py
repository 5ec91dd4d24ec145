"""``loop.sock_sendfile`` and ``loop.sendfile`` with asyncio's contract, sent by zerocopy.

The methods of :mod:`zerocopy.loops`' event loops.  asyncio documents both
(and CPython's ``base_events.py``, ``selector_events.py`` and
``unix_events.py`` define them); here is what they do on these loops, and
where that differs from CPython's selector loop:

* **The same**: the argument checks and their errors, in CPython's order;
  ``fallback=False`` with no native path raises
  :class:`asyncio.SendfileNotAvailableError` before anything moves;
  ``fallback=True`` reads and sends instead; a transport's write buffer goes
  out first and its reading is paused meanwhile (resumed afterwards); the
  file position is ``offset + sent`` afterwards when anything was sent,
  untouched otherwise; a closing transport is a :class:`RuntimeError`, so is
  a TLS transport with ``fallback=False`` and a transport with no socket.
* **Exact counts**: every exception, :class:`asyncio.CancelledError`
  included, carries ``bytes_transferred`` (``zerocopy.bytes_transferred``),
  and the position is ``offset + bytes_transferred`` then too.  CPython
  leaves the position untouched when the task is cancelled, and its
  fallback can leave it short of what went out.
* **Fairness**: each ``sendfile`` call asks for at most one slice and busy
  transfers of the loop take turns (:mod:`zerocopy._fair`); CPython's asks
  for the whole file in one call.
* **Only the bytes the file holds**: a pipe or a ``/proc`` file is read and
  sent (``fallback=True``) or refused (``fallback=False``); CPython's native
  path sends nothing for them when *count* is None (it sizes the call by
  ``st_size``, 0 there), and the compressed bytes of a ``GzipFile``'s fd.
* **An error that is not "not supported"** on the first call (``EPIPE``,
  ``ECONNRESET``) is raised as it is; CPython turns any first-call error
  into ``SendfileNotAvailableError`` (and, falling back, meets the same
  error again on its first ``send``).
* **uvloop**, which has neither method (uvloop issue 228), gets both.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from typing import Any

from .._aiostream import BorrowedSocket
from .._aiowait import AsyncioLoop
from .._errors import GiveUp, set_transferred
from .asyncloop import send
from .common import check_binary, check_offset_count, read_chunk, regular_fd, settle_position

__all__ = ["sendfile", "sock_sendfile"]

log = logging.getLogger("zerocopy")

#: The chunk of the read/write path through a transport the kernel cannot
#: send on (TLS): written once the transport has sent the one before.
WRITE_CHUNK = 256 * 1024


def _not_available(what: object, why: str) -> asyncio.SendfileNotAvailableError:
    exc = asyncio.SendfileNotAvailableError(f"sendfile is not available for {what!r}: {why}")
    set_transferred(exc, 0)
    return exc


def _check_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
    """asyncio's ``_check_sendfile_params``, in its order (and offsets below 2**63)."""
    check_binary(file)
    if sock is not None and sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    check_offset_count(offset, count)


async def sock_sendfile(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    file: Any,
    offset: int = 0,
    count: int | None = None,
    *,
    fallback: bool | None = True,
) -> int:
    """``loop.sock_sendfile``: *file* over non-blocking stream socket *sock*; bytes sent."""
    if loop.get_debug() and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    _check_params(sock, file, offset, count)
    if not fallback and regular_fd(file) is None:
        raise _not_available(file, "not a regular file")
    try:
        return await send(sock, AsyncioLoop(loop), file, offset, count, fallback=bool(fallback))
    except GiveUp as exc:
        raise _not_available(file, f"sendfile(2) cannot start ({exc})") from None


def _tls(transport: Any) -> bool:
    return (
        transport.get_extra_info("sslcontext") is not None
        or transport.get_extra_info("ssl_object") is not None
    )


async def sendfile(
    loop: asyncio.AbstractEventLoop,
    transport: Any,
    file: Any,
    offset: int = 0,
    count: int | None = None,
    *,
    fallback: bool = True,
) -> int:
    """``loop.sendfile``: *file* over stream *transport*; bytes sent.

    The transport's buffered bytes go out first, its reading is paused
    until this returns, and ``sendfile(2)`` sends on its socket.  A TLS
    transport is written to in chunks (``fallback=True``), as asyncio does.
    """
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    if _tls(transport):
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport "
                f"{transport!r}"
            )
        return await _write_chunks(loop, transport, file, offset, count)
    try:
        borrowed = BorrowedSocket.check(transport, "transport")
    except (TypeError, ValueError):
        raise RuntimeError(f"sendfile is not supported for transport {transport!r}") from None
    _check_params(None, file, offset, count)
    if not fallback and regular_fd(file) is None:
        raise _not_available(file, "not a regular file")
    try:
        lent = borrowed.lend()
        first = functools.partial(borrowed.drain, loop)  # what the transport holds goes first
        return await send(
            lent, AsyncioLoop(loop), file, offset, count, first=first, fallback=fallback
        )
    except GiveUp as exc:
        raise _not_available(file, f"sendfile(2) cannot start ({exc})") from None
    finally:
        borrowed.give_back()


async def _write_chunks(
    loop: asyncio.AbstractEventLoop, transport: Any, file: Any, offset: int, count: int | None
) -> int:
    """asyncio's fallback: read chunks in a worker thread and write them to *transport*.

    For transports whose socket carries something other than the file's
    bytes (TLS).  Each chunk is written once the transport has sent the one
    before, so at most one chunk waits in its buffer; the count is of bytes
    handed to the transport, as asyncio's fallback counts them.
    """
    _check_params(None, file, offset, count)
    log.debug("loop.sendfile: chunks written to %r (TLS: no sendfile(2))", transport)
    borrowed = BorrowedSocket(transport, "transport")
    sent = 0
    try:
        borrowed.lend()  # reading paused; the drain waits on its duplicate socket
        if offset:
            file.seek(offset)
        while count is None or sent < count:
            want = WRITE_CHUNK if count is None else min(WRITE_CHUNK, count - sent)
            # A fresh buffer each time: a transport may keep what it was given.
            buf = memoryview(bytearray(want))
            data = await loop.run_in_executor(None, read_chunk, file, buf)
            if not data:
                break
            await borrowed.drain(loop)
            transport.write(data)
            sent += len(data)
        return sent
    except BaseException as exc:
        set_transferred(exc, sent)
        raise
    finally:
        borrowed.give_back()
        settle_position(file, offset, sent, None)

"""asyncio versions: :func:`send_file` and :func:`relay` on the running loop, copies in a thread.

:func:`send_file` and :func:`relay` work on *non-blocking* sockets (as the
loop's own ``sock_*`` methods do): they try ``sendfile``/``splice`` first and
wait only on :class:`BlockingIOError`, for readiness reported by the event loop
(``add_reader``/``add_writer``; any loop that has them, uvloop included).
Nothing blocks the loop.  Cancellation is clean: the reader and writer
callbacks are removed, pooled pipes go back to the pool (or are closed if they
hold bytes), and the :class:`asyncio.CancelledError` says how far the transfer
got, like every other exception out of these functions.

:func:`copyfile` and :func:`copyfileobj` run their blocking namesakes in a
worker thread: regular files are always "ready", so there is nothing to wait
for on the loop, only a copy to keep off it.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import _backend, _copy, _copyfile
from ._aiowait import ErrorWatch, Waiter
from ._constants import MAX_RW_COUNT
from ._fd import FILE, check_timeout, kind_of, stream_fd
from ._kernel import FALLBACK_ERRNOS
from ._net import _check_params, _seekable
from ._relay import _STEP_BUDGET, Direction, annotate
from ._tally import Tally
from ._zc_aio import AsyncZeroCopySender

__all__ = ["AsyncZeroCopySender", "copyfile", "copyfileobj", "relay", "send_file"]

_PathT = TypeVar("_PathT")
_SEND_CHUNK = 1 << 30  # like socket.sendfile: at most 1 GiB per call
_COPY_CHUNK = 256 * 1024


def _check_socket(sock: Any, name: str) -> None:
    if isinstance(sock, ssl.SSLSocket):
        # The kernel would put plaintext on a TLS connection; asyncio's sock_*
        # methods refuse SSL sockets with TypeError too.
        raise TypeError(f"{name} must not be an ssl.SSLSocket")
    if sock.gettimeout() != 0.0:
        raise ValueError(f"{name} must be non-blocking (sock.setblocking(False))")


class _Sender:
    """One send_file call: its loop, socket, waiter and the bytes sent so far.

    ``sent`` is the running count; ``tally`` logs every call that sent, and
    is the exact count after an exception (see :mod:`zerocopy._tally`).
    """

    __slots__ = ("loop", "sent", "sock", "tally", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.sent = 0
        self.tally = Tally()
        self.waiter = Waiter(loop)

    async def writable(self) -> None:
        self.waiter.watch({(self.sock.fileno(), select.POLLOUT)})
        await self.waiter.wait()

    async def via_sendfile(self, fd: int, offset: int, count: int | None) -> bool:
        """Send with sendfile; False if it cannot start here (nothing sent)."""
        since_yield = 0
        sendfile = _backend.current().sendfile
        out = self.sock.fileno()
        while True:
            want = _SEND_CHUNK if count is None else min(count - self.sent, _SEND_CHUNK)
            if want <= 0:
                return True
            self.tally.fold()
            try:
                n = sendfile(out, fd, offset + self.sent, min(want, MAX_RW_COUNT), self.tally)
            except BlockingIOError:
                await self.writable()
                since_yield = 0
                continue
            except OSError as exc:
                if self.sent == 0 and exc.errno in FALLBACK_ERRNOS:
                    return False
                raise
            if n == 0:
                # End of file (it may have shrunk since we began), or procfs and
                # sysfs files, which report size 0: let read() have the last word.
                return self.sent > 0
            self.sent += n
            since_yield += n
            if since_yield >= _STEP_BUDGET:  # a fast peer must not starve the loop
                since_yield = 0
                await asyncio.sleep(0)

    async def send_all(self, data: memoryview) -> None:
        self.tally.fold()
        while data:
            try:
                k = self.tally.call(self.sock.send, (data,))
            except BlockingIOError:
                await self.writable()
                continue
            data = data[k:]
            self.sent += k

    async def via_send(self, file: Any, offset: int, count: int | None, threaded: bool) -> None:
        if offset:
            if not _seekable(file):
                raise ValueError(f"offset {offset} given for a file that cannot seek")
            file.seek(offset)
        buf = memoryview(bytearray(_COPY_CHUNK))
        while True:
            want = _COPY_CHUNK if count is None else min(count - self.sent, _COPY_CHUNK)
            if want <= 0:
                return
            if threaded:
                # A pipe or device may block: read it in a worker thread.
                data = await asyncio.to_thread(_read, file, buf[:want])
            else:
                data = _read(file, buf[:want])
            if not data:
                return
            await self.send_all(data)


def _read(file: Any, buf: memoryview) -> memoryview:
    readinto = getattr(file, "readinto", None)
    if readinto is not None:
        return buf[: readinto(buf) or 0]
    return memoryview(file.read(len(buf)))


async def send_file(
    sock: socket.socket, file: Any, offset: int = 0, count: int | None = None
) -> int:
    """Send *file* over non-blocking stream socket *sock* with ``sendfile(2)``; return bytes sent.

    The contract of :func:`zerocopy.send_file` and :meth:`socket.socket.sendfile`:
    sending starts at *offset* (the file position is not used), *count*
    ``None`` means to end of file, and the file position is left at
    ``offset + sent``.  *sock* must be non-blocking (:class:`ValueError`
    otherwise, as :meth:`asyncio.loop.sock_sendfile`); the task waits for
    writability on the running loop between partial sends.

    Regular files go out with ``sendfile``.  Other objects are read in chunks
    and sent with ``send``: those whose fd carries their bytes but is not a
    regular file (pipes, devices) are read in a worker thread; the rest
    (``BytesIO``, compressed files...) are read directly and must not block.
    A task cancelled during a worker-thread read loses the chunk being read
    (a pipe cannot be rewound).  A file that shrinks during the send ends
    cleanly.  Every exception after the checks, :class:`asyncio.CancelledError`
    included, carries ``bytes_transferred``.
    """
    _check_params(sock, file, offset, count)
    _check_socket(sock, "sock")
    sender = _Sender(asyncio.get_running_loop(), sock)
    try:
        fd = stream_fd(file, reading=True)
        regular = fd is not None and kind_of(os.fstat(fd).st_mode) == FILE
        if fd is not None and regular and await sender.via_sendfile(fd, offset, count):
            return sender.sent
        await sender.via_send(file, offset, count, threaded=fd is not None and not regular)
        return sender.sent
    except BaseException as exc:
        sender.sent = sender.tally.total()  # exact, whatever raised where
        exc.bytes_transferred = sender.sent  # type: ignore[attr-defined]
        raise
    finally:
        sender.waiter.close()
        # As socket.sendfile: the position follows what was sent.
        if sender.sent > 0 and _seekable(file):
            file.seek(offset + sender.sent)


async def relay(
    a: socket.socket, b: socket.socket, *, timeout: float | None = None
) -> tuple[int, int]:
    """Copy both directions between non-blocking stream sockets *a* and *b* until both end.

    The asyncio twin of :func:`zerocopy.relay`: ``splice`` through two pooled
    pipes, an end of stream from one side becomes ``shutdown(SHUT_WR)`` on the
    other while the other direction carries on, and the result is
    ``(a_to_b, b_to_a)``.  Readiness comes from the running loop.

    *timeout* is an idle timeout in seconds: if neither direction moves for
    that long, :class:`TimeoutError` is raised (``inf``, like None, never
    expires; a negative or NaN timeout is a :class:`ValueError`).  A reset on
    either side raises the original :class:`OSError` subclass, also on a side
    whose direction has already ended.  Every exception out of ``relay``,
    :class:`asyncio.CancelledError` included, carries ``a_to_b``, ``b_to_a``
    and ``bytes_transferred``.  The sockets stay open and non-blocking; the
    caller closes them.
    """
    for name, sock in (("a", a), ("b", b)):
        if not isinstance(sock, socket.socket):
            raise TypeError(f"{name} must be a socket.socket, not {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"{name} must be a SOCK_STREAM socket")
        _check_socket(sock, name)
    check_timeout(timeout, negative=False)
    loop = asyncio.get_running_loop()
    ab = Direction(a, b)
    ba = Direction(b, a)
    waiter = Waiter(loop)
    errors = ErrorWatch()
    try:
        await _relay_loop(loop, waiter, errors, ab, ba, timeout)
    except BaseException as exc:
        annotate(exc, ab, ba)
        raise
    finally:
        waiter.close()
        errors.close()  # after the waiter: its reader is on the epoll fd
        ab.close()
        ba.close()
    return ab.moved, ba.moved


async def _relay_loop(
    loop: asyncio.AbstractEventLoop,
    waiter: Waiter,
    errors: ErrorWatch,
    ab: Direction,
    ba: Direction,
    timeout: float | None,
) -> None:
    last_progress = loop.time()
    while True:
        if errors.key in waiter.fired:
            errors.check()
        progressed = False
        for d in (ab, ba):
            # Step a direction only when what it waits for fired (or it waits on
            # nothing: first round, or its step budget ran out).
            if not d.done and (d.waiting is None or d.waiting in waiter.fired):
                progressed |= d.step()
        waiter.fired.clear()
        if ab.done and ba.done:
            return
        if progressed:
            last_progress = loop.time()
        live = [d for d in (ab, ba) if not d.done]
        wanted = {d.waiting for d in live if d.waiting is not None}
        # As in the threaded relay, a side whose direction ended is still
        # watched for errors: a reset there must end the relay now, not after
        # the idle timeout (or never, without one).
        errors.watch(ab.src if ab.done else ba.src if ba.done else None)
        if errors.key is not None:
            wanted.add(errors.key)
        waiter.watch(wanted)
        if any(d.waiting is None for d in live):
            await asyncio.sleep(0)  # out of budget, not blocked: let other tasks run
            continue
        left = None
        if timeout is not None:
            left = timeout - (loop.time() - last_progress)
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "relay: idle timeout")
        await waiter.wait(left)


async def copyfile(src: Any, dst: _PathT, *, follow_symlinks: bool = True) -> _PathT:
    """Run :func:`zerocopy.copyfile` in a worker thread; return *dst*.

    Same errors as :func:`zerocopy.copyfile` (and :func:`shutil.copyfile`).
    Cancelling the task does not stop the worker: the copy runs to its end
    in the background, on files it opened and closes itself.
    """
    return await asyncio.to_thread(_copyfile.copyfile, src, dst, follow_symlinks=follow_symlinks)


class _Stopped(Exception):
    """Raised inside the worker to end a cancelled copyfileobj."""


async def copyfileobj(
    fsrc: Any,
    fdst: Any,
    length: int = 0,
    *,
    count: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Run :func:`zerocopy.copyfileobj` in a worker thread; return bytes copied.

    *progress* is called in the worker thread.  Cancelling the task stops the
    copy at its next chunk and waits for the worker to let go of *fsrc* and
    *fdst* (the caller may close them right after), then raises
    :class:`asyncio.CancelledError` with ``bytes_transferred``.
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    stop = threading.Event()

    def tick(total: int) -> None:
        if stop.is_set():
            raise _Stopped
        if progress is not None:
            progress(total)

    loop = asyncio.get_running_loop()
    call = functools.partial(
        contextvars.copy_context().run,
        _copy.copyfileobj,
        fsrc,
        fdst,
        length,
        count=count,
        progress=tick,
    )
    worker = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError as cancelled:
        stop.set()
        while not worker.done():
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                continue  # cancelled again: still wait for the worker
            except BaseException:
                break
        if worker.cancelled():
            cancelled.bytes_transferred = 0  # type: ignore[attr-defined]
        elif worker.exception() is not None:
            exc = worker.exception()
            cancelled.bytes_transferred = getattr(exc, "bytes_transferred", 0)  # type: ignore[attr-defined]
        else:
            cancelled.bytes_transferred = worker.result()  # type: ignore[attr-defined]
        raise

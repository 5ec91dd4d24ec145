"""Event loops whose ``sendfile`` and ``sock_sendfile`` go through zerocopy.

Frameworks that send files with ``loop.sendfile(transport, ...)`` (aiohttp's
``web.FileResponse`` and ``add_static``) or ``loop.sock_sendfile(sock, ...)``
send by ``sendfile(2)`` on these loops without any class of theirs changed,
on uvloop too (which has neither method: uvloop issue 228):

* :func:`new_event_loop`: asyncio's selector loop;
* :func:`new_uvloop`: uvloop's loop (the ``uvloop`` extra);

each a loop factory, for ``asyncio.Runner(loop_factory=...)``,
``asyncio.run(main(), loop_factory=...)`` (Python 3.12+),
``aiohttp.web.run_app(app, loop=new_uvloop())`` and uvicorn's
``--loop zerocopy.loops:new_uvloop``.  :class:`SendfileMixin` gives the two
methods to another loop class.

Both methods keep asyncio's documented contract (``fallback``, the file
position afterwards, the argument errors) and add zerocopy's: exact counts
on every exception (``bytes_transferred``), and the fairness rule, so that a
long body lets the loop's other tasks run (see
:mod:`zerocopy._send_file.loopmethods` for where they differ from CPython's
selector loop).  Importing this module imports neither uvloop nor a framework.
"""

from __future__ import annotations

import asyncio
import socket
from typing import IO, Any

from ._send_file import loopmethods

__all__ = ["SendfileMixin", "new_event_loop", "new_uvloop"]


class SendfileMixin:
    """``sendfile`` and ``sock_sendfile`` by zerocopy, for an asyncio event loop class.

    Put it first among the bases: ``class MyLoop(SendfileMixin, SomeLoop)``.
    """

    async def sock_sendfile(
        self,
        sock: socket.socket,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool | None = True,
    ) -> int:
        """Send *file* over non-blocking stream socket *sock*; return the bytes sent.

        asyncio's :meth:`~asyncio.loop.sock_sendfile`: from *offset* (the
        file position is not used), *count* bytes or to end of file; the
        position is ``offset + sent`` afterwards.  ``sendfile(2)`` where the
        file is a regular file; otherwise, with *fallback* true, read and
        ``send()``, else :class:`asyncio.SendfileNotAvailableError`.  Every
        exception, a cancellation included, carries ``bytes_transferred``.
        """
        loop: Any = self
        return await loopmethods.sock_sendfile(loop, sock, file, offset, count, fallback=fallback)

    async def sendfile(
        self,
        transport: asyncio.WriteTransport,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """Send *file* over stream *transport*; return the bytes sent.

        asyncio's :meth:`~asyncio.loop.sendfile`: what the transport buffers
        goes out first, its reading is paused until this returns, then the
        kernel sends on its socket (as :meth:`sock_sendfile`).  A TLS
        transport is written to in chunks with *fallback* true, else
        :class:`RuntimeError`; so is a closing transport, and one without a
        stream socket.  Nothing else may write to the transport meanwhile.
        """
        loop: Any = self
        return await loopmethods.sendfile(loop, transport, file, offset, count, fallback=fallback)


class _SelectorEventLoop(SendfileMixin, asyncio.SelectorEventLoop):
    """asyncio's selector loop, sendfile by zerocopy."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new asyncio selector event loop whose ``sendfile`` and ``sock_sendfile`` are zerocopy's."""
    return _SelectorEventLoop()


_uvloop_class: type[asyncio.AbstractEventLoop] | None = None


def new_uvloop() -> asyncio.AbstractEventLoop:
    """A new uvloop event loop with zerocopy's ``sendfile`` and ``sock_sendfile``.

    :class:`ImportError`, naming the extra to install, without uvloop.
    """
    global _uvloop_class
    if _uvloop_class is None:
        try:
            import uvloop
        except ImportError as exc:
            raise ImportError(
                "zerocopy.loops.new_uvloop needs uvloop: pip install uvloop "
                "(or, in a clone of zerocopy, pip install -e '.[uvloop]')"
            ) from exc

        class _UVLoop(SendfileMixin, uvloop.Loop):  # type: ignore[misc]
            """uvloop's loop, sendfile by zerocopy."""

        _UVLoop.__qualname__ = _UVLoop.__name__ = "UVLoop"
        _uvloop_class = _UVLoop
    return _uvloop_class()

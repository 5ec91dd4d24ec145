"""send_file under anyio (asyncio and trio backends), over a socket or an anyio SocketStream."""

from __future__ import annotations

import socket

import anyio.abc
import anyio.to_thread

from .._anyiowait import AnyioLoop, StreamSocket, by_stream
from .._errors import set_transferred
from .._types import SupportsRead
from .asyncloop import send
from .common import check_file_args, check_params

__all__ = ["send_file"]


async def send_file(
    sock: socket.socket | anyio.abc.SocketStream,
    file: SupportsRead[bytes],
    offset: int = 0,
    count: int | None = None,
) -> int:
    """Send *file* over *sock* with ``sendfile(2)``, under anyio; return the bytes sent.

    *sock* is a non-blocking stream ``socket.socket`` or an
    :class:`anyio.abc.SocketStream` (TCP or UNIX, either backend); a TLS
    stream is a :class:`TypeError`, a closed one a :class:`ValueError`.  The
    contract is :func:`zerocopy.aio.send_file`'s: sending starts at *offset*,
    *count* ``None`` means to end of file, the file position is left at
    ``offset + sent``, other objects than regular files are read and sent in
    chunks (pipes and devices in a worker thread), and every exception after
    the argument checks, a cancellation included (``CancelledError`` on
    asyncio, ``trio.Cancelled`` on trio), carries ``bytes_transferred``.

    A stream must not be sent on by another task meanwhile.  Its earlier
    sends go first, also those of a cancelled ``send()`` that an asyncio
    transport still holds (the transfer waits for them), and the stream is
    usable again afterwards.
    """
    if isinstance(sock, anyio.abc.SocketStream) and by_stream(sock):
        return await _send_by_stream(sock, file, offset, count)
    target = StreamSocket(sock, "sock")
    try:
        check_params(target.sock, file, offset, count)
        return await send(target.sock, AnyioLoop(), file, offset, count, first=target.drain)
    finally:
        target.close()


#: Bytes per read and ``send()`` when a file goes through the stream's own send.
_CHUNK = 1 << 16


async def _send_by_stream(
    stream: anyio.abc.SocketStream, file: SupportsRead[bytes], offset: int, count: int | None
) -> int:
    """Send *file* with *stream*'s own ``send()``, on an anyio without the hooks (``_anyiowait``).

    The contract of :func:`send_file`, without zero-copy: the file read in a
    worker thread, its position left at ``offset + sent``, and every
    exception carrying ``bytes_transferred``.
    """
    check_file_args(file, offset, count)
    seek = getattr(file, "seek", None)
    sent = 0
    try:
        if seek is not None:
            await anyio.to_thread.run_sync(seek, offset)
        while count is None or sent < count:
            size = _CHUNK if count is None else min(_CHUNK, count - sent)
            data = await anyio.to_thread.run_sync(file.read, size)
            if not data:
                break
            await stream.send(data)
            sent += len(data)
    except BaseException as exc:
        if seek is not None:
            seek(offset + sent)  # a chunk read but not sent is not counted as sent
        set_transferred(exc, sent)
        raise
    return sent

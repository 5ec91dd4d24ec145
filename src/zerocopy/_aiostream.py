"""asyncio streams and transports, lent to a kernel transfer and handed back.

``send_file`` and ``relay`` in :mod:`zerocopy.aio` take an
:class:`asyncio.StreamWriter`, a stream transport or a ``(StreamReader,
StreamWriter)`` pair where they take a socket.  The kernel then works on the
transport's socket, so the transport must stay out of the way for the
duration, as ``loop.sendfile(transport, ...)`` arranges it on asyncio's own
loops (and nowhere else: uvloop has no ``sendfile`` for transports):

* what the transport still buffers for writing goes out first;
* reading is paused, so that the protocol does not take bytes that the kernel
  should move (and resumed afterwards, if it was on);
* for a relay, what a ``StreamReader`` has already read is delivered first.

The transfer runs on a duplicate of the socket's fd: asyncio refuses
``add_reader``/``add_writer`` on an fd that a transport owns, and a duplicate
stays valid if the transport closes its socket meanwhile (a later call on it
then fails with the socket's error instead of hitting a reused fd number).

Only public transport methods are used, with one exception: an asyncio
``StreamReader`` has no public way to take its buffer without waiting, so a
relay takes ``StreamReader._buffer`` through
:func:`zerocopy._compat.stream_reader_buffer`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
from typing import Any

from ._aiowait import Waiter
from ._compat import stream_reader_buffer

__all__ = ["BorrowedSocket", "is_stream_pair", "is_transport_like"]

# The methods a stream transport has on asyncio and on uvloop (whose
# transports are not asyncio.Transport subclasses, hence duck typing).
_TRANSPORT_METHODS = (
    "get_extra_info",
    "is_closing",
    "is_reading",
    "pause_reading",
    "resume_reading",
    "get_write_buffer_size",
)


def is_transport_like(obj: object) -> bool:
    """True for an asyncio ``StreamWriter`` or anything that looks like a transport.

    Loosely: what is taken here is then checked for a stream transport's
    methods, so that a datagram transport gets its own clear error.
    """
    return isinstance(obj, (asyncio.StreamWriter, asyncio.BaseTransport)) or hasattr(
        obj, "get_extra_info"
    )


def is_stream_pair(obj: object) -> bool:
    """True for a ``(StreamReader, StreamWriter)`` tuple."""
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], asyncio.StreamReader)
        and isinstance(obj[1], asyncio.StreamWriter)
    )


def _transport_of(obj: Any, name: str) -> Any:
    """The stream transport behind *obj*, checked; TypeError or ValueError if unusable."""
    transport = obj.transport if isinstance(obj, asyncio.StreamWriter) else obj
    if isinstance(transport, asyncio.DatagramTransport) or hasattr(transport, "sendto"):
        raise TypeError(f"{name} is a datagram transport; send_file and relay need a stream")
    missing = [m for m in _TRANSPORT_METHODS if not hasattr(transport, m)]
    if missing:
        raise TypeError(
            f"{name}: {type(transport).__name__} is not a stream transport "
            f"(no {', '.join(missing)})"
        )
    if (
        transport.get_extra_info("sslcontext") is not None
        or transport.get_extra_info("ssl_object") is not None
    ):
        # Its socket carries TLS records: the kernel would put plaintext on it.
        raise TypeError(f"{name} is a TLS transport; the kernel cannot encrypt the bytes")
    if transport.is_closing():
        raise ValueError(f"{name}: the transport is closing or closed")
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise TypeError(f"{name}: {type(transport).__name__} has no socket")
    if sock.type != socket.SOCK_STREAM:
        raise TypeError(f"{name}: the transport's socket is not a SOCK_STREAM socket")
    return transport


class BorrowedSocket:
    """A stream transport's socket, lent to a transfer: :attr:`sock` is a duplicate.

    :meth:`lend` pauses reading and makes the duplicate; :meth:`drain` waits
    until the transport's write buffer is empty; :meth:`give_back` closes the
    duplicate and resumes reading if it was on.  *head* holds what a
    ``StreamReader`` had read already (relay only).
    """

    __slots__ = ("head", "name", "sock", "transport", "was_reading")

    def __init__(self, transport: Any, name: str) -> None:
        self.transport = transport
        self.name = name
        self.was_reading = False
        self.sock: socket.socket | None = None
        self.head = b""

    @classmethod
    def check(
        cls, obj: Any, name: str, *, reader: asyncio.StreamReader | None = None
    ) -> BorrowedSocket:
        """Check *obj* (writer or transport) before anything happens; nothing is changed yet."""
        if reader is not None:
            exc = reader.exception()
            if exc is not None:
                raise exc
            if stream_reader_buffer(reader) is None:
                raise TypeError(f"{name}: this StreamReader keeps no buffer zerocopy can take")
        return cls(_transport_of(obj, name), name)

    def lend(self, reader: asyncio.StreamReader | None = None) -> socket.socket:
        """Pause reading, take *reader*'s buffered bytes, make the duplicate socket."""
        transport = self.transport
        self.was_reading = bool(transport.is_reading())
        if self.was_reading:
            transport.pause_reading()
        if reader is not None:
            # No public call takes the buffer without waiting (see the module
            # docstring); read() would also resume a transport that the
            # reader's flow control paused.  check() refused a reader without one.
            buf = stream_reader_buffer(reader)
            if buf is not None:
                self.head = bytes(buf)
                buf.clear()
        fd = transport.get_extra_info("socket").fileno()
        sock = socket.socket(fileno=os.dup(fd))  # non-inheritable, as every fd Python makes
        sock.setblocking(False)  # the transport's socket is non-blocking already: no change
        self.sock = sock
        return sock

    async def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the transport has written everything it buffers.

        The transport writes when its socket turns writable; this waits for
        the same event on the duplicate and looks again.  A transport that
        closes meanwhile ends the wait with :class:`BrokenPipeError`.
        """
        transport = self.transport
        assert self.sock is not None
        waiter = Waiter(loop)
        try:
            while True:
                if transport.is_closing():
                    raise BrokenPipeError(
                        errno.EPIPE, f"{self.name}: the transport closed before the transfer began"
                    )
                size = transport.get_write_buffer_size()
                if not size:
                    return
                waiter.watch({(self.sock.fileno(), select.POLLOUT)})
                await waiter.wait()
                if transport.get_write_buffer_size() >= size:
                    # Writable, but the transport's own callback has not run
                    # yet: give it its turn instead of polling again at once.
                    await asyncio.sleep(0)
        finally:
            waiter.close()

    def give_back(self) -> None:
        """Close the duplicate; resume reading if it was on and the transport is still open."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        if self.was_reading and not self.transport.is_closing():
            self.was_reading = False
            self.transport.resume_reading()

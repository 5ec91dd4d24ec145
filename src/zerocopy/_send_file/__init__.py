"""The send_file capability: a file to a stream socket, socket.sendfile's contract.

- :mod:`.common`: the argument checks, chunk sizes and reads both forms share;
- :mod:`.blocking`: :func:`send_file` for blocking sockets and sockets with a timeout;
- :mod:`.asyncloop`: the async send loop both async forms run, each with its own waits;
- :mod:`.aio`: the asyncio form, for non-blocking sockets;
- :mod:`.loopmethods`: ``loop.sock_sendfile`` and ``loop.sendfile``, asyncio's
  contract, for the event loops of :mod:`zerocopy.loops`;
- :mod:`.anyio_`: the anyio form (asyncio and trio), for sockets and anyio socket streams.
"""

from __future__ import annotations

from .blocking import send_file

__all__ = ["send_file"]

"""The relay capability: copy both directions between two connected stream sockets.

- :mod:`.direction`: one direction, socket -> pipe -> socket, one non-blocking step at a time;
- :mod:`.sides`: checks on the two sides that every form makes;
- :mod:`.blocking`: :func:`relay`, a loop over both directions waiting with ``poll()``;
- :mod:`.asyncloop`: the rounds of the async relay, whatever event loop waits for them;
- :mod:`.aio`: the asyncio form, waiting on the running event loop;
- :mod:`.anyio_`: the anyio form (asyncio and trio), waiting with anyio.wait_readable.
"""

from __future__ import annotations

from .blocking import relay

__all__ = ["relay"]

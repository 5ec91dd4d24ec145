"""The relay capability: copy both directions between two connected stream sockets.

- :mod:`.direction`: one direction, socket -> pipe -> socket, one non-blocking step at a time;
- :mod:`.blocking`: :func:`relay`, a loop over both directions waiting with ``poll()``;
- :mod:`.aio`: the asyncio form, waiting on the running event loop.
"""

from __future__ import annotations

from .blocking import relay

__all__ = ["relay"]

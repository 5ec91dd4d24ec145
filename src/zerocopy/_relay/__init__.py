"""The relay capability: copy both directions between two connected stream sockets.

- :mod:`.direction`: one direction, socket -> pipe -> socket, one non-blocking step at a time;
- :mod:`.sides`: checks on the two sides that every form makes;
- :mod:`.blocking`: :func:`relay`, on the hub or in rounds waiting with ``poll()``;
- :mod:`.asyncloop`: every form's entry (:func:`.asyncloop.relay_sockets`): the hub where
  one runs, else the rounds of the relay on whatever loop waits for them;
- :mod:`.hub`: many relays in one thread, one C call per batch of wake-ups;
- :mod:`.aio`: the asyncio form, waiting on the running event loop;
- :mod:`.anyio_`: the anyio form (asyncio and trio), waiting with anyio.wait_readable.
"""

from __future__ import annotations

from .blocking import relay

__all__ = ["relay"]

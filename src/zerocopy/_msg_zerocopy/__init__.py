"""The MSG_ZEROCOPY capability: zero-copy sends, their completions, and a buffer pool.

- :mod:`.tracker`: sequence numbers and what each send holds (no I/O);
- :mod:`.release`: on_release callbacks, each called exactly once;
- :mod:`.sender`: :class:`ZeroCopySender`, sends and completion reads on a blocking socket;
- :mod:`.sockopts`: its argument checks and SO_ZEROCOPY;
- :mod:`.waits`: its blocking waits for room and completions;
- :mod:`.aio`: :class:`AsyncZeroCopySender`, the same on the running event loop;
- :mod:`.bufpool`: :class:`BufferPool`, buffers that return only once the kernel let go.
"""

from __future__ import annotations

from .bufpool import BufferPool, PoolExhausted
from .sender import SenderStats, ZeroCopySender

__all__ = ["BufferPool", "PoolExhausted", "SenderStats", "ZeroCopySender"]

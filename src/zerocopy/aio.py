"""asyncio forms: :func:`send_file` and :func:`relay` on the running loop, copies in a thread.

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

This module holds no logic: each name lives with its capability
(``zerocopy._send_file``, ``zerocopy._relay``, ``zerocopy._copy``,
``zerocopy._msg_zerocopy``) beside its blocking form.
"""

from __future__ import annotations

from ._copy.aio import copyfile, copyfileobj
from ._msg_zerocopy.aio import AsyncZeroCopySender
from ._relay.aio import relay
from ._send_file.aio import send_file

__all__ = ["AsyncZeroCopySender", "copyfile", "copyfileobj", "relay", "send_file"]

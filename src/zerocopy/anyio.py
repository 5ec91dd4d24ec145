"""anyio forms: :func:`send_file`, :func:`relay` and :class:`AsyncZeroCopySender` on anyio.

They run on anyio's asyncio and trio backends.

The contracts of :mod:`zerocopy.aio`'s namesakes, for non-blocking sockets and
:class:`anyio.abc.SocketStream` objects, waiting with ``anyio.wait_readable``
and ``anyio.wait_writable`` (anyio 4.7 or later: ``pip install -e '.[anyio]'``
in a clone; trio needs ``trio`` too).  Importing this module imports anyio;
``import zerocopy`` does not.

This module holds no logic: each name lives with its capability
(``zerocopy._send_file``, ``zerocopy._relay``, ``zerocopy._msg_zerocopy``)
beside its other forms.
"""

from __future__ import annotations

from ._msg_zerocopy.anyio_ import AsyncZeroCopySender
from ._relay.anyio_ import relay
from ._send_file.anyio_ import send_file

__all__ = ["AsyncZeroCopySender", "relay", "send_file"]

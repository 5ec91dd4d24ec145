"""Setting a socket up for MSG_ZEROCOPY: the sender's argument checks and SO_ZEROCOPY."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any

from .. import _backend
from .._constants import SO_ZEROCOPY
from .._errors import oserror

__all__ = ["check_arguments", "enable_zerocopy"]

log = logging.getLogger("zerocopy")


def check_arguments(sock: Any, threshold: Any) -> None:
    """TypeError or ValueError for what cannot carry zero-copy sends, before any I/O."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        # Its fd carries ciphertext: our sends would bypass the encryption.
        raise TypeError("ZeroCopySender cannot send over an ssl.SSLSocket")
    if sock.fileno() < 0:
        # Caught here, not at the first send: a sender that outlives its
        # socket's close would otherwise fail later, far from the mistake.
        raise ValueError("ZeroCopySender needs an open socket; this one is closed")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("ZeroCopySender needs a SOCK_STREAM socket")
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise TypeError(f"threshold must be an int, not {type(threshold).__name__}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold}")


def enable_zerocopy(sock: socket.socket, fallback: bool) -> str | None:
    """Set SO_ZEROCOPY on *sock*; None if on, else why not (or OSError without *fallback*)."""
    backend = _backend.current()
    if "msg_zerocopy" not in _backend.features(backend):
        reason = f"the {backend.NAME} backend cannot send with MSG_ZEROCOPY"
    else:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
        except OSError as exc:
            reason = f"SO_ZEROCOPY refused: {exc.strerror}"
            if not fallback:
                raise oserror(exc.errno or errno.EOPNOTSUPP, "setsockopt(SO_ZEROCOPY)") from None
        else:
            return None
    if not fallback:
        raise oserror(errno.EOPNOTSUPP, f"ZeroCopySender: {reason}")
    log.debug("ZeroCopySender: plain sends only: %s", reason)
    return reason

"""zerocopy: move bytes between files, pipes and sockets through the kernel.

High level: :func:`copyfileobj` and :func:`copyfile` are drop-ins for
their :mod:`shutil` namesakes that let the kernel copy where it safely can;
:func:`patch_shutil` makes shutil use them.

Low-level calls (:func:`sendfile`, :func:`splice`, :func:`tee`,
:func:`vmsplice`, :func:`copy_file_range`) run on one of two backends: thin C
shims compiled with cffi, or the :mod:`os` module.  :data:`BACKEND` names the
one in use and :data:`FEATURES` says which calls work in this process.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import _backend
from ._constants import (
    MSG_ZEROCOPY,
    SO_ZEROCOPY,
    SPLICE_F_GIFT,
    SPLICE_F_MORE,
    SPLICE_F_MOVE,
    SPLICE_F_NONBLOCK,
)
from ._copy import ShutilPatch, copyfile, copyfileobj, last_method, patch_shutil
from ._errors import UnsupportedOperation, bytes_transferred, relay_counts
from ._integrations import IntegrationFallbackWarning, UntestedVersionWarning
from ._lowlevel import copy_file_range, sendfile, splice, tee, vmsplice
from ._msg_zerocopy import BufferPool, PoolExhausted, SenderStats, ZeroCopySender
from ._relay import relay
from ._send_file import send_file

__all__ = [
    "BACKEND",
    "FEATURES",
    "MSG_ZEROCOPY",
    "SO_ZEROCOPY",
    "SPLICE_F_GIFT",
    "SPLICE_F_MORE",
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "BufferPool",
    "IntegrationFallbackWarning",
    "PoolExhausted",
    "SenderStats",
    "ShutilPatch",
    "UnsupportedOperation",
    "UntestedVersionWarning",
    "ZeroCopySender",
    "__version__",
    "bytes_transferred",
    "copy_file_range",
    "copyfile",
    "copyfileobj",
    "last_method",
    "patch_shutil",
    "relay",
    "relay_counts",
    "send_file",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    #: The name of the backend in use, ``"cffi"`` or ``"os"``.
    BACKEND: str
    #: The set of features that work in this process, a subset of
    #: ``{"sendfile", "splice", "tee", "vmsplice", "copy_file_range",
    #: "msg_zerocopy"}``.
    FEATURES: frozenset[str]


def __getattr__(name: str) -> Any:
    # BACKEND and FEATURES follow the backend in use (tests swap it), and the
    # feature probe runs on first access rather than at import.
    if name == "BACKEND":
        return _backend.current().NAME
    if name == "FEATURES":
        return _backend.features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"BACKEND", "FEATURES"})

"""The one place that chooses the backend.

``ZEROCOPY_BACKEND`` (read once, at import):

``auto`` (default)
    the compiled cffi module when it imports, else the os module, with a
    :class:`RuntimeWarning` that says why (on Linux only: elsewhere there is
    no compiled module, and the os backend is that platform's).
``cffi``
    the compiled module or :class:`ImportError` with the reason.
``os``
    the :mod:`os` module only.

Strategy code calls :func:`current` at call time and never imports a backend
module directly, so tests can swap backends with :func:`use`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

from ._constants import SO_ZEROCOPY

__all__ = ["ENV_VAR", "NAMES", "available", "current", "features", "load", "use"]

ENV_VAR = "ZEROCOPY_BACKEND"
NAMES = ("cffi", "os")

_lock = threading.Lock()
_features: dict[str, frozenset[str]] = {}


def load(name: str) -> ModuleType:
    """Import and return backend *name* (``"cffi"`` or ``"os"``).

    Raises :class:`ValueError` for an unknown name and :class:`ImportError`,
    with the reason, when the cffi backend cannot load.
    """
    if name not in NAMES:
        raise ValueError(f"unknown zerocopy backend {name!r}; expected one of {NAMES}")
    return importlib.import_module(f"zerocopy._{name}")


def _choose() -> ModuleType:
    wanted = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if wanted == "auto":
        try:
            return load("cffi")
        except ImportError as exc:
            # Off Linux there is no compiled module to miss (setup.py builds
            # it on Linux only): the os backend is this platform's, silently.
            if sys.platform.startswith("linux"):
                warnings.warn(
                    f"zerocopy is using its os backend: {exc}", RuntimeWarning, stacklevel=3
                )
            return load("os")
    if wanted not in NAMES:
        raise ImportError(f"{ENV_VAR}={wanted!r} is not one of 'auto', 'cffi', 'os'")
    return load(wanted)


_current: ModuleType = _choose()


def current() -> ModuleType:
    """Return the backend module in use."""
    return _current


def available() -> list[str]:
    """Return the names of the backends that load in this process."""
    names = []
    for name in NAMES:
        try:
            load(name)
        except ImportError:
            continue
        names.append(name)
    return names


@contextlib.contextmanager
def use(name: str) -> Iterator[ModuleType]:
    """Switch to backend *name* for the duration of a ``with`` block (tests)."""
    global _current
    module = load(name)
    with _lock:
        previous, _current = _current, module
    try:
        yield module
    finally:
        with _lock:
            _current = previous


def _msg_zerocopy_works() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    except OSError:
        # ENOPROTOOPT before 4.14, EPERM under seccomp, EAFNOSUPPORT without IPv4.
        return False
    return True


def features(backend: ModuleType | None = None) -> frozenset[str]:
    """Return what works in this process on *backend* (default: the current one).

    Probed once per backend, cheaply: each syscall is called on fd -1, which
    tells "present" (EBADF) from "missing or forbidden" (ENOSYS, EPERM), and
    ``SO_ZEROCOPY`` is set on a throwaway socket.
    """
    module = backend or _current
    found = _features.get(module.NAME)
    if found is None:
        names = set(module.probe())
        if module.NAME == "cffi" and _msg_zerocopy_works():
            names.add("msg_zerocopy")
        found = _features[module.NAME] = frozenset(names)
    return found

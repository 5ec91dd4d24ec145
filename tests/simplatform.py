"""A simulated platform for the portable tests: ``ZEROCOPY_SIMULATE_PLATFORM``.

``darwin``, ``freebsd14`` or ``win32``.  :func:`apply` runs before the first
import of zerocopy (tests/conftest.py calls it first thing) and takes away
what that platform's CPython lacks of what zerocopy touches, so zerocopy
imports and runs as it would there, on this Linux kernel:

=====================  =======  =========  =====
what                   darwin   freebsd14  win32
=====================  =======  =========  =====
``os.splice``          gone     gone       gone
``os.copy_file_range`` gone     kept       gone
``os.sendfile``        BSD      BSD        gone
``select.epoll``       gone     gone       gone
``select.poll``        kept     kept       gone
``fcntl``, ``termios``  kept     kept       gone
``os.register_at_fork``,
``os.sysconf``         kept     kept       gone
``sys.platform``       darwin   freebsd14  win32
=====================  =======  =========  =====

"BSD" is a model of the BSDs' and macOS's ``os.sendfile``: its signature
(an int offset, a :class:`TypeError` for None; headers, trailers, flags),
sockets only as destination (ENOTSOCK), a regular file as source, count 0
meaning to end of file.  The os names are deleted for everybody (shutil and
socket decided their own paths at import, before, as on Linux); ``select``,
``fcntl`` and ``termios`` are hidden from zerocopy's modules only (zerocopy
binds a copy of ``select`` without them; the tests keep the real ones).  The
stdlib modules that branch on ``sys.platform`` at import are imported before
it changes.  The compiled backend refuses a non-Linux ``sys.platform``, as a
real install there has none.

Not modelled: the real systems' kernels (sockets, pipes, file systems, errno
values, partial BSD sendfile), Windows's handles (fds here are still POSIX
fds; ``os.fstat`` works on sockets; ``os.pipe`` and ``O_NONBLOCK`` exist),
macOS's ``fcopyfile`` (shutil on Linux has none, so the delegated copyfile
runs shutil's Linux path), and asyncio's event loops (still epoll).
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import socket
import stat
import sys
import types
from typing import Any

__all__ = ["ENV_VAR", "LINUX_ONLY", "PLATFORMS", "PORTABLE", "apply", "simulated"]

ENV_VAR = "ZEROCOPY_SIMULATE_PLATFORM"
PLATFORMS = ("darwin", "freebsd14", "win32")

# Imported with the real sys.platform: each picks its implementation at import.
_PLATFORM_MODULES = (
    "asyncio",
    "selectors",
    "shutil",
    "socket",
    "ssl",
    "subprocess",
    "tempfile",
    "multiprocessing",
    "concurrent.futures",
    "threading",
    "uuid",
    "ctypes",
    "mimetypes",
    "http.server",
)


#: The portable part of the suite: what every platform must do as its stdlib
#: does (copy against shutil, send_file against socket.sendfile, the relay's
#: bytes and counts, the public API's bad-input errors).
PORTABLE = (
    "tests/test_copy_conformance.py",
    "tests/test_copy_copyfile.py",
    "tests/test_copy_arguments.py",
    "tests/test_send_file.py",
    "tests/test_relay.py",
    "tests/test_platforms.py",
)

#: Tests of those files that check a Linux path itself (which kernel call
#: moved the bytes, errnos injected into os.sendfile, the pipe pool), with
#: why; a simulated run deselects them, and says so.
LINUX_ONLY = {
    "tests/test_copy_copyfile.py::TestCopyfileLoop": "injects errors into Linux's calls",
    "tests/test_copy_copyfile.py::TestCopyfile::test_regular_file": "checks the kernel method",
    "tests/test_copy_copyfile.py::TestCopyfile::test_small_files_go_to_the_kernel": "Linux path",
    "tests/test_send_file.py::TestSizes::test_sendfile_is_used": "checks os.sendfile is called",
    "tests/test_relay.py::TestPipeHandOver": "the splice relay's pipe pool",
    "tests/test_relay.py::TestDirection::test_uses_the_pool_it_is_given": "the pipe pool",
}

#: Per platform: socket.sendfile on Windows sends from the file's position
#: when offset is 0 (its send fallback) and leaves it at offset after
#: sending nothing; zerocopy keeps its contract there (from offset, position
#: put back), which darwin's and freebsd's runs compare with socket.sendfile.
PLATFORM_ONLY = {
    "win32": {
        "tests/test_send_file.py::TestLikeSocketSendfile": "socket.sendfile's offset-0 quirk",
        # select() has no errors-only watch: an ended side's hang-up is seen
        # once and that side is not watched again (zerocopy._loop.SelectWaiter).
        "tests/test_relay.py::TestReset::test_reset_after_half_close_is_noticed": "select()",
    },
}


def not_here(nodeid: str, name: str) -> str | None:
    """Why test *nodeid* is not run on simulated platform *name*, or None."""
    file = nodeid.split("::", 1)[0]
    if not any(file.endswith(p.split("/", 1)[1]) for p in PORTABLE):
        return "not in the portable selection"
    for table in (LINUX_ONLY, PLATFORM_ONLY.get(name, {})):
        for prefix, why in table.items():
            tail = prefix.split("/", 1)[1]
            if nodeid.startswith(tail) or nodeid.startswith(prefix):
                return why
    return None


def simulated() -> str | None:
    """The simulated platform this process runs under, or None."""
    name = os.environ.get(ENV_VAR, "").strip()
    return name or None


_real_sendfile = os.sendfile


def _bsd_sendfile(
    out_fd: int,
    in_fd: int,
    offset: int,
    count: int,
    headers: Any = (),
    trailers: Any = (),
    flags: int = 0,
) -> int:
    """The BSDs' and macOS's os.sendfile, over Linux's (see the module docstring)."""
    if not isinstance(offset, int):
        raise TypeError(f"an integer is required (got type {type(offset).__name__})")
    if not stat.S_ISSOCK(os.fstat(out_fd).st_mode):
        raise OSError(errno.ENOTSOCK, os.strerror(errno.ENOTSOCK))
    if not stat.S_ISREG(os.fstat(in_fd).st_mode):
        raise OSError(errno.ENOTSOCK, os.strerror(errno.ENOTSOCK))
    if headers or trailers:
        raise NotImplementedError("the simulation does not model headers and trailers")
    return _real_sendfile(out_fd, in_fd, offset, count or 0x7FFFF000)


def _no_sendfile(self: socket.socket, file: Any, offset: int = 0, count: int | None = None) -> int:
    """socket.socket._sendfile_use_sendfile where os has no sendfile (Windows)."""
    raise socket._GiveupOnSendfile("os.sendfile() not available on this platform")  # type: ignore[attr-defined]


def _hide_select(gone: tuple[str, ...]) -> types.ModuleType:
    import select

    view = types.ModuleType("select", select.__doc__)
    for name in dir(select):
        if not any(name == g or name.startswith(g.upper()) for g in gone):
            setattr(view, name, getattr(select, name))
    return view


def apply(name: str) -> None:
    """Make this process look like platform *name* to zerocopy; call before importing it."""
    if name not in PLATFORMS:
        raise ValueError(f"{ENV_VAR}={name!r} is not one of {PLATFORMS}")
    if "zerocopy" in sys.modules:
        raise RuntimeError("zerocopy was imported before the platform simulation")
    for module in _PLATFORM_MODULES:
        importlib.import_module(module)
    gone = ["splice"]
    if name != "freebsd14":
        gone.append("copy_file_range")
    if name == "win32":
        gone += ["sendfile", "register_at_fork", "sysconf"]
    else:
        os.sendfile = _bsd_sendfile  # type: ignore[assignment]
    for attr in gone:
        if hasattr(os, attr):
            delattr(os, attr)
    if name == "win32":
        # shutil chose sendfile at its import, seeing Linux's os: Windows's has none.
        shutil._USE_CP_SENDFILE = False  # type: ignore[attr-defined]
        # socket.py defines its sendfile path only where os has sendfile.
        socket.socket._sendfile_use_sendfile = _no_sendfile  # type: ignore[attr-defined]
    hidden_select = ("epoll",) if name != "win32" else ("epoll", "poll")
    hidden_modules = ("fcntl", "termios") if name == "win32" else ()
    saved = {m: sys.modules.get(m) for m in ("select", *hidden_modules)}
    sys.modules["select"] = _hide_select(hidden_select)
    for module in hidden_modules:
        sys.modules[module] = None  # type: ignore[assignment]
    sys.platform = name
    try:
        import zerocopy
        import zerocopy._cli
        import zerocopy.aio  # noqa: F401
    finally:
        for module, value in saved.items():
            if value is None:
                sys.modules.pop(module, None)
            else:
                sys.modules[module] = value

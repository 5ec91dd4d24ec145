"""Starlette: :class:`FileResponse`, which stats local files on the event loop.

Starlette's own :class:`starlette.responses.FileResponse` built with a path
(and no ``stat_result``) stats the file in a worker thread
(``anyio.to_thread.run_sync(os.stat, path)``) before it sends anything.  On
a server whose cores are busy moving bodies, that thread waits for a CPU,
and the request with it: beside 4 and 32 downloads from one uvicorn
process, that hop was most of a 4 KiB request's p99 (docs/server.md, "Under
load").  This subclass does what :class:`zerocopy.aiohttp.FileResponse`
does for aiohttp: the first request of a path stats in Starlette's thread
and learns from the file's ``st_dev`` whether it lives on a local
filesystem (:data:`zerocopy._localfs.LOCAL_TYPES`: ext4, xfs, tmpfs,
overlay...); later requests for that path stat on the loop, as nginx does.
A file on NFS, SMB, FUSE or an unknown device keeps the thread.

Everything else is Starlette's: headers (``Content-Length``, ``ETag``,
``Last-Modified``), ranges, HEAD, ``If-Range``, the errors for a missing
path or a directory (the same ``RuntimeError`` text), and the body, which
under ``zerocopy.uvicorn``'s protocols goes out as ``http.response.pathsend``
by ``sendfile(2)``.  FastAPI's ``FileResponse`` is Starlette's, so this class
serves FastAPI routes too.  Starlette's ``StaticFiles`` looks its paths up in
a thread of its own, which this module does not change.

The class uses only Starlette's public ``FileResponse`` API (the
``stat_result`` attribute and ``set_stat_headers``); at import both are
checked, and on a Starlette without them this class stats as Starlette's own
(with an :class:`zerocopy.IntegrationFallbackWarning`).  Needs Starlette
(``pip install starlette``); ``import zerocopy`` does not import it.
"""

from __future__ import annotations

import inspect
import os
import stat

import anyio.to_thread
import starlette
from starlette.responses import FileResponse as _StarletteFileResponse
from starlette.types import Receive, Scope, Send

from . import _integrations, _localfs

__all__ = ["SUPPORTED", "FileResponse"]

#: The Starlette releases this module was tested with, as ``(lowest, first
#: untested)`` ``(major, minor)`` pairs; on another release it runs (with an
#: :class:`zerocopy.UntestedVersionWarning`) if the public API it uses is there.
SUPPORTED = ((1, 10), (1, 11))
_TESTED = "Starlette 1.10"


def _missing_hooks(cls: type) -> list[str]:
    """What :class:`FileResponse` needs that Starlette's *cls* lacks."""
    missing = []
    if not callable(getattr(cls, "set_stat_headers", None)):
        missing.append("FileResponse.set_stat_headers")
    try:
        params = list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        params = []
    if "stat_result" not in params:
        missing.append("FileResponse(stat_result=)")
    return missing


class FileResponse(_StarletteFileResponse):
    """A drop-in :class:`starlette.responses.FileResponse` that stats local files on the loop.

    Same constructor, headers, status codes and errors as Starlette's.  When
    no ``stat_result`` was given, the file is stat-ed where
    :attr:`open_on_loop` says: by default in Starlette's worker thread for
    the first request of a path, then on the event loop once that path is
    known to live on a local filesystem (see the module's docs).
    """

    #: Where the ``stat`` of the path runs: ``None`` (the default) on the
    #: event loop for paths found before on a local filesystem, in a worker
    #: thread otherwise; ``True`` always on the loop; ``False`` always in a
    #: thread (Starlette's own way).  Set it on a subclass or an instance.
    open_on_loop: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stat the path where :attr:`open_on_loop` says, then respond as Starlette's class."""
        if self.stat_result is None and self.open_on_loop is not False and _ON["FileResponse"]:
            path = os.fspath(self.path)
            try:
                if self.open_on_loop or path in _LOCAL:
                    result = os.stat(path)
                else:
                    result = await anyio.to_thread.run_sync(os.stat, path)
                    _LOCAL.learn(path, result.st_dev)
            except FileNotFoundError:
                # Starlette's own words for a missing file, to the letter.
                raise RuntimeError(f"File at path {self.path} does not exist.") from None
            if not stat.S_ISREG(result.st_mode):
                raise RuntimeError(f"File at path {self.path} is not a file.")
            # What Starlette does with a stat of its own; given a stat_result,
            # its __call__ skips the thread.
            self.stat_result = result
            self.set_stat_headers(result)
        await super().__call__(scope, receive, send)


#: Paths served before and found on a local filesystem: stat-ed on the loop.
_LOCAL = _localfs.LocalFiles()

_ON = _integrations.decide(
    __name__,
    "starlette",
    starlette.__version__,
    _TESTED,
    _integrations.in_range(starlette.__version__, SUPPORTED),
    {"FileResponse": _missing_hooks(_StarletteFileResponse)},
)

"""aiohttp: :class:`FileResponse`, whose body goes out with ``sendfile(2)`` on asyncio and uvloop.

aiohttp's own :class:`aiohttp.web.FileResponse` sends a file body with
``loop.sendfile(transport, ...)``.  asyncio's selector loops do that with
``sendfile(2)``; uvloop has no native ``sendfile``, so there aiohttp falls
back to reading the file in chunks (256 KiB by default) and writing them to
the transport: a copy through Python for every byte.  This subclass replaces
that one step with :func:`zerocopy.aio.send_file` on the transport, which
works on both loops.

Everything else is aiohttp's: paths, 403 and 404, ``Content-Type``,
``ETag``/``Last-Modified``, conditional requests (``If-Match``,
``If-None-Match``, ``If-Modified-Since``, ``If-Unmodified-Since``,
``If-Range``), single byte ranges and 416, HEAD, pre-compressed ``.gz``/``.br``
siblings, on-the-fly compression (which keeps aiohttp's chunked path, as the
bytes must pass through Python), ``chunk_size`` and ``AIOHTTP_NOSENDFILE``.

Importing this module imports aiohttp; ``import zerocopy`` does not.  The
override is of a private hook (``FileResponse._sendfile``), so at import
every hook it needs is checked (:func:`zerocopy._compat.aiohttp_missing_hooks`),
on every aiohttp.  All there: the hook is installed, with an
:class:`zerocopy.UntestedVersionWarning` on a version outside
:data:`SUPPORTED`.  One missing: this class sends bodies exactly as
aiohttp's own, with an :class:`zerocopy.IntegrationFallbackWarning` saying
which.  The import never fails for the aiohttp version.
"""

from __future__ import annotations

import logging
from typing import IO, Any

import aiohttp
from aiohttp import web, web_fileresponse
from aiohttp.abc import AbstractStreamWriter

from . import _compat, _integrations, _localfs, aio

__all__ = ["SUPPORTED", "FileResponse"]

_log = logging.getLogger(__name__)

#: The aiohttp versions this module was tested with, as ``(lowest, first
#: untested)`` ``(major, minor)`` pairs.  It overrides the private
#: ``FileResponse._sendfile`` hook and calls the private
#: ``_sendfile_fallback``, whose signatures aiohttp may change in any release:
#: on another version it runs if those hooks are there (with an
#: :class:`zerocopy.UntestedVersionWarning`) and otherwise sends as aiohttp's
#: own class (with an :class:`zerocopy.IntegrationFallbackWarning`).
#: tests/test_integration_aiohttp.py passed with 3.10.0, 3.10.11, 3.11.0,
#: 3.11.18, 3.12.0, 3.12.15, 3.13.0, 3.13.5, 3.14.0 and 3.14.5 (3.9.5 answers a
#: missing file with a 500 instead of a 404, stock class and this one alike);
#: on 3.10.0 with uvloop, under load, the access log missed some responses,
#: so the ``aiohttp`` extra asks for 3.10.11 or later.
SUPPORTED = ((3, 10), (3, 15))
_TESTED = "aiohttp 3.10 to 3.14"


def _tested(version: str) -> bool:
    """Whether aiohttp *version* is in :data:`SUPPORTED`."""
    return _integrations.in_range(version, SUPPORTED)


class FileResponse(web.FileResponse):
    """A drop-in :class:`aiohttp.web.FileResponse` that sends the body with ``sendfile(2)``.

    Same constructor, headers and status codes as aiohttp's.  Only the body
    of a 200 or 206 response differs in how it travels: from the file to the
    connection's socket by :func:`zerocopy.aio.send_file` (after the headers,
    with the transport's write buffer drained first and reading paused
    meanwhile), on asyncio's loops and on uvloop alike.

    aiohttp's chunked copy is kept where the kernel cannot do the work: a
    response with compression enabled (:meth:`enable_compression`), a TLS
    connection, and ``AIOHTTP_NOSENDFILE=1``.

    If the file shrinks while it is sent, fewer bytes than the
    ``Content-Length`` already announced go out: the connection is then
    closed after the response (not kept alive), so the client sees the
    truncation instead of a desynchronised stream.

    Where the file is opened (:attr:`open_on_loop`): aiohttp stats, opens
    and closes it in a worker thread, because those calls may block on a
    network filesystem; on a server whose cores are busy, that thread waits
    for a CPU, and each request with it.  This class does the same for the
    first request of a path, learns from its ``st_dev`` whether the file
    lives on a local filesystem (:data:`zerocopy._localfs.LOCAL_TYPES`:
    ext4, xfs, tmpfs, overlay...), and then opens and closes that path on
    the loop.  Beside 4 and 32 downloads this took the 4 KiB request's p99
    from 3.0-6.7 ms to 2.5-3.6 ms (docs/server.md, "Under load").  On
    aiohttp older than 3.11.18 (whose ``prepare`` opens in more steps) files
    are opened as aiohttp opens them.
    """

    #: Where the stat, open and close of the file run: ``None`` (the
    #: default) on the event loop for paths found before on a local
    #: filesystem, in a worker thread otherwise; ``True`` always on the loop;
    #: ``False`` always in a thread (aiohttp's own way).  Set it on a
    #: subclass or an instance.
    open_on_loop: bool | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """aiohttp's ``prepare``, with the file opened where :attr:`open_on_loop` says."""
        if not _ON_PREPARE or self.open_on_loop is False:
            return await super().prepare(request)
        on_loop = _always if self.open_on_loop else _LOCAL.__contains__
        done: AbstractStreamWriter | None = await _compat.aiohttp_prepare(
            self, request, web.FileResponse, web_fileresponse, on_loop, _LOCAL.learn
        )
        return done


async def _send(
    self: FileResponse, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
) -> AbstractStreamWriter:
    """:class:`FileResponse`'s ``_sendfile``: the status, headers and body of a 200 or 206.

    aiohttp's private hook (web_fileresponse.py, 3.10 to 3.14), installed by
    :func:`zerocopy._compat.aiohttp_hook_sendfile` below: it is called with
    the open file and the byte span once the status and headers are decided,
    and must send them and the body.
    """
    writer = await web.StreamResponse.prepare(self, request)
    assert writer is not None  # prepare returns None only after write_eof
    transport = request.transport
    if web_fileresponse.NOSENDFILE or self.compression:
        # aiohttp's own chunked copy: compression needs the bytes in Python.
        return await _compat.aiohttp_sendfile_fallback(self, writer, fobj, offset, count)
    if transport is None or transport.is_closing():
        # The client went away after its request: what aiohttp raises
        # here, and its request loop drops quietly (a ConnectionError).
        raise ConnectionResetError("Connection lost")
    if _tls(transport):
        # The kernel would put plaintext on the wire: aiohttp's copy
        # through the TLS transport, as stock aiohttp does on uvloop.
        return await _compat.aiohttp_sendfile_fallback(self, writer, fobj, offset, count)
    # StreamResponse sends its headers at prepare(); a subclass that opts
    # into buffering them must not have them go after the body.
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()
    # A transport that closes while its write buffer drains raises
    # BrokenPipeError, a ConnectionError too.
    sent = await aio.send_file(transport, fobj, offset, count)
    # What the chunked path would have counted: the access log's %b
    # (body_length, from output_size) and the writer's remaining length.
    writer.output_size += sent
    writer.buffer_size = 0
    if writer.length is not None:
        writer.length = max(writer.length - sent, 0)
    if sent < count:
        _log.warning(
            "%s: sent %d of %d bytes (the file shrank); closing the connection",
            getattr(fobj, "name", _compat.aiohttp_response_path(self)),  # .gz/.br sibling: its name
            sent,
            count,
        )
        self.force_close()
    await web.StreamResponse.write_eof(self)
    return writer


def _always(path: str) -> bool:
    return True


#: Paths served before and found on a local filesystem: opened on the loop.
_LOCAL = _localfs.LocalFiles()


def _tls(transport: Any) -> bool:
    """Whether *transport* encrypts (asyncio's and uvloop's TLS transports carry an SSL object)."""
    return transport.get_extra_info("sslcontext") is not None or (
        transport.get_extra_info("ssl_object") is not None
    )


# Everything the hook needs, checked in one place (_compat) on every aiohttp;
# on one without it, a warning, and FileResponse sends as aiohttp's own does.
_ON = _integrations.decide(
    __name__,
    "aiohttp",
    aiohttp.__version__,
    _TESTED,
    _tested(aiohttp.__version__),
    {
        "FileResponse": _compat.aiohttp_missing_hooks(
            web.FileResponse, web_fileresponse, AbstractStreamWriter
        )
    },
)
if _ON["FileResponse"]:
    _compat.aiohttp_hook_sendfile(FileResponse, _send)
# Opening on the loop is a latency gain, not a feature: where aiohttp's
# prepare is not the one aiohttp_prepare repeats, files open as aiohttp opens
# them, and a debug line says why.
_PREPARE_MISSING = _compat.aiohttp_prepare_missing(web.FileResponse, web_fileresponse)
_ON_PREPARE = not _PREPARE_MISSING
if _PREPARE_MISSING:
    _log.debug(
        "zerocopy.aiohttp: files open in a worker thread as aiohttp opens them;"
        " aiohttp %s lacks %s",
        aiohttp.__version__,
        ", ".join(_PREPARE_MISSING),
    )

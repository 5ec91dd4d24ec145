"""``python -m zerocopy serve``: ``python -m http.server``, with file bodies sent by ``sendfile``.

The server is the stdlib's :class:`http.server.ThreadingHTTPServer` (one
thread per connection), dual-stack where IPv6 is available, like
``python -m http.server``; the handler is
:class:`zerocopy.http.ZeroCopyHTTPRequestHandler`, which also answers byte
ranges.  Requests are logged to stderr, as the stdlib does.

Two things the stdlib's server lacks: each wait on a client socket is bounded
(``--timeout``, 60 s by default), so a client that stops reading or sending
frees its thread; and connections are admitted through an
:class:`~.accepting.AcceptGate` (``--max-connections``, a pause instead of a
busy loop when descriptors run out).
"""

from __future__ import annotations

import argparse
import logging
import mimetypes
import os
import socket
from http.server import ThreadingHTTPServer
from typing import Any

from ..http import ZeroCopyHTTPRequestHandler
from . import UserError
from .accepting import AcceptGate, add_max_connections

__all__ = ["DEFAULT_TIMEOUT", "add_parser", "listen_error", "make_server", "parse_port", "run"]

log = logging.getLogger("zerocopy.serve")

#: Seconds a connection may stall (a client that stops reading or sending).
DEFAULT_TIMEOUT = 60.0

#: Descriptors per connection for the default cap: the socket, and the file
#: it is being sent.
FDS_PER_CONNECTION = 2

#: How long get_request() waits for the gate: serve_forever's poll interval,
#: so that shutdown() is as prompt as it is in the stdlib.
_GATE_WAIT = 0.5


class _Server(ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 drops the SYNs of a burst of clients,
    # which then wait a second to retry.
    request_queue_size = 128

    #: Admission (cap, pause, reserve): set by make_server, one per server.
    gate: AcceptGate

    def get_request(self) -> tuple[socket.socket, Any]:
        # socketserver swallows an OSError from here and goes back to
        # select(), which finds the listener still readable: without the
        # gate, EMFILE turned serve_forever into a silent busy loop (about
        # half a core here).  The gate's wait is bounded, so shutdown() is
        # still seen within the poll interval.
        if not self.gate.wait_open(_GATE_WAIT):
            raise OSError("not accepting now (at the cap, or paused)")
        try:
            request, address = super().get_request()
        except OSError as exc:
            self.gate.accept_failed(exc)
            raise
        self.gate.opened()
        return request, address

    def shutdown_request(self, request: Any) -> None:
        # Called once for every request get_request returned, however it ended.
        try:
            super().shutdown_request(request)
        finally:
            self.gate.closed()

    def server_close(self) -> None:
        super().server_close()
        self.gate.close()

    def server_bind(self) -> None:
        # Dual-stack as python -m http.server (bpo-38907): an IPv6 wildcard
        # socket that takes IPv4 too.  Fails harmlessly on an IPv4 socket.
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()


def make_server(
    directory: str,
    bind: str | None = None,
    port: int = 8000,
    protocol: str = "HTTP/1.0",
    *,
    timeout: float | None = None,
    max_connections: int | None = None,
) -> ThreadingHTTPServer:
    """A bound, listening threaded server for *directory*, as ``python -m http.server`` makes it.

    *bind* ``None`` means all interfaces (IPv6 and IPv4 where possible).
    *timeout* bounds each wait on a client socket (``None``: no bound);
    *max_connections* caps the connections open at once (``None``: no cap).
    """
    # mimetypes reads /etc/mime.types at the first request otherwise: a
    # process out of descriptors then failed every request with EMFILE.
    mimetypes.init()
    infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    directory = os.fspath(directory)
    request_timeout = timeout

    class Handler(ZeroCopyHTTPRequestHandler):
        protocol_version = protocol
        # StreamRequestHandler.setup() puts it on the socket: every recv and
        # every wait of send_file is bounded by it.
        timeout = request_timeout

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

    admission = AcceptGate(log, max_connections)

    class Server(_Server):
        address_family = family
        # Before __init__, whose server_close() on a failed bind uses it.
        gate = admission

    return Server(sockaddr, Handler)  # type: ignore[arg-type]  # an AF_INET(6) address


def listen_error(host: str | None, port: int, exc: OSError) -> UserError:
    """The one line for a listener that could not be made: unknown host, port in use, EACCES."""
    if isinstance(exc, socket.gaierror):
        return UserError(f"cannot resolve {host!r}: {exc.strerror or exc}")
    where = f"[{host}]" if host and ":" in host else host or "*"
    # socket.create_server's strerror has the address appended: say it once.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return UserError(f"cannot listen on {where}:{port}: {reason}")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (status 0); :class:`UserError` when it cannot start."""
    directory = args.directory if args.directory is not None else os.getcwd()
    if not os.path.isdir(directory):
        raise UserError(f"not a directory: {directory}", status=2)
    try:
        server = make_server(
            directory,
            args.bind,
            args.port,
            args.protocol,
            timeout=args.timeout or None,
            max_connections=args.max_connections or None,
        )
    except OSError as exc:
        raise listen_error(args.bind, args.port, exc) from None
    with server as httpd:
        log.info(
            "at most %s connections at once, timeout %s",
            args.max_connections or "unlimited",
            f"{args.timeout:g} s" if args.timeout else "none",
        )
        host, port = httpd.socket.getsockname()[:2]
        url_host = f"[{host}]" if ":" in host else host
        print(f"Serving HTTP on {host} port {port} (http://{url_host}:{port}/) ...", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            print("\nKeyboard interrupt received, exiting.", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve a directory over HTTP, file bodies with sendfile",
        description="Serve DIR over HTTP like 'python -m http.server', sending file bodies "
        "with sendfile(2) and answering single byte ranges.  Ctrl-C stops it (status 0); "
        "a port in use, an unknown host or a missing permission exits with status 1.",
    )
    parser.add_argument(
        "directory", nargs="?", metavar="DIR", help="serve this directory (default: current)"
    )
    parser.add_argument(
        "-b", "--bind", metavar="ADDRESS", help="bind to this address (default: all interfaces)"
    )
    parser.add_argument(
        "--port",
        type=parse_port,
        default=8000,
        metavar="PORT",
        help="bind to this port, 0 to 65535; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--protocol",
        metavar="VERSION",
        default="HTTP/1.0",
        help="conform to this HTTP version (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose client has not sent or taken a byte for this "
        "long: each wait on the client socket is bounded by it, while reading the "
        "request, sending the body, and between keep-alive requests. 0: no timeout "
        "(default: %(default)g)",
    )
    add_max_connections(parser, FDS_PER_CONNECTION, "a socket and the file it is sent")
    parser.set_defaults(func=run)


def parse_port(text: str) -> int:
    """A TCP port, 0 to 65535, for argparse (the kernel would silently take 99999 modulo 65536)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port from 0 to 65535: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value

"""``python -m zerocopy serve``: ``python -m http.server``, with file bodies sent by ``sendfile``.

The server is the stdlib's :class:`http.server.ThreadingHTTPServer` (one
thread per connection), dual-stack where IPv6 is available, like
``python -m http.server``; the handler is
:class:`zerocopy.http.ZeroCopyHTTPRequestHandler`, which also answers byte
ranges.  Requests are logged to stderr, as the stdlib does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from http.server import ThreadingHTTPServer
from typing import Any

from ..http import ZeroCopyHTTPRequestHandler

__all__ = ["add_parser", "make_server", "run"]


class _Server(ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 drops the SYNs of a burst of clients,
    # which then wait a second to retry.
    request_queue_size = 128

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
    directory: str, bind: str | None = None, port: int = 8000, protocol: str = "HTTP/1.0"
) -> ThreadingHTTPServer:
    """A bound, listening threaded server for *directory*, as ``python -m http.server`` makes it.

    *bind* ``None`` means all interfaces (IPv6 and IPv4 where possible).
    """
    infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    directory = os.fspath(directory)

    class Handler(ZeroCopyHTTPRequestHandler):
        protocol_version = protocol

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

    class Server(_Server):
        address_family = family

    return Server(sockaddr, Handler)  # type: ignore[arg-type]  # an AF_INET(6) address


def run(args: argparse.Namespace) -> int:
    directory = args.directory if args.directory is not None else os.getcwd()
    if not os.path.isdir(directory):
        print(f"python -m zerocopy serve: not a directory: {directory}", file=sys.stderr)
        return 2
    with make_server(directory, args.bind, args.port, args.protocol) as httpd:
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
        "with sendfile(2) and answering single byte ranges.",
    )
    parser.add_argument(
        "directory", nargs="?", metavar="DIR", help="serve this directory (default: current)"
    )
    parser.add_argument(
        "-b", "--bind", metavar="ADDRESS", help="bind to this address (default: all interfaces)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="bind to this port (default: %(default)s)"
    )
    parser.add_argument(
        "--protocol",
        metavar="VERSION",
        default="HTTP/1.0",
        help="conform to this HTTP version (default: %(default)s)",
    )
    parser.set_defaults(func=run)

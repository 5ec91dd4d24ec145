"""``python -m zerocopy proxy LISTEN TARGET``: an example TCP forwarder on :func:`zerocopy.relay`.

An example of ``relay`` in a threaded server, not a product: one thread per
connection, no limit on connections, no TLS, no access control.  Each
accepted connection gets a connection to TARGET; ``relay`` splices both
directions until both have ended (half-closes are passed on), and then both
sockets are closed, whether ``relay`` returned or raised.  Connections are
logged with :mod:`logging` (``-v`` for each connection, warnings always).
"""

from __future__ import annotations

import argparse
import logging
import select
import socket
import threading
from typing import Any

from .. import relay

__all__ = ["add_parser", "parse_address", "run", "serve"]

log = logging.getLogger("zerocopy.proxy")

#: How long serve() waits for a connection before it looks for signals again.
_WAKE_MS = 500


def parse_address(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or (with *default_host*) ``":port"`` -> ``(host, port)``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        if default_host is None:
            raise argparse.ArgumentTypeError(f"a host is needed: {text!r}")
        host = default_host
    return host, int(port_text)


def _listen(host: str, port: int) -> socket.socket:
    if not host and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
        )
    if not host:
        return socket.create_server(("", port), backlog=128)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=128)


def _forward(
    client: socket.socket,
    peer: Any,
    target: tuple[str, int],
    connect_timeout: float,
    idle_timeout: float | None,
) -> None:
    upstream: socket.socket | None = None
    try:
        try:
            upstream = socket.create_connection(target, timeout=connect_timeout)
        except OSError as exc:
            log.warning("%s: cannot connect to %s:%d: %s", peer, *target, exc)
            return
        upstream.settimeout(None)
        log.info("%s: connected to %s:%d", peer, *target)
        try:
            sent, received = relay(client, upstream, timeout=idle_timeout)
        except OSError as exc:
            log.warning(
                "%s: %s after %d bytes up, %d down",
                peer,
                exc,
                getattr(exc, "a_to_b", 0),
                getattr(exc, "b_to_a", 0),
            )
            return
        log.info("%s: closed, %d bytes up, %d down", peer, sent, received)
    except Exception:
        log.exception("%s: unexpected error", peer)
    finally:
        client.close()
        if upstream is not None:
            upstream.close()


def serve(
    listener: socket.socket,
    target: tuple[str, int],
    *,
    connect_timeout: float = 10.0,
    idle_timeout: float | None = None,
) -> None:
    """Accept on *listener* forever, forwarding each connection to *target* in its own thread.

    The wait for a connection wakes every half second, as
    :meth:`socketserver.BaseServer.serve_forever` does, so that a signal
    handler's exception (Ctrl-C's :class:`KeyboardInterrupt`) is raised here
    within that time whichever thread the kernel delivered the signal to.  A
    bare blocking ``accept()`` would sleep on: Python runs handlers in the
    main thread only, and an ``accept()`` that the signal did not interrupt
    (it went to a connection thread, or came just before the call) does not
    return until the next client.
    """
    waiter = select.poll()
    waiter.register(listener, select.POLLIN)
    while True:
        if not waiter.poll(_WAKE_MS):
            continue
        try:
            client, peer = listener.accept()
        except BlockingIOError:
            continue  # the client went away first (non-blocking listener)
        name = f"{peer[0]}:{peer[1]}"
        threading.Thread(
            target=_forward,
            args=(client, name, target, connect_timeout, idle_timeout),
            name=f"proxy {name}",
            daemon=True,
        ).start()


def run(args: argparse.Namespace) -> int:
    host, port = args.listen
    try:
        listener = _listen(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    with listener:
        bound = listener.getsockname()
        print(
            f"Forwarding {bound[0]} port {bound[1]} to {args.target[0]}:{args.target[1]} ...",
            flush=True,
        )
        try:
            serve(
                listener,
                args.target,
                connect_timeout=args.connect_timeout,
                idle_timeout=args.timeout,
            )
        except KeyboardInterrupt:
            print("\nKeyboard interrupt received, exiting.", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "proxy",
        help="example TCP forwarder built on zerocopy.relay",
        description="Forward every TCP connection accepted on LISTEN to TARGET, splicing "
        "both directions with zerocopy.relay, one thread per connection.  An example, "
        "not a product.",
    )
    parser.add_argument(
        "listen",
        metavar="LISTEN",
        type=lambda text: parse_address(text, default_host=""),
        help="address to listen on: HOST:PORT, or :PORT for all interfaces",
    )
    parser.add_argument(
        "target", metavar="TARGET", type=parse_address, help="address to forward to: HOST:PORT"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a connection idle in both directions this long (default: never)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up connecting to TARGET after this long (default: %(default)s)",
    )
    parser.set_defaults(func=run)

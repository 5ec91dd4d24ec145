"""``python -m zerocopy proxy LISTEN TARGET``: an example TCP forwarder on zerocopy's relay hub.

An example of the relay in a server, not a product: no TLS, no access
control.  Each accepted connection gets a thread that makes the connection
to TARGET and hands both sockets to the process's relay hub
(:mod:`zerocopy._relay.hub`): one thread that splices every connection's
both directions, one C call per batch of wake-ups, with the relay's
contract (half-closes passed on, exact counts, idle timeout).  Where there
is no epoll (off Linux), each connection's thread runs :func:`zerocopy.relay`
itself.  When both
directions have ended, the connection's thread closes both sockets, whether
the relay returned or raised.  Connections are logged with :mod:`logging`
(``-v`` for each connection, warnings always).

Connections are admitted through an :class:`~.accepting.AcceptGate`: at most
``--max-connections`` at once (by default what the descriptor limit allows),
and when descriptors run out anyway the listener pauses instead of the
process exiting.
"""

from __future__ import annotations

import argparse
import logging
import select
import socket
import threading
import time
from typing import Any

from .. import relay
from .._relay import hub as _hub
from .accepting import PAUSE_ERRNOS, AcceptGate, add_max_connections
from .serve import listen_error

__all__ = ["add_parser", "parse_address", "run", "serve"]

log = logging.getLogger("zerocopy.proxy")

#: How long serve() waits for a connection before it looks for signals again.
_WAKE_MS = 500

#: Descriptors per connection for the default cap, as HAProxy counts them when
#: it splices: the two sockets, and a pipe (two descriptors) for one
#: connection in four.
FDS_PER_CONNECTION = 2.5

#: How often a connection thread tries again to make its socket to TARGET
#: while descriptors are out.
_RETRY_SOCKET = 0.05


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


def _connect(target: tuple[str, int], timeout: float, gate: AcceptGate) -> socket.socket:
    """``create_connection(target)``, waiting out a shortage of descriptors within *timeout*.

    The client is already accepted: rather than drop it because its second
    socket cannot be made yet, pause the listener (which gives up the
    gate's reserve) and try again until the connect timeout runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(target, timeout=max(deadline - time.monotonic(), 0.001))
        except OSError as exc:
            if exc.errno not in PAUSE_ERRNOS or time.monotonic() + _RETRY_SOCKET > deadline:
                raise
            gate.ran_out(exc)
        time.sleep(_RETRY_SOCKET)


def _forward(
    client: socket.socket,
    peer: Any,
    target: tuple[str, int],
    connect_timeout: float,
    idle_timeout: float | None,
    gate: AcceptGate,
    hub: _hub.Hub | None,
) -> None:
    upstream: socket.socket | None = None
    try:
        try:
            upstream = _connect(target, connect_timeout, gate)
        except OSError as exc:
            log.warning("%s: cannot connect to %s:%d: %s", peer, *target, exc)
            return
        upstream.settimeout(None)
        log.info("%s: connected to %s:%d", peer, *target)
        try:
            if hub is None:  # no epoll here: relay() in this thread
                sent, received = relay(client, upstream, timeout=idle_timeout)
            else:
                sent, received = _hub.relay_on_hub(hub, client, upstream, idle_timeout)
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
        gate.closed()


def serve(
    listener: socket.socket,
    target: tuple[str, int],
    *,
    connect_timeout: float = 10.0,
    idle_timeout: float | None = None,
    max_connections: int | None = None,
) -> None:
    """Accept on *listener* forever, forwarding each connection to *target* on a relay hub.

    At most *max_connections* connections are open at once (``None``: no
    cap); at the cap the listener is left alone and clients wait in its
    backlog.  ``accept()`` failing for want of descriptors or memory
    (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses accepting, logged once, until
    a back-off ends or a connection closes; the live connections go on.

    The wait for a connection wakes every half second, as
    :meth:`socketserver.BaseServer.serve_forever` does, so that a signal
    handler's exception (Ctrl-C's :class:`KeyboardInterrupt`) is raised here
    within that time whichever thread the kernel delivered the signal to.  A
    bare blocking ``accept()`` would sleep on: Python runs handlers in the
    main thread only, and an ``accept()`` that the signal did not interrupt
    (it went to a connection thread, or came just before the call) does not
    return until the next client.
    """
    gate = AcceptGate(log, max_connections)
    hub = _hub.Hub() if _hub.available() else None
    waiter = select.poll()
    waiter.register(listener, select.POLLIN)
    try:
        while True:
            if not gate.wait_open(_WAKE_MS / 1000) or not waiter.poll(_WAKE_MS):
                continue
            try:
                client, peer = listener.accept()
            except BlockingIOError:
                continue  # the client went away first (non-blocking listener)
            except OSError as exc:
                if gate.accept_failed(exc):
                    continue
                raise
            gate.opened()
            _start(client, f"{peer[0]}:{peer[1]}", target, connect_timeout, idle_timeout, gate, hub)
    finally:
        gate.close()
        if hub is not None:
            hub.close()  # ends the relays still running: their threads close their sockets


def _start(
    client: socket.socket,
    name: str,
    target: tuple[str, int],
    connect_timeout: float,
    idle_timeout: float | None,
    gate: AcceptGate,
    hub: _hub.Hub | None,
) -> None:
    """Forward *client* from a thread of its own; close it if no thread can be started."""
    thread = threading.Thread(
        target=_forward,
        args=(client, name, target, connect_timeout, idle_timeout, gate, hub),
        name=f"proxy {name}",
        daemon=True,
    )
    try:
        thread.start()
    except RuntimeError as exc:  # "can't start new thread": out of memory or tasks
        log.warning("%s: closed, no thread for it: %s", name, exc)
        client.close()
        gate.closed()
        gate.ran_out(OSError(0, str(exc)))


def run(args: argparse.Namespace) -> int:
    """Forward until Ctrl-C (status 0); :class:`UserError` when it cannot listen."""
    host, port = args.listen
    try:
        listener = _listen(host, port)
    except OSError as exc:
        raise listen_error(host, port, exc) from None
    with listener:
        bound = listener.getsockname()
        log.info("at most %s connections at once", args.max_connections or "unlimited")
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
                max_connections=args.max_connections or None,
            )
        except KeyboardInterrupt:
            print("\nKeyboard interrupt received, exiting.", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "proxy",
        help="example TCP forwarder built on zerocopy's relay",
        description="Forward every TCP connection accepted on LISTEN to TARGET, splicing "
        "both directions of every connection in one relay thread (zerocopy's relay hub: one "
        "C call per batch of wake-ups).  An example, not a product.",
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
    add_max_connections(parser, FDS_PER_CONNECTION, "two sockets and a quarter of a pipe")
    parser.set_defaults(func=run)

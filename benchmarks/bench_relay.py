#!/usr/bin/env python3
"""Loopback TCP relay: zerocopy.relay against a Python recv_into/sendall relay and HAProxy.

Targets (issue), one 1 GiB connection at a time: ``zerocopy.relay``'s proxy
CPU per GiB <= 0.7x the Python relay's (1 MiB buffer, a thread per
direction) and <= HAProxy's (``mode tcp``, ``option splice-auto``); its
throughput >= 0.75x the Python relay's.

Every party is its own process, started once and reaped at the end: the
client (sender), the sink, and one process per proxy.  For each run the client
connects to a proxy, sends ``--size`` bytes from a 1 MiB buffer with
``sendall``, shuts down writing and waits for the sink's answer (the byte
count, relayed back through the proxy); the run's time is the client's, from
connect to answer.  The sink reads with ``recv_into`` over one 1 MiB buffer.
Proxy CPU is the toolkit's ``process_tree_cpu`` of the proxy process, read
from ``/proc/<pid>/stat`` around each run (all of its threads and live worker
processes; 10 ms ticks).  A
"direct" run (client to sink, no proxy) gives the ceiling.

``--concurrent N --duration S`` measures N connections at once for S seconds
each run (``--connections 1,32,256``: one table per count, the proxies
started once): every client connection sends as fast as it can until the
deadline; the table gives the aggregate throughput, the proxy's CPU per GiB
and its peak RSS, pipe descriptors and bytes held in pipes (sampled every
50 ms; the first process of a multi-process proxy only), for
zerocopy.relay (a thread per connection), a Python ``recv_into``/``sendall``
relay (a thread per direction, 1 MiB buffers), a plain asyncio
StreamReader/StreamWriter relay, an asyncio relay on raw sockets
(``sock_recv_into``/``sock_sendall``, 1 MiB buffers), ``zerocopy.aio.relay``
on asyncio and on uvloop (if installed), each as one event loop, as two loops
in two threads and as two forked worker processes (SO_REUSEPORT listeners on
one port), and HAProxy.  Issue 13's targets (the relays against HAProxy's
forced splice) are checked.

HAProxy runs only if ``haproxy`` is on PATH (``apt-get install haproxy``),
twice, each with a temporary configuration bound to loopback: ``mode tcp``
with ``option splice-auto`` (the issue's baseline; its heuristics may never
splice a single stream) and with ``option splice-request`` and
``splice-response`` plus ``tune.pipesize 1048576`` (splicing from the first
byte through 1 MiB pipes, like zerocopy).  HAProxy 2.5 and later run a
thread per core by default; with ``--connections`` the forced-splice
configuration also runs with ``nbthread 1``, the match for one event loop.

``--latency`` (issue 22) measures a relay's interactive latency: for each
count in ``--bulk`` (default 8,32) every proxy carries that many bulk
connections (the client's, to the sink, as ``--concurrent``) for
``--duration`` seconds (default 10) and, meanwhile, one interactive
connection through the same proxy (its second listener; HAProxy's second
frontend) to an echo peer: a probe process of its own, no other thread in
it, sends ``--probe-size`` bytes (64) every ``--interval`` ms (5), waits for
the echo, and times each round trip, from a moment after the bulk senders
start to a moment before they stop.  The proxies: HAProxy ``nbthread 1``
forced splice through 1 MiB pipes (the reference), ``zerocopy.aio.relay`` on
one asyncio loop and on uvloop, ``zerocopy.relay`` (a thread per
connection) and the Python relay.  The table gives the bulk aggregate
throughput, the proxy's CPU per GiB of bulk bytes, and the probe's p50 and
p99 (medians over the rounds, with their range; p99 also against HAProxy's,
paired per round).  Targets: each aio relay's p99 at most 1.5x HAProxy's;
with ``--before CHECKOUT`` (another checkout's ``src/``, its extension
built) the aio relays also run on that package, and at 32 bulk connections
their throughput must be no lower than that ("today's").

    python benchmarks/bench_relay.py [--size 1G] [--repeat 5] [--json FILE]
    python benchmarks/bench_relay.py --concurrent 32 --duration 20 [--repeat 5]
    python benchmarks/bench_relay.py --connections 1,32,256 --duration 8 --repeat 3
    python benchmarks/bench_relay.py --latency --bulk 8,32 [--before ../main] [--json FILE]

``BENCH_RELAY_ONLY="NAME;NAME"`` runs only those of zerocopy's variants
(HAProxy still runs beside them): a quicker A/B of a few.  Variants named
``(own rounds)`` run each relay in its own thread or on its own loop, the
engine before the relay hubs (and off Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import importlib.util
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kit import common as c
from kit.toolkit import (
    CpuTimes,
    GiB,
    KiB,
    LoadMeter,
    MemoryWatch,
    MiB,
    Sample,
    machine,
    machine_cpu,
    print_machine,
    print_round,
    process_tree_cpu,
    run_rounds,
    spread,
    summarize,
)

_ACK = struct.Struct("!Q16s")  # bytes received, blake2b-128 digest (zeros unless verifying)
_NO_DIGEST = bytes(16)


def _block(i: int, base: bytes) -> bytes:
    return struct.pack("<Q", i) + base[8:]


def _base_block() -> bytes:
    return random.Random(0).randbytes(MiB)


# --- the roles: each a separate process -----------------------------------------


def _listen() -> socket.socket:
    """A listener; its port is the peer's hello (``c.announce``: it exits when stdin closes)."""
    ls = socket.create_server(("127.0.0.1", 0), backlog=256)
    c.announce(ports=[ls.getsockname()[1]])
    return ls


def _listen_routes(targets: list[int]) -> list[tuple[socket.socket, int]]:
    """A listener per target port (the proxy's routes); their ports, in order, are the hello.

    One target is the usual proxy; ``--latency`` gives two (the sink, the echo
    peer) so the bulk and the interactive connections share one proxy.
    """
    routes = [(socket.create_server(("127.0.0.1", 0), backlog=256), t) for t in targets]
    c.announce(ports=[ls.getsockname()[1] for ls, _ in routes])
    return routes


def _serve_threads(ls: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def _serve_routes_threads(targets: list[int], handle: Callable[[socket.socket, int], None]) -> None:
    """Accept on each route's listener in a thread of its own; *handle(conn, target)*."""
    routes = _listen_routes(targets)
    for ls, target in routes[1:]:
        threading.Thread(
            target=_serve_threads,
            args=(ls, lambda conn, t=target: handle(conn, t)),
            daemon=True,
        ).start()
    ls, target = routes[0]
    _serve_threads(ls, lambda conn: handle(conn, target))


def role_sink(verify: bool) -> None:
    """Read every connection to end of stream (1 MiB recv_into), answer with the count."""

    def handle(conn: socket.socket) -> None:
        buf = memoryview(bytearray(MiB))
        h = hashlib.blake2b(digest_size=16)
        total = 0
        with conn:
            try:
                while n := conn.recv_into(buf):
                    total += n
                    if verify:
                        h.update(buf[:n])
                conn.sendall(_ACK.pack(total, h.digest() if verify else _NO_DIGEST))
            except OSError:  # a readiness probe, or a proxy that gave up: not our business
                pass

    _serve_threads(_listen(), handle)


def role_proxy_zerocopy(targets: list[int]) -> None:
    """zerocopy.relay in a thread per connection."""
    import zerocopy

    def handle(conn: socket.socket, target: int) -> None:
        with conn, socket.create_connection(("127.0.0.1", target)) as up:
            try:
                zerocopy.relay(conn, up)
            except OSError as exc:
                print(f"relay: {exc!r}", file=sys.stderr, flush=True)

    _serve_routes_threads(targets, handle)


def role_proxy_hub(targets: list[int], hubs: int = 1) -> None:
    """zerocopy's relay hub (issue 27): *hubs* hub threads, relays handed out in turn.

    A thread per connection makes the upstream connection and waits; the
    hub's thread moves the bytes, one C call per batch of wake-ups.
    """
    import itertools

    from zerocopy._relay.hub import Hub, relay_on_hub

    # BENCH_HUB_BUDGET (bytes): another per-direction round budget, for A/Bs.
    budget = int(os.environ["BENCH_HUB_BUDGET"]) if os.environ.get("BENCH_HUB_BUDGET") else None
    pool = itertools.cycle([Hub(budget=budget) for _ in range(hubs)])
    lock = threading.Lock()

    def handle(conn: socket.socket, target: int) -> None:
        with lock:
            hub = next(pool)
        with conn, socket.create_connection(("127.0.0.1", target)) as up:
            try:
                relay_on_hub(hub, conn, up)
            except OSError as exc:
                print(f"relay: {exc!r}", file=sys.stderr, flush=True)

    _serve_routes_threads(targets, handle)


def own_rounds(role: Callable[..., None]) -> Callable[..., None]:
    """*role* with each relay stepping its own rounds (the engine before the hub, and off Linux)."""

    def run(*args: Any) -> None:
        try:
            from zerocopy._relay import hub
        except ImportError:
            pass  # a tree from before the hub (compare_trees.py): rounds are all it has
        else:
            hub.ENGINE = "rounds"
        role(*args)

    return run


def role_proxy_python(targets: list[int]) -> None:
    """recv_into a 1 MiB buffer and sendall, a thread per direction."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        buf = memoryview(bytearray(MiB))
        try:
            while n := src.recv_into(buf):
                dst.sendall(buf[:n])
            dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            print(f"pump: {exc!r}", file=sys.stderr, flush=True)

    def handle(conn: socket.socket, target: int) -> None:
        with conn, socket.create_connection(("127.0.0.1", target)) as up:
            back = threading.Thread(target=pump, args=(up, conn))
            back.start()
            pump(conn, up)
            back.join()

    _serve_routes_threads(targets, handle)


def role_proxy_asyncio(targets: list[int]) -> None:
    """A plain asyncio StreamReader/StreamWriter relay (64 KiB reads)."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(64 * KiB):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def handle(target: int, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", target)
        try:
            await asyncio.gather(pump(cr, uw), pump(ur, cw))
        except OSError as exc:
            print(f"asyncio relay: {exc!r}", file=sys.stderr, flush=True)
        finally:
            for w in (cw, uw):
                w.close()

    async def main() -> None:
        servers = [
            await asyncio.start_server(functools.partial(handle, t), sock=ls, backlog=256)
            for ls, t in _listen_routes(targets)
        ]
        await asyncio.gather(*(server.serve_forever() for server in servers))

    asyncio.run(main())


def _listen_shared(n: int) -> list[socket.socket]:
    """*n* listeners on one port (SO_REUSEPORT): the kernel spreads connections over them."""
    listeners: list[socket.socket] = []
    port = 0
    for _ in range(n):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(256)
        port = ls.getsockname()[1]
        listeners.append(ls)
    c.announce(ports=[port])
    return listeners


async def _serve_raw(
    handle: Callable[[asyncio.AbstractEventLoop, socket.socket], Any], ls: socket.socket
) -> None:
    """Accept on raw non-blocking sockets for ever, a task per connection."""
    loop = asyncio.get_running_loop()
    ls.setblocking(False)
    tasks = set()
    while True:
        conn, _ = await loop.sock_accept(ls)
        conn.setblocking(False)
        task = loop.create_task(handle(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _serve_raw_routes(
    targets: list[int],
    handle: Callable[[int, asyncio.AbstractEventLoop, socket.socket], Any],
) -> None:
    """:func:`_serve_raw` on each route's listener, all on the running loop."""
    await asyncio.gather(
        *(_serve_raw(functools.partial(handle, t), ls) for ls, t in _listen_routes(targets))
    )


def role_proxy_aio(targets: list[int], loops: int = 1, processes: int = 1) -> None:
    """zerocopy.aio.relay on non-blocking sockets, one task per connection.

    With *loops* > 1, that many threads each run an event loop of their own
    with a listener of their own on the same port (SO_REUSEPORT); with
    *processes* > 1, that many processes do (forked workers, as
    ``uvicorn --workers`` runs them).  HAProxy runs a thread per core by
    default.  The relay's splices release the GIL.
    """
    import zerocopy.aio

    (target, *more) = targets
    if more and (loops > 1 or processes > 1):
        raise SystemExit("aio: several targets only on one loop in one process")

    async def handle(target: int, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        try:
            await loop.sock_connect(up, ("127.0.0.1", target))
            await zerocopy.aio.relay(conn, up)
        except OSError as exc:
            print(f"aio relay: {exc!r}", file=sys.stderr, flush=True)
        finally:
            conn.close()
            up.close()

    if loops == 1 and processes == 1:
        asyncio.run(_serve_raw_routes(targets, handle))
        return
    one = functools.partial(handle, target)
    if processes > 1:
        listeners = _listen_shared(processes)
        for ls in listeners[1:]:
            if os.fork() == 0:  # a worker: it serves its listener until the parent dies
                c.die_with_parent()
                asyncio.run(_serve_raw(one, ls))
                os._exit(0)
        asyncio.run(_serve_raw(one, listeners[0]))
        return
    workers = [
        threading.Thread(target=lambda ls=ls: asyncio.run(_serve_raw(one, ls)))
        for ls in _listen_shared(loops)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def role_proxy_aio_uvloop(targets: list[int], loops: int = 1, processes: int = 1) -> None:
    """zerocopy.aio.relay as role_proxy_aio, on uvloop's event loop."""
    import uvloop

    uvloop.install()
    role_proxy_aio(targets, loops, processes)


def role_proxy_asyncio_raw(targets: list[int]) -> None:
    """asyncio on raw non-blocking sockets: sock_recv_into a 1 MiB buffer, sock_sendall."""

    async def pump(loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket) -> None:
        buf = memoryview(bytearray(MiB))
        while n := await loop.sock_recv_into(src, buf):
            await loop.sock_sendall(dst, buf[:n])
        dst.shutdown(socket.SHUT_WR)

    async def handle(target: int, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.setblocking(False)
        try:
            await loop.sock_connect(up, ("127.0.0.1", target))
            await asyncio.gather(pump(loop, conn, up), pump(loop, up, conn))
        except OSError as exc:
            print(f"asyncio raw relay: {exc!r}", file=sys.stderr, flush=True)
        finally:
            conn.close()
            up.close()

    asyncio.run(_serve_raw_routes(targets, handle))


def role_client() -> None:
    """Run the transfers the controller asks for: ``{"op": "one"|"many", ...}``."""
    base = _base_block()
    plain = memoryview(base)

    def handle(r: dict[str, Any]) -> dict[str, Any]:
        if r["op"] == "one":
            return _client_one(r["port"], r["size"], r["verify"], base, plain)
        return _client_many(r["port"], r["n"], r["duration"], plain)

    c.serve_peer(handle)


def _recv_ack(sock: socket.socket) -> tuple[int, bytes]:
    total, digest = _ACK.unpack(c.recv_exactly(sock, _ACK.size))
    return total, digest


def _client_one(
    port: int, size: int, verify: bool, base: bytes, plain: memoryview
) -> dict[str, Any]:
    h = hashlib.blake2b(digest_size=16)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t0 = time.perf_counter()
        left, i = size, 0
        while left:
            n = min(left, MiB)
            if verify:
                block = _block(i, base)[:n]
                h.update(block)
                sock.sendall(block)
            else:
                sock.sendall(plain[:n])
            left -= n
            i += 1
        sock.shutdown(socket.SHUT_WR)
        total, digest = _recv_ack(sock)
        seconds = time.perf_counter() - t0
    if total != size or (verify and digest != h.digest()):
        raise ConnectionError(f"the sink got {total} bytes of {size}, or other bytes")
    return {"seconds": seconds, "bytes": total}


def _client_many(port: int, n: int, duration: float, plain: memoryview) -> dict[str, Any]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    start = threading.Barrier(n + 1)
    sent = [0] * n
    got = [0] * n
    errors: list[str] = []
    end = 0.0

    def run(i: int) -> None:
        sock = socks[i]
        try:
            start.wait()
            while time.perf_counter() < end:
                sock.sendall(plain)
                sent[i] += len(plain)
            sock.shutdown(socket.SHUT_WR)
            got[i], _ = _recv_ack(sock)
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    end = t0 + duration
    start.wait()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for s in socks:
        s.close()
    if errors or got != sent:
        raise ConnectionError(f"sent {sum(sent)}, the sink got {sum(got)}: {errors[:3]}")
    return {"seconds": seconds, "bytes": sum(got)}


def role_echo() -> None:
    """Echo every byte back on the connection it came in on (the interactive peer)."""

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while data := conn.recv(64 * KiB):
                    conn.sendall(data)
            except OSError:  # a readiness probe, or a proxy that gave up
                pass

    _serve_threads(_listen(), handle)


def role_probe() -> None:
    """Time small round trips the controller asks for on stdin; answer on stdout.

    A process of its own with no other thread at work, so its round trips
    wait on the proxy and the machine, never on a GIL held by bulk senders.
    """
    c.serve_peer(lambda r: _probe(r["port"], r["delay"], r["seconds"], r["interval"], r["size"]))


def _probe(port: int, delay: float, seconds: float, interval: float, size: int) -> dict[str, Any]:
    """After *delay* s, send *size* bytes every *interval* s for *seconds* s, each echo awaited.

    The first round trip (it makes the proxy connect upstream) is not
    counted.  A round trip that runs over its interval starts the next one at
    once.  Answer: the count of round trips, and their p50, p99 and max in seconds.
    """
    request = bytes(i % 251 for i in range(size))
    rtts: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def once() -> float:
            t0 = time.perf_counter()
            sock.sendall(request)
            echo = c.recv_exactly(sock, size)
            rtt = time.perf_counter() - t0
            if echo != request:
                raise ConnectionError("the echo differs from the request")
            return rtt

        once()
        time.sleep(delay)
        tick = time.perf_counter()
        end = tick + seconds
        while tick < end:
            rtts.append(once())
            tick += interval
            pause = tick - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                tick = time.perf_counter()
    if not rtts:
        raise ConnectionError("no round trip in the window")
    # One round trip (a window shorter than a stall) is still a figure: a long one.
    cuts = statistics.quantiles(rtts, n=100, method="inclusive") if len(rtts) > 1 else rtts * 99
    return {"round_trips": len(rtts), "p50": cuts[49], "p99": cuts[98], "max": max(rtts)}


# --- the controller ----------------------------------------------------------------


def _peer(*role: str, env: dict[str, str] | None = None) -> c.Peer:
    """A role of this script in its own process (``--before``: on another checkout's *env*)."""
    return c.Peer(__file__, *role, env=env)


def haproxy_server(
    target: int,
    workdir: str,
    *,
    forced: bool = False,
    pipesize: int | None = None,
    threads: int | None = None,
    echo: int | None = None,
) -> c.Server:
    """haproxy -db with a temporary mode tcp / option splice-auto configuration, started.

    With *echo*, a second frontend (``ports[1]``) leads to that port: the
    interactive connection of ``--latency`` shares the process and its threads
    with the bulk ones.
    """
    ports = [c.free_port()] + ([c.free_port()] if echo else [])
    echo_route = ""
    if echo:
        echo_route = (
            "frontend fe_echo\n"
            f"    bind 127.0.0.1:{ports[1]}\n"
            "    default_backend be_echo\n"
            "backend be_echo\n"
            f"    server echo 127.0.0.1:{echo}\n"
        )
    tune = f"    tune.pipesize {pipesize}\n" if pipesize else ""
    # HAProxy 2.5 and later run a thread per core unless told otherwise.
    if threads:
        tune += f"    nbthread {threads}\n"
    # splice-auto splices only once its heuristics call a stream "fast"; with
    # forced=True splice-request/splice-response splice from the first byte.
    splice = (
        "    option splice-request\n    option splice-response\n"
        if forced
        else "    option splice-auto\n"
    )
    config = os.path.join(workdir, f"haproxy-{ports[0]}.cfg")
    with open(config, "w", encoding="ascii") as f:
        f.write(
            "global\n"
            "    maxconn 4096\n"
            f"{tune}"
            "defaults\n"
            "    mode tcp\n"
            f"{splice}"
            "    timeout connect 5s\n"
            "    timeout client 120s\n"
            "    timeout server 120s\n"
            "frontend fe\n"
            f"    bind 127.0.0.1:{ports[0]}\n"
            "    default_backend be\n"
            "backend be\n"
            f"    server sink 127.0.0.1:{target}\n"
            f"{echo_route}"
        )
    argv = ["haproxy", "-db", "-f", config]
    return c.Server("haproxy", argv, ports[0], ports=ports).start()


def _haproxy_version() -> str | None:
    if shutil.which("haproxy") is None:
        return None
    out = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True, timeout=10).stdout
    lines = out.splitlines()
    splice = "USE_LINUX_SPLICE=1" in out or "+LINUX_SPLICE" in out
    return f"{lines[0] if lines else '?'}; linux splice {'built in' if splice else 'NOT built in'}"


def _parser() -> argparse.ArgumentParser:
    p = c.base_parser(__doc__.splitlines()[0], GiB)
    p.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="measure N concurrent connections for --duration seconds instead",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per run with --concurrent (default 20) or --latency (default 10)",
    )
    p.add_argument(
        "--connections",
        default="",
        metavar="LIST",
        help="like --concurrent, for each count in a comma-separated list (e.g. 1,32,256)",
    )
    p.add_argument(
        "--latency",
        action="store_true",
        help="measure an interactive connection's round trips next to --bulk bulk relays",
    )
    p.add_argument(
        "--bulk",
        default="8,32",
        metavar="LIST",
        help="with --latency: bulk connection counts, comma-separated (default 8,32)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="MS",
        help="with --latency: milliseconds between the probe's requests (default 5)",
    )
    p.add_argument(
        "--probe-size",
        type=int,
        default=64,
        metavar="BYTES",
        help="with --latency: bytes per request, echoed back (default 64)",
    )
    p.add_argument(
        "--before",
        metavar="CHECKOUT",
        help="with --latency: also run the aio relays on CHECKOUT's package (its src/, built), "
        "for the 32-connection throughput target against today's",
    )
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    return p


def _run_role(role: list[str]) -> int:
    name, *rest = role
    c.raise_nofile()
    if name == "sink":
        role_sink(rest == ["verify"])
    elif name == "client":
        role_client()
    elif name == "echo":
        role_echo()
    elif name == "probe":
        role_probe()
    else:
        # A proxy: its target ports (comma-separated: one listener each), then ints.
        targets, *more = rest
        {
            "zerocopy": role_proxy_zerocopy,
            "zerocopy-rounds": own_rounds(role_proxy_zerocopy),
            "hub": role_proxy_hub,
            "python": role_proxy_python,
            "asyncio": role_proxy_asyncio,
            "aio": role_proxy_aio,
            "aio-rounds": own_rounds(role_proxy_aio),
            "aio-uvloop": role_proxy_aio_uvloop,
            "asyncio-raw": role_proxy_asyncio_raw,
        }[name]([int(t) for t in targets.split(",")], *map(int, more))
    return 0


# Each variant's role, and what follows the target port on its command line.
_ROLES: dict[str, tuple[str, ...]] = {
    "zerocopy.relay": ("zerocopy",),
    "zerocopy.relay (threads)": ("zerocopy",),
    "zerocopy.relay (own rounds)": ("zerocopy-rounds",),
    "zerocopy hub": ("hub",),
    "zerocopy hub (2 threads)": ("hub", "2"),
    "python relay 1M": ("python",),
    "asyncio streams": ("asyncio",),
    "zerocopy.aio.relay": ("aio",),
    "zerocopy.aio.relay (own rounds)": ("aio-rounds",),
    "zerocopy.aio.relay (uvloop)": ("aio-uvloop",),
    "zerocopy.aio.relay (2 loops)": ("aio", "2"),
    "zerocopy.aio.relay (uvloop 2 loops)": ("aio-uvloop", "2"),
    "zerocopy.aio.relay (2 processes)": ("aio", "1", "2"),
    "zerocopy.aio.relay (uvloop 2 processes)": ("aio-uvloop", "1", "2"),
    "asyncio raw 1M": ("asyncio-raw",),
}


def _start_proxies(
    concurrent: bool, sink: int, haproxy: bool, workdir: str, peers: list[Any]
) -> dict[str, Any]:
    """Start every proxy in front of the *sink* port; each is added to *peers* to stop."""
    if concurrent:
        wanted = [
            "zerocopy.relay (threads)",
            "zerocopy.relay (own rounds)",
            "zerocopy hub",
            "zerocopy hub (2 threads)",
            "python relay 1M",
            "asyncio streams",
            "asyncio raw 1M",
            "zerocopy.aio.relay",
            "zerocopy.aio.relay (own rounds)",
            "zerocopy.aio.relay (2 loops)",
            "zerocopy.aio.relay (2 processes)",
        ]
        if importlib.util.find_spec("uvloop") is not None:
            wanted += [
                "zerocopy.aio.relay (uvloop)",
                "zerocopy.aio.relay (uvloop 2 loops)",
                "zerocopy.aio.relay (uvloop 2 processes)",
            ]
    else:
        wanted = [
            "zerocopy.relay",
            "zerocopy.relay (own rounds)",
            "zerocopy hub",
            "python relay 1M",
            "zerocopy.aio.relay",
            "zerocopy.aio.relay (own rounds)",
        ]
    only = os.environ.get("BENCH_RELAY_ONLY")
    if only:  # a quick A/B of some variants (HAProxy still runs beside them)
        wanted = [name for name in wanted if name in only.split(";")]
    proxies: dict[str, Any] = {}
    for name in wanted:
        role, *extra = _ROLES[name]
        proxies[name] = _peer(role, str(sink), *extra)
        peers.append(proxies[name])
    if haproxy:
        proxies["haproxy splice-auto"] = haproxy_server(sink, workdir)
        peers.append(proxies["haproxy splice-auto"])
        proxies["haproxy forced splice 1M"] = haproxy_server(
            sink, workdir, forced=True, pipesize=MiB
        )
        peers.append(proxies["haproxy forced splice 1M"])
        if concurrent:
            # The default above runs a thread per core; one event loop is
            # compared with one HAProxy thread too.
            one = haproxy_server(sink, workdir, forced=True, pipesize=MiB, threads=1)
            proxies["haproxy forced splice 1M (1 thread)"] = one
            peers.append(one)
    return proxies


def _concurrent_targets(results: dict[str, list[Sample]]) -> list[c.Target]:
    """Issue 13's targets: the relays against HAProxy's forced splice.

    HAProxy runs a thread per core by default (two here), so each relay is
    held to that and, where it runs one event loop, also to one HAProxy
    thread; the two-loop variants are HAProxy's match in threads.
    """
    ref = "haproxy forced splice 1M"
    one = "haproxy forced splice 1M (1 thread)"
    pairs = [
        ("zerocopy.aio.relay", ref),
        ("zerocopy.aio.relay (uvloop)", ref),
        ("zerocopy.relay (threads)", ref),
        ("zerocopy.aio.relay (2 loops)", ref),
        ("zerocopy.aio.relay (uvloop 2 loops)", ref),
        ("zerocopy.aio.relay (2 processes)", ref),
        ("zerocopy.aio.relay (uvloop 2 processes)", ref),
        ("zerocopy.aio.relay", one),
        ("zerocopy.aio.relay (uvloop)", one),
    ]
    targets = []
    for name, against in pairs:
        if name in results and against in results:
            targets.append(c.Target(name, against, "throughput", 1.0))
            targets.append(c.Target(name, against, "cpu", 1.2))
    return targets


def _memory_notes(s: dict[str, Any]) -> str:
    machine = ""
    if "machine_s_per_gib" in s:
        machine = (
            f"machine {s['machine_s_per_gib']:.3f} s/GiB (softirq {s['softirq_s_per_gib']:.3f}); "
        )
    if "peak_rss_mib" not in s:
        return machine.rstrip("; ")
    return machine + (
        f"RSS {s['peak_rss_mib']:.0f} MiB, {s['peak_pipe_fds']:.0f} pipe fds, "
        f"{s.get('peak_pipe_mib', 0):.1f} MiB in pipes (peaks)"
    )


def _targets(results: dict[str, list[Sample]]) -> list[c.Target]:
    """The issue's targets for one connection at a time."""
    base = "python relay 1M"
    targets = [
        c.Target("zerocopy.relay", base, "cpu", 0.7),
        c.Target("zerocopy.relay", base, "throughput", 0.75),
    ]
    for name in ("haproxy splice-auto", "haproxy forced splice 1M"):
        if name in results:
            targets.append(c.Target("zerocopy.relay", name, "cpu", 1.0))
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.role:
        return _run_role(args.role)
    c.apply_quick(args)
    if args.latency:
        return _latency_main(args)
    if args.duration is None:
        args.duration = 20.0
    if args.quick:
        args.duration = min(args.duration, 1.0)
    counts = [int(x) for x in args.connections.split(",") if x.strip()]
    if args.concurrent > 0 and not counts:
        counts = [args.concurrent]
    if any(n <= 0 for n in counts):
        raise SystemExit("--connections: counts must be > 0")
    concurrent = bool(counts)
    haproxy = _haproxy_version()
    c.raise_nofile()

    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-relay-")
    peers: list[Any] = []
    published = []
    try:
        sink = _peer("sink", *(["verify"] if args.verify else []))
        peers.append(sink)
        proxies = _start_proxies(concurrent, sink.port, bool(haproxy), workdir, peers)
        client = _peer("client")
        peers.append(client)
        for n in counts or [0]:
            published.append(_measure(args, n, proxies, sink, client, peers, haproxy))
    finally:
        for p in reversed(peers):
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    json_path = args.json
    for n, (title, info, results, base, targets, size) in zip(
        counts or [0], published, strict=True
    ):
        args.size = size
        if json_path and len(published) > 1:
            args.json = _json_per_count(json_path, n)
        c.publish(title, args, info, results, base, targets, _memory_notes)
    return 0


def _json_per_count(path: str, n: int) -> str:
    """One file per connection count: FILE.json -> FILE-32.json ..."""
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot else f"{path}-{n}"


def _rounds(
    args: argparse.Namespace,
    variants: list[tuple[str, Callable[[], Sample]]],
    peers: list[Any],
    on_round: Callable[[str, dict[str, Sample]], None] = print_round,
) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """The selected variants' alternating rounds, and how busy the machine was meanwhile."""
    # The peers are this benchmark's own processes but are reaped only at the end.
    with LoadMeter([p.pid for p in peers]) as load, c.Deadline(args.timeout):
        results = run_rounds(c.select(variants, args.only), args.repeat, on_round=on_round)
    return results, load.summary


def _measure(
    args: argparse.Namespace,
    n: int,
    proxies: dict[str, Any],
    sink: c.Peer,
    client: c.Peer,
    peers: list[Any],
    haproxy: str | None,
) -> tuple[str, dict[str, Any], dict[str, list[Sample]], str, list[c.Target], int]:
    """Every variant with *n* concurrent connections (0: one connection of --size)."""

    def variant(name: str, port: int, pid: int | None) -> Callable[[], Sample]:
        def run() -> Sample:
            cpu0 = process_tree_cpu(pid) if pid else CpuTimes(0.0, 0.0)
            machine0 = machine_cpu()
            with MemoryWatch(pid) as mem:
                if n:
                    request = {"op": "many", "port": port, "n": n, "duration": args.duration}
                else:
                    request = {"op": "one", "port": port, "size": args.size, "verify": args.verify}
                answer = client.ask(request)
            machine1 = machine_cpu()
            cpu1 = process_tree_cpu(pid) if pid else CpuTimes(0.0, 0.0)
            cpu = cpu1.minus(cpu0)
            gib = answer["bytes"] / GiB
            info = mem.info()
            # The whole machine's CPU per GiB (proxy, load generator, sink,
            # softirq wherever it ran) beside the proxy's own (issue 27).
            info["machine_s_per_gib"] = (machine1[0] - machine0[0]) / gib
            info["softirq_s_per_gib"] = (machine1[1] - machine0[1]) / gib
            return Sample(answer["seconds"], cpu.user, cpu.sys, answer["bytes"], info)

        return run

    variants = [(name, variant(name, p.port, p.pid)) for name, p in proxies.items()]
    if not n:
        variants.append(("direct (no proxy)", variant("direct", sink.port, None)))

    info = machine()
    info["haproxy"] = haproxy or "not installed: skipped"
    if haproxy:
        info["haproxy_threads"] = f"its default (a thread per core: {os.cpu_count()}) unless named"
    info["proxy_cpu"] = "the proxy's and its live workers', from /proc/<pid>/stat (10 ms ticks)"
    info["proxy_memory"] = (
        "peak VmRSS, pipe fds (stdio pipes too) and bytes in pipes of the proxy's"
        " first process, every 50 ms"
    )
    if n:
        info["connections"] = n
        info["duration_s"] = args.duration
    results, info["load_during_run"] = _rounds(args, variants, peers)

    if n:
        title = f"loopback TCP relay, {n} connections x {args.duration:g} s"
        # The header's "per run" figure: the median bytes one run moved.
        size = int(statistics.median(s.nbytes for s in results[next(iter(results))]))
        return title, info, results, "asyncio streams", _concurrent_targets(results), size
    title = "loopback TCP relay, one connection"
    return title, info, results, "python relay 1M", _targets(results), args.size


# --- --latency: one interactive connection next to bulk ones -------------------------

#: The reference: one HAProxy thread splicing from the first byte through 1 MiB pipes.
LATENCY_REF = "haproxy forced splice 1M (1 thread)"
#: The relays whose interactive p99 the issue holds to 1.5x the reference's.
LATENCY_CANDIDATES = (
    "zerocopy.aio.relay",
    "zerocopy.aio.relay (own rounds)",
    "zerocopy.aio.relay (uvloop)",
    "zerocopy hub",
)
#: Each candidate's run on the --before checkout's package ("today's").
BEFORE = {
    name: name[:-1] + ", before)" if name.endswith(")") else name + " (before)"
    for name in LATENCY_CANDIDATES
}


def _start_latency_proxies(
    sink: int,
    echo: int,
    haproxy: bool,
    workdir: str,
    peers: list[Any],
    before: dict[str, str] | None,
) -> dict[str, Any]:
    """Each proxy with two routes, to the *sink* (bulk) and to the *echo* peer (the probe)."""
    proxies: dict[str, Any] = {}
    if haproxy:
        proxies[LATENCY_REF] = haproxy_server(
            sink, workdir, forced=True, pipesize=MiB, threads=1, echo=echo
        )
        peers.append(proxies[LATENCY_REF])
    wanted = ["zerocopy.aio.relay", "zerocopy.aio.relay (own rounds)"]
    if importlib.util.find_spec("uvloop") is not None:
        wanted.append("zerocopy.aio.relay (uvloop)")
    wanted += ["zerocopy hub", "zerocopy.relay (threads)", "python relay 1M"]
    only = os.environ.get("BENCH_RELAY_ONLY")
    if only:  # a quick A/B of some variants (HAProxy still runs beside them)
        wanted = [name for name in wanted if name in only.split(";")]
    routes = f"{sink},{echo}"
    for name in wanted:
        role, *extra = _ROLES[name]
        proxies[name] = _peer(role, routes, *extra)
        peers.append(proxies[name])
        if before is not None and name in BEFORE:
            proxies[BEFORE[name]] = _peer(role, routes, *extra, env=before)
            peers.append(proxies[BEFORE[name]])
    return proxies


def _latency_variant(
    args: argparse.Namespace, n: int, proxy: Any, client: c.Peer, probe: c.Peer
) -> Callable[[], Sample]:
    """One run: *n* bulk connections for --duration, the probe's round trips meanwhile.

    The probe starts a little after the bulk senders and stops a little
    before them, so every round trip it times has all *n* at work beside it.
    """
    bulk_port, echo_port = proxy.ports
    settle = min(0.5, args.duration / 5)
    ping = {
        "port": echo_port,
        "delay": settle,
        "seconds": args.duration - 2 * settle,
        "interval": args.interval / 1000,
        "size": args.probe_size,
    }

    def run() -> Sample:
        cpu0 = process_tree_cpu(proxy.pid)
        client.send({"op": "many", "port": bulk_port, "n": n, "duration": args.duration})
        probe.send(ping)
        bulk = client.receive()
        echo = probe.receive()
        cpu = process_tree_cpu(proxy.pid).minus(cpu0)
        ms = {key: echo[key] * 1e3 for key in ("p50", "p99", "max")}
        notes = {"p50_ms": ms["p50"], "p99_ms": ms["p99"], "max_ms": ms["max"]}
        notes["round_trips"] = echo["round_trips"]
        return Sample(bulk["seconds"], cpu.user, cpu.sys, bulk["bytes"], notes)

    return run


def _print_latency_round(label: str, samples: dict[str, Sample]) -> None:
    parts = [
        f"{name} {s.nbytes / GiB / s.seconds:.2f} GiB/s p99 {s.info['p99_ms']:.2f} ms"
        for name, s in samples.items()
    ]
    print(f"  {label}: " + ", ".join(parts), file=sys.stderr, flush=True)


def _lower_is_better(
    results: dict[str, list[Sample]], name: str, ref: str, key: str, limit: float
) -> dict[str, Any]:
    """*name*'s median *key* over *ref*'s must be <= *limit*; a dict as Target.check's."""
    a = [s.info[key] for s in results[name]]
    b = [s.info[key] for s in results[ref]]
    value = statistics.median(a) / statistics.median(b)
    paired = [x / y for x, y in zip(a, b, strict=True)]
    verdict = "PASS" if value <= limit else "MISS"
    if verdict == "MISS" and min(paired) <= limit:
        verdict = "MISS (within paired spread)"
    return {
        "target": f"{name} {key} <= {limit}x {ref}",
        "value": round(value, 3),
        "paired": [round(min(paired), 3), round(max(paired), 3)],
        "paired_median": round(statistics.median(paired), 3),
        "verdict": verdict,
    }


def _latency_checks(results: dict[str, list[Sample]], n: int) -> list[dict[str, Any]]:
    """Issue 22: interactive p99 <= 1.5x HAProxy's; at 32, throughput >= today's."""
    checks = [
        _lower_is_better(results, name, LATENCY_REF, "p99_ms", 1.5)
        for name in LATENCY_CANDIDATES
        if name in results and LATENCY_REF in results
    ]
    if n == 32:
        checks += [
            c.Target(name, BEFORE[name], "throughput", 1.0).check(results)
            for name in LATENCY_CANDIDATES
            if name in results and BEFORE[name] in results
        ]
    return checks


def _latency_table(results: dict[str, list[Sample]], ref: str) -> tuple[str, dict[str, Any]]:
    headers = [
        "variant",
        "bulk GiB/s",
        "min-max",
        "CPU s/GiB",
        "p50 ms",
        "min-max",
        "p99 ms",
        "min-max",
        "p99 x ref",
        "paired x (min-max)",
        "max ms",
        "round trips",
    ]
    rows, data = [], {}
    for name, samples in results.items():
        s = summarize(samples)
        p50 = spread([x.info["p50_ms"] for x in samples])
        p99 = spread([x.info["p99_ms"] for x in samples])
        ratio = _lower_is_better(results, name, ref, "p99_ms", 1.5) if ref in results else None
        data[name] = {
            "summary": s,
            "p50_ms": p50,
            "p99_ms": p99,
            "p99_vs_ref": ratio,
            "samples": [vars(x) for x in samples],
        }
        g = s["gib_s"]
        rows.append(
            [
                name,
                f"{g['median']:.2f}",
                f"{g['min']:.2f}-{g['max']:.2f}",
                f"{s['cpu_s_per_gib']:.3f}",
                f"{p50['median']:.3f}",
                f"{p50['min']:.3f}-{p50['max']:.3f}",
                f"{p99['median']:.3f}",
                f"{p99['min']:.3f}-{p99['max']:.3f}",
                f"{ratio['value']:.2f}" if ratio else "",
                f"{ratio['paired_median']:.2f} ({ratio['paired'][0]:.2f}-{ratio['paired'][1]:.2f})"
                if ratio
                else "",
                f"{s['max_ms']:.2f}",
                f"{s['round_trips']:.0f}",
            ]
        )
    return c.table(headers, rows), data


def _latency_main(args: argparse.Namespace) -> int:
    """--latency: per bulk count, every proxy's bulk throughput and the probe's round trips."""
    if args.concurrent or args.connections:
        raise SystemExit("--latency takes --bulk, not --concurrent or --connections")
    counts = [int(x) for x in args.bulk.split(",") if x.strip()]
    if not counts or any(n <= 0 for n in counts):
        raise SystemExit("--bulk: counts must be > 0")
    if args.interval <= 0 or args.probe_size <= 0:
        raise SystemExit("--interval and --probe-size must be > 0")
    if args.duration is None:
        args.duration = 10.0
    if args.quick:
        args.duration = min(args.duration, 0.5)
    haproxy = _haproxy_version()
    before, before_file = c.checkout_env(args.before) if args.before else (None, None)
    c.raise_nofile()

    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-relay-")
    peers: list[Any] = []
    measured = []
    try:
        sink = _peer("sink", *(["verify"] if args.verify else []))
        peers.append(sink)
        echo = _peer("echo")
        peers.append(echo)
        proxies = _start_latency_proxies(
            sink.port, echo.port, bool(haproxy), workdir, peers, before
        )
        client = _peer("client")
        peers.append(client)
        probe = _peer("probe")
        peers.append(probe)
        for n in counts:
            variants = [
                (name, _latency_variant(args, n, p, client, probe)) for name, p in proxies.items()
            ]
            info = machine()
            info["haproxy"] = haproxy or "not installed: skipped"
            info["proxy_cpu"] = (
                "the proxy's, from /proc/<pid>/stat (10 ms ticks), per GiB of bulk bytes"
            )
            info["bulk_connections"] = n
            info["duration_s"] = args.duration
            info["probe"] = (
                f"{args.probe_size} B request, echoed, every {args.interval:g} ms, one "
                "connection through the same proxy, from a process of its own"
            )
            if before_file:
                info["before"] = before_file
            results, info["load_during_run"] = _rounds(args, variants, peers, _print_latency_round)
            measured.append((n, info, results))
    finally:
        for p in reversed(peers):
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    for n, info, results in measured:
        ref = LATENCY_REF if LATENCY_REF in results else next(iter(results))
        title = f"loopback TCP relay, interactive latency next to {n} bulk connections"
        print(
            f"\n{title}: {args.duration:g} s per run, median of {args.repeat} "
            "alternating rounds after 1 warm-up round\n"
        )
        print_machine(info)
        text, data = _latency_table(results, ref)
        print()
        print(text)
        checks = _latency_checks(results, n)
        c.print_targets(checks)
        if n == 32 and not any(BEFORE[x] in results for x in LATENCY_CANDIDATES):
            print("  (32-connection throughput against today's: not checked; give --before)")
        c.write_json(
            _json_per_count(args.json, n) if args.json and len(measured) > 1 else args.json,
            {
                "benchmark": title,
                "command": [sys.executable, *sys.argv],
                "args": vars(args),
                "machine": info,
                "baseline": ref,
                "results": data,
                "targets": checks,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Servers under load: bulk downloads, a latency probe beside them, and 256 keep-alive clients.

Each server is its own process on 127.0.0.1, started once, serving one
directory: a big file (100 MiB), a small one (4 KiB) and a keep-alive one
(1 MiB).  The variants, in their order:

1. ``nginx``: ``sendfile on``, one worker (the reference);
2. ``granian``: Starlette's ``FileResponse`` under granian (``--interface
   asgi --workers 1 --loop uvloop``), which serves ``http.response.pathsend``
   itself, in Rust (a second reference);
3. ``uvicorn``: the same app under stock uvicorn (``--http httptools --loop
   asyncio``);
4. ``uvicorn+zerocopy``: under ``--http zerocopy.uvicorn:HttpToolsProtocol``;
   and both again with the app's ``stat`` on the loop (``uvicorn (stat on
   loop)``, ``uvicorn+zerocopy (stat on loop)``): Starlette's
   ``FileResponse(path)`` stats the file in a worker thread, which on busy
   cores waits for a CPU; an app can pass ``stat_result`` instead;
5. ``aiohttp asyncio`` / 6. ``aiohttp asyncio+zerocopy``: aiohttp's
   ``web.FileResponse`` / ``zerocopy.aiohttp.FileResponse`` on asyncio;
7. ``aiohttp uvloop`` / 8. ``aiohttp uvloop+zerocopy``: the same on uvloop;
9. ``zerocopy serve``: ``python -m zerocopy serve --protocol HTTP/1.1``, a
   *threaded* server (a thread per connection, ``sendfile`` per body).

The framework servers are started as ``bench_frameworks.py`` starts them.  A
variant that cannot run here is left out with a ``skipped: <reason>`` line
(no nginx binary; a framework or granian not installed; a zerocopy module
that does not import).

**Load** (``--mode load``), for each ``--concurrency`` (4 and 32): a *bulk*
process downloads the big file over N keep-alive connections, back to back,
for ``--duration`` seconds (one thread, non-blocking sockets and a selector,
each body read with ``recv_into`` into one reused 1 MiB buffer; it counts
the body bytes received before the deadline, then closes its connections);
meanwhile a *probe* process, alone so no client's GIL is in its figures,
GETs the small file every ``--interval`` (5 ms) over one keep-alive
connection and records each request's latency.  Per server: bulk GiB/s, the
probe's p50 and p99, server CPU per GiB (the toolkit's ``process_tree_cpu``:
the server, its threads and its workers, around the whole run).

**Keep-alive** (``--mode keepalive``): ``--clients`` (256) keep-alive
connections from one process fetch the 1 MiB file back to back for
``--duration``: requests/s, GiB/s, server CPU per GiB, errors, and timeouts
(a request not answered whole within ``--request-timeout``); the server's
open descriptors (``/proc/PID/fd`` over its process tree) before and after,
to see none leaked.

Rounds alternate the servers (A B C A B C ...) after a warm-up round; the
tables give medians over the rounds and their range.  Every server is checked
before the rounds to serve each file's bytes (sha256), the framework servers
on the event loop they claim; ``--quick`` checks every body of every run.
Targets (issue 22): the probe's p99 with 4 and with 32 bulk downloads, for
uvicorn+zerocopy and aiohttp+zerocopy (asyncio and uvloop), at most
max(1.5x nginx's p99, nginx's + 2 ms) and no worse than the same framework's
stock path; their bulk GiB/s in the same runs at least 0.9x nginx's.

    python benchmarks/bench_serve.py [--concurrency 4,32] [--duration 4] [--repeat 5] [--json FILE]
    python benchmarks/bench_serve.py --only nginx,uvicorn+zerocopy --mode load
    python benchmarks/bench_serve.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import selectors
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import bench_frameworks as bf
from kit import common as c
from kit.toolkit import (
    GiB,
    KiB,
    LoadMeter,
    MiB,
    Sample,
    human,
    machine,
    print_machine,
    process_cpu,
    process_tree,
    run_rounds,
    size_arg,
    spread,
)

BIG, SMALL, KEEP = "big.bin", "small.bin", "keepalive.bin"
ME = os.path.abspath(__file__)

#: What issue 22 measured on old main (4 s rounds; 4 concurrent downloads):
#: (variant, bulk GiB/s, probe p50 ms, probe p99 ms).
ISSUE_FIGURES = [
    ("nginx", 2.63, 1.34, 5.12),
    ("granian", 2.01, 5.59, 13.1),
    ("uvicorn", 0.44, 2.31, 3.77),
    ("uvicorn+zerocopy", 2.31, 23.5, 234),
    ("aiohttp asyncio", 2.40, 34.7, 179),
    ("aiohttp uvloop", 1.26, 2.39, 5.49),
    ("aiohttp uvloop+zerocopy", 2.30, 30.4, 127),
]
#: The targets' candidates, and the same framework's stock path.
STOCK = {
    "uvicorn+zerocopy": "uvicorn",
    "uvicorn+zerocopy (stat on loop)": "uvicorn (stat on loop)",
    "uvicorn+zerocopy (zerocopy.starlette)": "uvicorn",
    "aiohttp asyncio+zerocopy": "aiohttp asyncio",
    "aiohttp uvloop+zerocopy": "aiohttp uvloop",
}
REFERENCE = "nginx"


# --- the variants ---------------------------------------------------------------


@dataclass
class Variant:
    name: str
    loop: str | None  # the event loop its /loop route must answer; None: no such route
    note: str  # printed in the tables' notes column
    why_not: Callable[[argparse.Namespace], str | None]  # a "skipped: ..." line, or None
    server: Callable[[argparse.Namespace, int, str], c.Server]  # (args, port, directory)
    # Its threads print a traceback for every client gone, interleaved (the
    # stdlib's socketserver): its log is counted, never parsed for failures.
    threaded_log: bool = False


def _framework(v: bf.Variant, note: str = "") -> Variant:
    """A server started as bench_frameworks.py starts it (uvicorn, aiohttp, granian)."""

    def server(args: argparse.Namespace, port: int, directory: str) -> c.Server:
        env = dict(os.environ, **{bf.DIR_ENV: directory})
        return c.Server(v.name, v.argv(port, directory), port, env=env)

    return Variant(v.name, v.loop, note, lambda args: bf.why_not(v), server)


def _granian(port: int, directory: str) -> list[str]:
    return [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
        *("--working-dir", os.path.dirname(ME), "--workers", "1", "--loop", "uvloop"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-ws"),
        *("--no-access-log", "--log-level", "warning", "bench_frameworks:starlette_app"),
    ]


def _nginx_why_not(args: argparse.Namespace) -> str | None:
    if not args.nginx or args.nginx == "none":
        return "skipped: nginx: no nginx binary (apt-get install nginx-light) or --nginx none"
    return None


def _zerocopy_serve(args: argparse.Namespace, port: int, directory: str) -> c.Server:
    argv = [
        *(sys.executable, "-m", "zerocopy", "serve", directory),
        *("--bind", "127.0.0.1", "--port", str(port), "--protocol", "HTTP/1.1"),
    ]
    return c.Server("zerocopy serve", argv, port)


_FRAMEWORKS = {v.name: v for v in bf.VARIANTS}
VARIANTS = [
    Variant(
        "nginx",
        None,
        "sendfile on, 1 worker",
        _nginx_why_not,
        lambda args, port, directory: c.nginx_server(args.nginx, directory, port),
    ),
    _framework(
        bf.Variant("granian", "uvloop", ("granian", "starlette", "uvloop"), None, _granian),
        "serves pathsend itself",
    ),
    _framework(_FRAMEWORKS["uvicorn"]),
    _framework(_FRAMEWORKS["uvicorn+zerocopy"]),
    _framework(
        bf.Variant(
            "uvicorn (stat on loop)",
            "asyncio",
            ("uvicorn", "httptools", "starlette"),
            None,
            bf.uvicorn_argv("httptools", "starlette_app_stat_on_loop"),
        ),
        "the app passes stat_result",
    ),
    _framework(
        bf.Variant(
            "uvicorn+zerocopy (stat on loop)",
            "asyncio",
            ("uvicorn", "httptools", "starlette"),
            "zerocopy.uvicorn:HttpToolsProtocol",
            bf.uvicorn_argv("zerocopy.uvicorn:HttpToolsProtocol", "starlette_app_stat_on_loop"),
        ),
        "the app passes stat_result",
    ),
    _framework(
        bf.Variant(
            "uvicorn+zerocopy (zerocopy.starlette)",
            "asyncio",
            ("uvicorn", "httptools", "starlette"),
            "zerocopy.uvicorn:HttpToolsProtocol",
            bf.uvicorn_argv(
                "zerocopy.uvicorn:HttpToolsProtocol", "starlette_app_zerocopy_response"
            ),
        ),
        "zerocopy.starlette.FileResponse",
    ),
    _framework(_FRAMEWORKS["aiohttp asyncio"]),
    _framework(
        bf.Variant(
            "aiohttp asyncio+zerocopy",
            "asyncio",
            ("aiohttp",),
            "zerocopy.aiohttp:FileResponse",
            bf.aiohttp_argv("asyncio", "zerocopy"),
        )
    ),
    _framework(_FRAMEWORKS["aiohttp uvloop"]),
    _framework(_FRAMEWORKS["aiohttp uvloop+zerocopy"]),
    # Stock aiohttp on zerocopy.loops.new_uvloop(): its loop.sendfile takes turns.
    _framework(_FRAMEWORKS["aiohttp zerocopy-uvloop"]),
    Variant(
        "zerocopy serve",
        None,
        "threaded: a thread per connection",
        lambda args: None,
        _zerocopy_serve,
        threaded_log=True,
    ),
]
NAMES = [v.name for v in VARIANTS]


# --- the clients (each in its own process) -------------------------------------------


class _Conn:
    """One keep-alive connection of the load client, and the answer it is reading."""

    __slots__ = ("digest", "head", "last", "left", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""
        self.left = -1  # body bytes still to come; -1: still in the head
        self.sent = self.last = 0.0
        self.digest: Any = None


def _content_length(head: bytes) -> int:
    """The Content-Length of a 200 answer's head; RuntimeError for anything else."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, status = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or status[:3] != "200":
        raise RuntimeError(f"not a 200 answer: {status_line!r}")
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            return int(value)
    raise RuntimeError("no Content-Length (the client reads no chunks)")


class LoadClient:
    """*conns* keep-alive connections GETting one path back to back, in one thread.

    Non-blocking sockets and a selector; each body is read with ``recv_into``
    into one reused 1 MiB buffer (with *sha256*, each body is checked).  A
    connection that fails, or times out (an answer not whole within
    *request_timeout* of its request, or no byte for *idle_timeout*), is
    counted and replaced.
    """

    def __init__(
        self,
        port: int,
        path: str,
        conns: int,
        size: int,
        sha256: str | None,
        request_timeout: float | None,
        idle_timeout: float,
    ) -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        self.conns = conns
        self.size = size
        self.sha256 = sha256
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.buf = memoryview(bytearray(MiB))
        self.sel = selectors.DefaultSelector()
        self.count = {"bytes": 0, "requests": 0, "errors": 0, "timeouts": 0, "bad_bodies": 0}
        self.first_errors: list[str] = []
        self.latencies: list[float] = []

    def run(self, duration: float) -> dict[str, Any]:
        """Connect, then GET for *duration* seconds; the counts before the deadline.

        Then every connection is closed, answers in flight or not.
        """
        cpu0 = process_cpu()
        conns = [self._connect() for _ in range(self.conns)]
        t0 = now = perf_counter()
        end = t0 + duration
        for conn in conns:
            self._ask(conn, t0)
        next_check = t0 + 0.1
        try:
            while now < end:
                for key, _ in self.sel.select(min(end - now, 0.1)):
                    self._readable(key.data)
                now = perf_counter()
                if now >= next_check:
                    next_check = now + 0.1
                    self._time_out(now)
            seconds = perf_counter() - t0
        finally:
            for key in list(self.sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            self.sel.close()
        return {
            "seconds": seconds,
            **self.count,
            "connections": self.conns,
            "first_errors": self.first_errors,
            "latency_ms": _percentiles(self.latencies),
            "client_cpu_s": process_cpu().total - cpu0.total,
        }

    def _connect(self) -> _Conn:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.idle_timeout)
        sock.setblocking(False)
        conn = _Conn(sock)
        self.sel.register(sock, selectors.EVENT_READ, conn)
        return conn

    def _ask(self, conn: _Conn, now: float) -> None:
        conn.head, conn.left, conn.sent, conn.last = b"", -1, now, now
        conn.digest = hashlib.sha256() if self.sha256 else None
        if conn.sock.send(self.request) != len(self.request):  # an idle connection's buffer
            raise ConnectionError("the request did not fit the socket's buffer")

    def _readable(self, conn: _Conn) -> None:
        now = conn.last = perf_counter()
        try:
            done = self._read(conn)
        except (OSError, RuntimeError, ValueError) as exc:
            self._fail(conn, "errors", f"{type(exc).__name__}: {exc}", now)
            return
        if done:
            self.count["requests"] += 1
            self.latencies.append(now - conn.sent)
            if conn.digest is not None and conn.digest.hexdigest() != self.sha256:
                self.count["bad_bodies"] += 1
            self._ask(conn, now)

    def _read(self, conn: _Conn) -> bool:
        """Read what has come; True once the answer is whole."""
        if conn.left < 0:
            data = conn.sock.recv(64 * KiB)
            if not data:
                raise ConnectionError(f"closed in the head ({len(conn.head)} bytes)")
            conn.head += data
            end = conn.head.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.head) > 64 * KiB:
                    raise RuntimeError("a head over 64 KiB")
                return False
            length = _content_length(conn.head[:end])
            if length != self.size:
                raise RuntimeError(f"Content-Length {length}, the file has {self.size} bytes")
            body = conn.head[end + 4 :]
            if len(body) > length:
                raise RuntimeError(f"{len(body) - length} bytes beyond the body")
            conn.left = length - len(body)
            self._got(conn, body)
        else:
            n = conn.sock.recv_into(self.buf, min(len(self.buf), conn.left))
            if not n:
                raise ConnectionError(f"short body: {conn.left} bytes missing")
            conn.left -= n
            self._got(conn, self.buf[:n])
        return conn.left == 0

    def _got(self, conn: _Conn, data: bytes | memoryview) -> None:
        self.count["bytes"] += len(data)
        if conn.digest is not None:
            conn.digest.update(data)

    def _time_out(self, now: float) -> None:
        for key in list(self.sel.get_map().values()):
            conn = key.data
            if self.request_timeout is not None and now - conn.sent > self.request_timeout:
                self._fail(conn, "timeouts", f"no whole answer in {self.request_timeout} s", now)
            elif now - conn.last > self.idle_timeout:
                self._fail(conn, "timeouts", f"no byte in {self.idle_timeout} s", now)

    def _fail(self, conn: _Conn, what: str, message: str, now: float) -> None:
        """Count a failed or timed-out request; replace its connection."""
        self.count[what] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(message)
        self.sel.unregister(conn.sock)
        conn.sock.close()
        try:
            self._ask(self._connect(), now)
        except OSError as exc:  # counted once already: the replacement is gone too
            self.first_errors.append(f"no new connection: {exc}")


def load(duration: float, **kw: Any) -> dict[str, Any]:
    """The load process's request: a :class:`LoadClient` run for *duration* seconds."""
    return LoadClient(**kw).run(duration)


def probe(
    port: int, path: str, interval: float, duration: float, size: int, sha256: str | None
) -> dict[str, Any]:
    """GET *path* every *interval* seconds on one keep-alive connection; each latency.

    The requests keep to a schedule; one answered late is followed at once
    by the next (no burst to catch up).  A failed request is counted, and
    the connection replaced.
    """
    buf = memoryview(bytearray(max(size, 64 * KiB)))
    latencies: list[float] = []
    errors, first_errors = 0, []
    client = bf.Client(port, buf)
    t0 = perf_counter()
    end = t0 + duration
    due = t0
    try:
        while (now := perf_counter()) < end:
            if now < due:
                time.sleep(due - now)
            digest = hashlib.sha256() if sha256 else None
            start = perf_counter()
            try:
                got = client.get(path, digest)
                if got != size or (digest is not None and digest.hexdigest() != sha256):
                    raise RuntimeError(f"a different body ({got} bytes)")
            except (OSError, RuntimeError, ValueError) as exc:
                errors += 1
                if len(first_errors) < 5:
                    first_errors.append(f"{type(exc).__name__}: {exc}")
                client.close()
                client = bf.Client(port, buf)
                continue
            finished = perf_counter()
            latencies.append(finished - start)
            due = max(due + interval, finished)
    finally:
        client.close()
    return {
        "requests": len(latencies),
        "errors": errors,
        "first_errors": first_errors,
        "latency_ms": _percentiles(latencies),
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and max in ms (nearest rank); NaN for none."""
    if not seconds:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    v = sorted(seconds)

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p * len(v)) - 1)] * 1000

    return {"p50": rank(0.50), "p99": rank(0.99), "max": v[-1] * 1000}


def _role(name: str) -> None:
    """A client process: answers the controller's requests until its stdin closes."""
    c.raise_nofile()  # 256 connections and more
    c.serve_peer(lambda kw: load(**kw) if name == "load" else probe(**kw))


# --- the controller -------------------------------------------------------------


def _list(s: str) -> list[int]:
    try:
        values = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {s!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"need integers >= 0 (0: the probe alone): {s!r}")
    return values


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = c.base_parser(__doc__.splitlines()[0], 100 * MiB)
    p.add_argument("--role", choices=("load", "probe"), help=argparse.SUPPRESS)
    p.add_argument(
        "--mode",
        choices=("all", "load", "keepalive"),
        default="all",
        help="load: bulk downloads and the probe; keepalive: --clients fetching "
        "--keepalive-size; all: both (default)",
    )
    p.add_argument(
        "--concurrency",
        type=_list,
        default=[4, 32],
        help="concurrent bulk downloads, a comma-separated list (default 4,32)",
    )
    p.add_argument("--duration", type=float, default=4.0, help="seconds per run (default 4)")
    p.add_argument("--small", type=size_arg, default=4 * KiB, help="the probe's file (default 4K)")
    p.add_argument(
        "--interval",
        type=float,
        default=0.005,
        help="seconds between the probe's requests (default 0.005)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=256,
        help="keep-alive clients of the keepalive mode (default 256)",
    )
    p.add_argument(
        "--keepalive-size",
        type=size_arg,
        default=MiB,
        help="the file the keep-alive clients fetch (default 1M)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=2.0,
        help="keepalive mode: a request not answered whole in this many seconds "
        "is a timeout (default 2)",
    )
    p.add_argument(
        "--nginx",
        default=c.nginx_binary() or "",
        help="the nginx binary, or 'none' (default: nginx on PATH or /usr/sbin/nginx)",
    )
    args = p.parse_args(argv)
    if args.role:
        return args
    if args.repeat <= 0:
        p.error("--repeat must be > 0")
    if args.duration <= 0 or args.interval <= 0 or args.request_timeout <= 0:
        p.error("--duration, --interval and --request-timeout must be > 0")
    if args.clients <= 0:
        p.error("--clients must be > 0")
    if args.only:
        unknown = [n for n in args.only if n not in NAMES]
        if unknown:
            p.error(f"--only: unknown variant(s) {unknown}; choose from {NAMES}")
    args.verify = args.quick
    if args.quick:
        # Tiny files, 1 measured round of short runs, every body checked.
        args.size = min(args.size, 4 * MiB)
        args.keepalive_size = min(args.keepalive_size, 64 * KiB)
        args.repeat = 1
        args.duration = min(args.duration, 0.2)
        args.clients = min(args.clients, 32)
    return args


@dataclass
class Files:
    """The served directory and each file's size and sha256 (hex)."""

    directory: str
    sizes: dict[str, int]
    sha256: dict[str, str]

    @classmethod
    def make(cls, directory: str, sizes: dict[str, int]) -> Files:
        digests = {}
        for name, size in sizes.items():
            path = os.path.join(directory, name)
            c.fill_file(path, size)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(MiB):
                    digest.update(chunk)
            digests[name] = digest.hexdigest()
        return cls(directory, sizes, digests)


def _check(server: c.Server, variant: Variant, files: Files) -> str | None:
    """The server serves every file's bytes (and on its loop); return that loop's class."""
    buf = memoryview(bytearray(MiB))
    client = bf.Client(server.port, buf)
    try:
        for name in files.sizes:
            digest = hashlib.sha256()
            client.get("/" + name, digest)
            if digest.hexdigest() != files.sha256[name]:
                raise AssertionError(f"{server.name} served different bytes for {name}")
        loop = client.text(bf.LOOP_PATH) if variant.loop else None
    finally:
        client.close()
    # A subclass of a loop names its base: zerocopy.loops.UVLoop(uvloop.Loop).
    if variant.loop and (variant.loop == "uvloop") != ("uvloop." in loop):
        raise AssertionError(f"{server.name} runs on {loop}, not {variant.loop}")
    return loop


def open_fds(root: int) -> int:
    """Open descriptors of *root* and its descendants (nginx's worker, granian's)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def _settled_fds(root: int, at_most: int, wait: float = 5.0) -> int:
    """*root*'s open descriptors once back to *at_most*, or after *wait* seconds."""
    deadline = perf_counter() + wait
    while (n := open_fds(root)) > at_most and perf_counter() < deadline:
        time.sleep(0.05)
    return n


class Bench:
    """The two client processes (bulk load, probe), and one run of each kind against a server."""

    def __init__(self, args: argparse.Namespace, files: Files) -> None:
        self.args = args
        self.files = files
        self.loader = c.Peer(ME, "load")
        try:
            self.prober = c.Peer(ME, "probe")
        except BaseException:
            self.loader.stop()
            raise

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        for peer in (self.loader, self.prober):
            peer.stop()

    def _load_request(self, server: c.Server, name: str, conns: int) -> dict[str, Any]:
        a = self.args
        return {
            "port": server.port,
            "path": "/" + name,
            "conns": conns,
            "duration": a.duration,
            "size": self.files.sizes[name],
            "sha256": self.files.sha256[name] if a.verify else None,
            "request_timeout": a.request_timeout if name == KEEP else None,
            "idle_timeout": 30.0,
        }

    def load_run(self, server: c.Server, conns: int) -> Sample:
        """N bulk downloads of the big file, the probe beside them; server CPU around both."""
        a = self.args
        cpu0 = server.cpu()
        self.loader.send(self._load_request(server, BIG, conns))
        self.prober.send(
            {
                "port": server.port,
                "path": "/" + SMALL,
                "interval": a.interval,
                "duration": a.duration,
                "size": self.files.sizes[SMALL],
                "sha256": self.files.sha256[SMALL] if a.verify else None,
            }
        )
        bulk = self.loader.receive()
        pr = self.prober.receive()
        cpu = server.cpu().minus(cpu0)
        info = {
            "p50_ms": pr["latency_ms"]["p50"],
            "p99_ms": pr["latency_ms"]["p99"],
            "max_ms": pr["latency_ms"]["max"],
            "probe_requests": pr["requests"],
            "probe_errors": pr["errors"],
            "bulk_requests": bulk["requests"],
            "errors": bulk["errors"],
            "timeouts": bulk["timeouts"],
            "bad_bodies": bulk["bad_bodies"],
            "first_errors": bulk["first_errors"] + pr["first_errors"],
            "client_cpu_s_per_gib": bulk["client_cpu_s"] / max(bulk["bytes"] / GiB, 1e-9),
        }
        return Sample(bulk["seconds"], cpu.user, cpu.sys, bulk["bytes"], info)

    def keepalive_run(self, server: c.Server) -> Sample:
        """--clients keep-alive connections fetching the keep-alive file; server CPU around it."""
        cpu0 = server.cpu()
        r = self.loader.ask(self._load_request(server, KEEP, self.args.clients))
        cpu = server.cpu().minus(cpu0)
        info = {
            "requests_s": r["requests"] / r["seconds"],
            "requests": r["requests"],
            "p50_ms": r["latency_ms"]["p50"],
            "p99_ms": r["latency_ms"]["p99"],
            "errors": r["errors"],
            "timeouts": r["timeouts"],
            "bad_bodies": r["bad_bodies"],
            "first_errors": r["first_errors"],
            "client_cpu_s_per_gib": r["client_cpu_s"] / max(r["bytes"] / GiB, 1e-9),
        }
        return Sample(r["seconds"], cpu.user, cpu.sys, r["bytes"], info)


def _on_round(label: str, samples: dict[str, Sample]) -> None:
    parts = []
    for name, s in samples.items():
        extra = (
            f" p99 {s.info['p99_ms']:.1f} ms"
            if "probe_requests" in s.info
            else f" {s.info['requests_s']:.0f} req/s"
        )
        parts.append(f"{name} {s.nbytes / GiB / s.seconds:.2f} GiB/s{extra}")
    print(f"  {label}: " + ", ".join(parts), file=sys.stderr, flush=True)


# --- summaries, tables, targets ----------------------------------------------------


def _gib_s(s: Sample) -> float:
    return s.nbytes / GiB / s.seconds


def _cpu_per_gib(s: Sample) -> float:
    return (s.user + s.sys) / (s.nbytes / GiB) if s.nbytes else math.nan


def _summary(samples: list[Sample], keys: Sequence[str]) -> dict[str, Any]:
    out = {
        "gib_s": spread([_gib_s(s) for s in samples]),
        "cpu_s_per_gib": spread([_cpu_per_gib(s) for s in samples]),
    }
    for key in keys:
        out[key] = spread([s.info[key] for s in samples])
    for key in ("errors", "timeouts", "bad_bodies", "probe_errors"):
        if key in samples[0].info:
            out[key] = sum(s.info[key] for s in samples)
    return out


def _mm(d: dict[str, float], fmt: str = ".2f") -> tuple[str, str]:
    """A spread's median, and its min-max."""
    return f"{d['median']:{fmt}}", f"{d['min']:{fmt}}-{d['max']:{fmt}}"


def _load_table(summaries: dict[str, dict[str, Any]], notes: dict[str, str]) -> str:
    headers = [
        "variant",
        "GiB/s",
        "min-max",
        "x nginx",
        "4K p50 ms",
        "min-max",
        "4K p99 ms",
        "min-max",
        "CPU s/GiB",
        "client s/GiB",
        "notes",
    ]
    ref = summaries.get(REFERENCE)
    rows = []
    for name, s in summaries.items():
        base = ref["gib_s"]["median"] if ref else 0  # 0: the probe alone, nothing to compare
        x = f"{s['gib_s']['median'] / base:.2f}" if base else "-"
        rows.append(
            [
                name,
                *_mm(s["gib_s"]),
                x,
                *_mm(s["p50_ms"]),
                *_mm(s["p99_ms"]),
                f"{s['cpu_s_per_gib']['median']:.3f}",
                f"{s['client_cpu_s_per_gib']['median']:.3f}",
                notes[name],
            ]
        )
    return c.table(headers, rows)


def _keepalive_table(
    summaries: dict[str, dict[str, Any]], fds: dict[str, tuple[int, int]], notes: dict[str, str]
) -> str:
    headers = [
        "variant",
        "req/s",
        "min-max",
        "GiB/s",
        "x nginx",
        "p99 ms",
        "CPU s/GiB",
        "errors",
        "timeouts",
        "fds before-after",
        "notes",
    ]
    ref = summaries.get(REFERENCE)
    rows = []
    for name, s in summaries.items():
        base = ref["gib_s"]["median"] if ref else 0  # 0: the probe alone, nothing to compare
        x = f"{s['gib_s']['median'] / base:.2f}" if base else "-"
        rows.append(
            [
                name,
                *_mm(s["requests_s"], ".0f"),
                f"{s['gib_s']['median']:.2f}",
                x,
                f"{s['p99_ms']['median']:.1f}",
                f"{s['cpu_s_per_gib']['median']:.3f}",
                str(s["errors"]),
                str(s["timeouts"]),
                f"{fds[name][0]}-{fds[name][1]}",
                notes[name],
            ]
        )
    return c.table(headers, rows)


def _targets(load: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Issue 22's targets, on the medians of each concurrency's rounds."""
    checks = []
    for conns, summaries in load.items():
        if not conns:
            continue  # the probe alone: a floor to read the others by, no target
        ref = summaries.get(REFERENCE)
        for name, stock in STOCK.items():
            if name not in summaries:
                continue
            s = summaries[name]
            p99 = s["p99_ms"]["median"]
            if ref:
                ref_p99 = ref["p99_ms"]["median"]
                limit = max(1.5 * ref_p99, ref_p99 + 2.0)
                checks.append(
                    _verdict(
                        f"{name}, {conns} downloads: 4K p99 <= max(1.5x, +2 ms) nginx's "
                        f"({limit:.2f} ms)",
                        p99,
                        p99 <= limit,
                    )
                )
                floor = 0.9 * ref["gib_s"]["median"]
                gib = s["gib_s"]["median"]
                checks.append(
                    _verdict(
                        f"{name}, {conns} downloads: bulk GiB/s >= 0.9x nginx's ({floor:.2f})",
                        gib,
                        gib >= floor,
                    )
                )
            if stock in summaries:
                stock_p99 = summaries[stock]["p99_ms"]["median"]
                checks.append(
                    _verdict(
                        f"{name}, {conns} downloads: 4K p99 <= {stock}'s ({stock_p99:.2f} ms)",
                        p99,
                        p99 <= stock_p99,
                    )
                )
    return checks


def _verdict(target: str, value: float, ok: bool) -> dict[str, Any]:
    return {
        "target": target,
        "value": round(value, 3),
        "paired": None,
        "verdict": "PASS" if ok else "MISS",
    }


def _print_issue_figures() -> None:
    print("\nissue 22's figures (old main, 4 concurrent downloads): GiB/s, 4K p50, p99 ms")
    for name, gib_s, p50, p99 in ISSUE_FIGURES:
        print(f"  {name:<24} {gib_s:5.2f}  {p50:5.2f}  {p99:6.2f}")


def _notes(summary: dict[str, Any], base: str) -> str:
    """A row's notes: the variant's, then anything that went wrong."""
    parts = [base] if base else []
    for key in ("errors", "timeouts", "bad_bodies", "probe_errors"):
        if summary.get(key):
            parts.append(f"{key.replace('_', ' ')} {summary[key]}")
    return "; ".join(parts)


# --- main ------------------------------------------------------------------------


@dataclass
class Results:
    """What a whole run measured, and what its servers logged."""

    info: dict[str, Any]
    load: dict[int, dict[str, list[Sample]]] = field(default_factory=dict)
    keep: dict[str, list[Sample]] = field(default_factory=dict)
    fds: dict[str, tuple[int, int]] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)


def _rounds(args: argparse.Namespace, bench: Bench, servers: list[c.Server], r: Results) -> None:
    """Every mode's alternating rounds, into *r*."""
    if args.mode in ("all", "load"):
        for conns in args.concurrency:
            print(f"{conns} downloads:", file=sys.stderr, flush=True)
            r.load[conns] = run_rounds(
                [(s.name, lambda s=s, n=conns: bench.load_run(s, n)) for s in servers],
                args.repeat,
                on_round=_on_round,
            )
    if args.mode in ("all", "keepalive"):
        before = {s.name: open_fds(s.pid) for s in servers}
        print(f"{args.clients} keep-alive clients:", file=sys.stderr, flush=True)
        r.keep = run_rounds(
            [(s.name, lambda s=s: bench.keepalive_run(s)) for s in servers],
            args.repeat,
            on_round=_on_round,
        )
        r.fds = {s.name: (before[s.name], _settled_fds(s.pid, before[s.name])) for s in servers}


def _measure(args: argparse.Namespace, wanted: list[Variant]) -> Results:
    """Make the files, start the servers and the clients, check them, run the rounds."""
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-serve-", dir=args.dir)
    os.chmod(workdir, 0o755)  # nginx's worker may run as another user
    servers: list[c.Server] = []
    try:
        sizes = {BIG: args.size, SMALL: args.small}
        if args.mode in ("all", "keepalive"):
            sizes[KEEP] = args.keepalive_size
        files = Files.make(workdir, sizes)
        servers = [v.server(args, c.free_port(), workdir) for v in wanted]
        r = Results(machine(workdir))
        with c.Deadline(args.timeout), contextlib.ExitStack() as stack:
            for server in servers:
                stack.enter_context(server)
            loops = {s.name: _check(s, v, files) for s, v in zip(servers, wanted, strict=True)}
            bench = stack.enter_context(Bench(args, files))
            # The servers and the client processes are ours but reaped only
            # at the end: the meter counts them as ours.
            pids = [s.pid for s in servers] + [bench.loader.pid, bench.prober.pid]
            with LoadMeter(pids) as meter:
                _rounds(args, bench, servers, r)
    except BaseException:
        for s in servers:
            if s.errors.strip():
                print(f"\n{s.name} logged:\n{s.errors[-2000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    r.info["load_during_run"] = meter.summary
    r.info["frameworks"] = bf.versions((*bf.FRAMEWORKS, "granian"))
    r.info["nginx"] = args.nginx if any(s.name == "nginx" for s in servers) else None
    r.info["server_loops"] = loops
    r.info["server_cpu"] = "process_tree_cpu of the server, from /proc (10 ms ticks), whole run"
    resets = {}
    for s, v in zip(servers, wanted, strict=True):
        if v.threaded_log:
            resets[s.name] = s.errors.count("Traceback (most recent call last):")
            continue
        resets[s.name], others = _tracebacks(s.errors)
        if others:
            r.tracebacks[s.name] = "\n".join(others)[-2000:]
    r.info["server_tracebacks"] = r.tracebacks
    r.info["client_reset_tracebacks"] = {n: k for n, k in resets.items() if k}
    return r


#: What a server may log when the load client closes its connections at the
#: end of a run, answers in flight or not: not a server's fault.
CLIENT_GONE = ("ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError")


def _tracebacks(log: str) -> tuple[int, list[str]]:
    """How many of *log*'s tracebacks end in a client gone (CLIENT_GONE); the others."""
    gone, others = 0, []
    for block in log.split("Traceback (most recent call last):")[1:]:
        # The exception line: the first one after the indented frames.
        lines = block.strip("\n").splitlines()
        error = next((x for x in lines if x and not x[0].isspace()), "")
        if error.startswith(CLIENT_GONE):
            gone += 1
        else:
            others.append("Traceback (most recent call last):" + block)
    return gone, others


def _problems(r: Results) -> list[str]:
    """Errors, timeouts, wrong bodies and leaked descriptors, one line each."""
    runs = [(f"{n}, {conns} downloads", x) for conns, res in r.load.items() for n, x in res.items()]
    runs += [(f"{n}, keep-alive", x) for n, x in r.keep.items()]
    problems = []
    for where, samples in runs:
        problems += [f"{where}: {e}" for s in samples for e in s.info["first_errors"]]
        if any(s.info["bad_bodies"] for s in samples):
            problems.append(f"{where}: a body differed from the file")
    for name, (before, after) in r.fds.items():
        if after > before:
            problems.append(f"{name}: {after - before} descriptors more after the keep-alive runs")
    return problems


def _report(args: argparse.Namespace, wanted: list[Variant], r: Results) -> int:
    """Print the machine, the tables and the targets; write the JSON file; the exit status."""
    print(
        f"\nservers under load: {human(args.size)} bulk file, {human(args.small)} probe file "
        f"every {args.interval * 1000:g} ms, {args.duration:g} s runs, median of {args.repeat} "
        "alternating rounds after 1 warm-up round (min-max over the rounds)\n"
    )
    print_machine(r.info)
    notes = {v.name: v.note for v in wanted}
    load = {
        conns: {
            n: _summary(x, ("p50_ms", "p99_ms", "client_cpu_s_per_gib")) for n, x in res.items()
        }
        for conns, res in r.load.items()
    }
    for conns, summaries in load.items():
        print(
            f"\n{conns} concurrent {human(args.size)} downloads (a client process) and a "
            f"{human(args.small)} GET every {args.interval * 1000:g} ms (another); "
            "CPU: the server's; client: the bulk client process's\n"
        )
        print(_load_table(summaries, {n: _notes(s, notes[n]) for n, s in summaries.items()}))
    keep = {
        n: _summary(x, ("requests_s", "p50_ms", "p99_ms", "client_cpu_s_per_gib"))
        for n, x in r.keep.items()
    }
    if keep:
        print(
            f"\n{args.clients} keep-alive clients (one process) fetching a "
            f"{human(args.keepalive_size)} file; timeout: no whole answer in "
            f"{args.request_timeout:g} s; CPU: the server's\n"
        )
        print(_keepalive_table(keep, r.fds, {n: _notes(s, notes[n]) for n, s in keep.items()}))
    checks = _targets(load)
    c.print_targets(checks)
    _print_issue_figures()
    problems = _problems(r)
    c.write_json(
        args.json,
        {
            "benchmark": "bench_serve",
            "command": [sys.executable, *sys.argv],
            "args": vars(args),
            "machine": r.info,
            "reference": REFERENCE,
            "load": {
                str(conns): {
                    n: {"summary": load[conns][n], "samples": [vars(x) for x in samples]}
                    for n, samples in res.items()
                }
                for conns, res in r.load.items()
            },
            "keepalive": {
                n: {
                    "summary": keep[n],
                    "fds": list(r.fds[n]),
                    "samples": [vars(x) for x in samples],
                }
                for n, samples in r.keep.items()
            },
            "targets": checks,
            "problems": problems,
        },
    )
    for name, n in r.info["client_reset_tracebacks"].items():
        print(
            f"note: {name} logged {n} traceback(s) of clients gone (reset, broken pipe; a "
            "threaded server's are counted, not read): the load client closes its "
            "connections at the end of each run, answers in flight or not"
        )
    for line in r.info["skipped"]:
        print(line)
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    for name, text in r.tracebacks.items():
        print(f"\n{name} logged a traceback:\n{text}", file=sys.stderr)
    return 1 if problems or r.tracebacks else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.role:
        _role(args.role)
        return 0
    wanted = [v for v in VARIANTS if not args.only or v.name in args.only]
    if args.only:
        wanted.sort(key=lambda v: args.only.index(v.name))
    reasons = {v.name: v.why_not(args) for v in wanted}
    skipped = [why for why in reasons.values() if why]
    for line in skipped:
        print(line, flush=True)
    wanted = [v for v in wanted if reasons[v.name] is None]
    if not wanted:
        raise SystemExit("no variant can run here")
    r = _measure(args, wanted)
    r.info["skipped"] = skipped
    return _report(args, wanted, r)


if __name__ == "__main__":
    sys.exit(main())

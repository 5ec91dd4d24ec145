#!/usr/bin/env python3
"""Python web servers serving a file: stock uvicorn and aiohttp against zerocopy's integrations.

One file (100 MiB by default) served over HTTP/1.1 on 127.0.0.1 by:

1. ``uvicorn``: Starlette's ``FileResponse`` under stock uvicorn
   (``--http httptools --loop asyncio``), the baseline for 2;
2. ``uvicorn+zerocopy``: the same app under ``--http
   zerocopy.uvicorn:HttpToolsProtocol``;
3. ``aiohttp asyncio``: aiohttp's ``web.FileResponse`` on asyncio's loop
   (aiohttp's own ``loop.sendfile`` path);
4. ``aiohttp uvloop``: the same on uvloop (no ``sock_sendfile`` there: chunks),
   the baseline for 5;
5. ``aiohttp uvloop+zerocopy``: ``zerocopy.aiohttp.FileResponse`` on uvloop;
6. ``aiohttp zerocopy-uvloop``: stock ``web.FileResponse`` on
   ``zerocopy.loops.new_uvloop()`` (issue 24: the loop's ``sendfile`` is
   zerocopy's, no aiohttp class changed);
7. ``nginx``: the reference for 2 (``kit.peer.nginx_server``: one worker,
   ``sendfile on``, access log off; ``--nginx``, default nginx on PATH or
   /usr/sbin/nginx).

A variant whose zerocopy module does not import, or falls back to its
framework's stock class (an ``IntegrationFallbackWarning`` at import), is left
out with a "skipped: ..." line naming the reason; one whose framework is not installed
likewise (``pip install 'zerocopy-io[bench]'`` installs them all); nginx
likewise where there is no nginx binary (or ``--nginx none``).

Each server is its own process, started once and stopped at the end.  A run
is one keep-alive connection from this process sending ``--requests`` GETs (10
by default) one after the other, each body read with ``recv_into`` into one
reused 1 MiB buffer after the status line and headers are parsed (the body's
length from ``Content-Length``).  Rounds alternate the servers after a warm-up
round.  Server CPU is the toolkit's ``process_tree_cpu`` of the server
process (nginx's worker included), read from ``/proc/<pid>/stat`` around
each run (10 ms ticks); the client's CPU is in the notes column, and the two
added up in the "server+client CPU s/GiB" column (on loopback the receiving
side's kernel work runs on either side's CPU, so a comparison of servers
counts both).  Every server's body is checked against the file's sha256
before the rounds (with ``--quick``: every body).

Targets (issue 15): ``uvicorn+zerocopy`` >= 5x the throughput of ``uvicorn``
at <= 0.2x its server CPU per GiB; ``aiohttp uvloop+zerocopy`` >= 2.5x
``aiohttp uvloop`` at <= 0.35x.  Target (issue 24): ``aiohttp zerocopy-uvloop``
within 10% of ``aiohttp asyncio`` (aiohttp's own sendfile path): >= 0.9x its
throughput at <= 1.1x its server CPU per GiB.  Target (issue 22): ``uvicorn+zerocopy`` >=
0.95x the throughput of ``nginx`` at <= 1.1x its server+client CPU per GiB.

    python benchmarks/bench_frameworks.py [--size 100M] [--requests 10] [--repeat 5] [--json FILE]
    python benchmarks/bench_frameworks.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from kit import common as c
from kit.toolkit import (
    GiB,
    LoadMeter,
    MiB,
    Sample,
    human,
    machine,
    print_round,
    process_cpu,
    run_rounds,
)

PATH = "/file.bin"
LOOP_PATH = "/loop"  # answers the server's event loop class, to prove the variant's loop
DIR_ENV = "ZEROCOPY_BENCH_DIR"  # the served directory, for the app factory (uvicorn, granian)
IO_TIMEOUT = 60.0  # seconds the client waits on one recv before it gives up

#: What issue 15 measured on this machine (main at f730a43, 10 requests per
#: round), printed beside the figures: (variant, GiB/s, server CPU s/GiB).
ISSUE_FIGURES = [
    ("uvicorn", 0.30, 3.4),
    ("aiohttp asyncio", 3.46, 0.27),
    ("aiohttp uvloop", 0.97, 1.09),
]
#: What issue 22 measured (quiet machine): uvicorn+zerocopy against nginx,
#: (throughput, server+client CPU per GiB).
ISSUE_22_FIGURES = (0.83, 1.20)
NGINX = "nginx"
#: A sample's server CPU plus the client's, per GiB (its ``info`` key).
BOTH_CPU = "server_client_cpu_s_per_gib"


def both_cpu_ratio(results: dict[str, list[Sample]], name: str, base: str) -> float:
    """*name*'s median server+client CPU per GiB over *base*'s."""
    a, b = (statistics.median(x.info[BOTH_CPU] for x in results[n]) for n in (name, base))
    return a / b if b else float("nan")


class BothCpuTarget(c.Target):
    """``candidate``'s server+client CPU per GiB (medians) at most *threshold* x ``baseline``'s.

    On loopback part of the receiving side's kernel work (softirq) runs on
    the sender's CPU, charged to whichever task is running there: between a
    server and its client it may land on either, so the two are counted
    together.  Its ``metric`` is only the label.
    """

    def check(self, results: dict[str, list[Sample]]) -> dict[str, Any]:
        value = both_cpu_ratio(results, self.candidate, self.baseline)
        return {
            "target": f"{self.candidate} {self.metric} <= {self.threshold}x {self.baseline}",
            "value": round(value, 3),
            "paired": None,
            "verdict": "PASS" if value <= self.threshold else "MISS",
        }


TARGETS = [
    c.Target("uvicorn+zerocopy", "uvicorn", "throughput", 5.0),
    c.Target("uvicorn+zerocopy", "uvicorn", "cpu", 0.2),
    c.Target("aiohttp uvloop+zerocopy", "aiohttp uvloop", "throughput", 2.5),
    c.Target("aiohttp uvloop+zerocopy", "aiohttp uvloop", "cpu", 0.35),
    # Issue 24: the loop factory level with aiohttp's own sendfile on asyncio.
    c.Target("aiohttp zerocopy-uvloop", "aiohttp asyncio", "throughput", 0.9),
    c.Target("aiohttp zerocopy-uvloop", "aiohttp asyncio", "cpu", 1.1),
    # Issue 22: both at once.
    c.Target("uvicorn+zerocopy", NGINX, "throughput", 0.95),
    BothCpuTarget("uvicorn+zerocopy", NGINX, "server+client CPU", 1.1),
]


# --- the servers' applications (run in the server processes) ------------------------


def starlette_app(stat_on_loop: bool = False, zerocopy_response: bool = False) -> Any:
    """The ASGI servers' ``--factory``: a Starlette app, ``/NAME``: FileResponse of
    $ZEROCOPY_BENCH_DIR/NAME (bench_serve.py serves more than one file).

    Starlette's ``FileResponse(path)`` stats the file in a worker thread
    (``anyio.to_thread``); with *stat_on_loop* the app stats it on the loop
    and passes ``stat_result``, as an app serving local files can; with
    *zerocopy_response* the app uses :class:`zerocopy.starlette.FileResponse`,
    which stats local files on the loop after their first request.
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if zerocopy_response:
        from zerocopy.starlette import FileResponse
    else:
        from starlette.responses import FileResponse

    directory = os.environ[DIR_ENV]

    async def file(request: Any) -> FileResponse:
        # The router's "/{name}" matches no "/": a name in the directory.
        path = os.path.join(directory, request.path_params["name"])
        if stat_on_loop:
            return FileResponse(path, stat_result=os.stat(path))
        return FileResponse(path)

    async def loop(request: Any) -> PlainTextResponse:
        return PlainTextResponse(_loop_name())

    return Starlette(routes=[Route(LOOP_PATH, loop), Route("/{name}", file)])


def starlette_app_stat_on_loop() -> Any:
    """:func:`starlette_app`, stat on the loop (``--factory`` takes no arguments)."""
    return starlette_app(stat_on_loop=True)


def starlette_app_zerocopy_response() -> Any:
    """:func:`starlette_app` with ``zerocopy.starlette.FileResponse``."""
    return starlette_app(zerocopy_response=True)


def _loop_name() -> str:
    """The running loop's class; a subclass from elsewhere (zerocopy.loops) names its base too."""
    cls = type(asyncio.get_running_loop())
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not cls.__module__.startswith(("asyncio", "uvloop")):
        base = next(b for b in cls.__mro__ if b.__module__.startswith(("asyncio", "uvloop")))
        name += f"({base.__module__}.{base.__qualname__})"
    return name


def role_aiohttp(loop: str, impl: str, port: int, directory: str) -> None:
    """Serve *directory*'s files (``/NAME``) with aiohttp on *loop* (asyncio, uvloop,
    zerocopy-uvloop); *impl*: stock or zerocopy."""
    from aiohttp import web

    if impl == "zerocopy":
        from zerocopy.aiohttp import FileResponse
    else:
        FileResponse = web.FileResponse

    async def file(request: web.Request) -> web.StreamResponse:
        # The router's "/{name}" matches no "/": a name in the directory.
        return FileResponse(os.path.join(directory, request.match_info["name"]))

    async def loop_name(request: web.Request) -> web.StreamResponse:
        return web.Response(text=_loop_name())

    async def serve() -> None:
        app = web.Application()
        app.router.add_get(LOOP_PATH, loop_name)
        app.router.add_get("/{name}", file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()  # until the benchmark's SIGTERM

    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop == "zerocopy-uvloop":
        import zerocopy.loops

        factory = zerocopy.loops.new_uvloop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve())


# --- which variants run -----------------------------------------------------------------


@dataclass
class Variant:
    name: str
    loop: str | None  # the event loop it must run on: "asyncio" or "uvloop"; None: nginx
    needs: tuple[str, ...]  # third-party modules the server imports
    zerocopy: str | None  # the zerocopy module (and name) it needs, "module:name"
    # (port, directory) -> the server's command line; None: nginx (kit.peer.nginx_server)
    argv: Callable[[int, str], list[str]] | None


def uvicorn_argv(http: str, app: str = "starlette_app") -> Callable[[int, str], list[str]]:
    """uvicorn serving *app* (its directory in $ZEROCOPY_BENCH_DIR) with *http*."""
    here = os.path.dirname(os.path.abspath(__file__))
    return lambda port, directory: [
        *(sys.executable, "-m", "uvicorn", "--factory", "--app-dir", here),
        *(f"bench_frameworks:{app}", "--http", http, "--loop", "asyncio"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
        *("--log-level", "warning", "--lifespan", "off", "--ws", "none"),
    ]


def aiohttp_argv(loop: str, impl: str) -> Callable[[int, str], list[str]]:
    """This script's ``--role``: aiohttp on *loop*, *impl* "stock" or "zerocopy"."""
    me = os.path.abspath(__file__)
    return lambda port, directory: [sys.executable, me, "--role", loop, impl, str(port), directory]


VARIANTS = [
    Variant(
        "uvicorn", "asyncio", ("uvicorn", "httptools", "starlette"), None, uvicorn_argv("httptools")
    ),
    Variant(
        "uvicorn+zerocopy",
        "asyncio",
        ("uvicorn", "httptools", "starlette"),
        "zerocopy.uvicorn:HttpToolsProtocol",
        uvicorn_argv("zerocopy.uvicorn:HttpToolsProtocol"),
    ),
    Variant("aiohttp asyncio", "asyncio", ("aiohttp",), None, aiohttp_argv("asyncio", "stock")),
    Variant(
        "aiohttp uvloop", "uvloop", ("aiohttp", "uvloop"), None, aiohttp_argv("uvloop", "stock")
    ),
    Variant(
        "aiohttp uvloop+zerocopy",
        "uvloop",
        ("aiohttp", "uvloop"),
        "zerocopy.aiohttp:FileResponse",
        aiohttp_argv("uvloop", "zerocopy"),
    ),
    Variant(
        "aiohttp zerocopy-uvloop",
        "uvloop",
        ("aiohttp", "uvloop"),
        "zerocopy.loops:new_uvloop",
        aiohttp_argv("zerocopy-uvloop", "stock"),
    ),
    Variant(NGINX, None, (), None, None),
]


def why_not(variant: Variant, nginx: str = "") -> str | None:
    """Why *variant* cannot run here (a "skipped: ..." line), or None if it can.

    *nginx*: the nginx binary (``--nginx``), for the nginx variant.
    """
    if variant.argv is None:
        if not nginx or nginx == "none":
            return "skipped: nginx: no nginx binary (apt-get install nginx-light) or --nginx none"
        return None
    missing = [m for m in variant.needs if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"skipped: {variant.name}: {', '.join(missing)} not installed "
            "(pip install 'zerocopy-io[bench]')"
        )
    if variant.zerocopy:
        import zerocopy

        # A tree from before the warning (compare_trees.py) refused instead.
        fallback = getattr(zerocopy, "IntegrationFallbackWarning", RuntimeWarning)
        module, _, name = variant.zerocopy.partition(":")
        try:
            # An integration checks its framework's hooks at import; where one
            # is missing it serves as the stock class (IntegrationFallbackWarning,
            # made an error here), which this variant must not pass off as its own.
            with warnings.catch_warnings():
                warnings.simplefilter("error", fallback)
                getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, RuntimeError, fallback) as exc:
            return f"skipped: {module} not available ({type(exc).__name__}: {exc})"
    return None


# --- the client -------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection; each body goes into one reused buffer."""

    def __init__(self, port: int, buf: memoryview) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = buf

    def close(self) -> None:
        self.sock.close()

    def _head(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and the body bytes that came with them."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(8192)
            if not chunk:
                raise ConnectionError(f"connection closed in the headers: {data[:200]!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, status = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not status[:3].isdigit():
            raise RuntimeError(f"not an HTTP/1.x answer: {status_line!r}")
        headers = {}
        for line in lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(status[:3]), headers, rest

    def get(self, path: str, digest: Any = None) -> int:
        """GET *path*; return the body's length (RuntimeError unless a full 200 answer)."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, headers, body = self._head()
        if status != 200:
            raise RuntimeError(f"status {status}: {headers}")
        if "content-length" not in headers:
            raise RuntimeError(f"no Content-Length (the client reads no chunks): {headers}")
        length = int(headers["content-length"])
        if len(body) > length:
            raise RuntimeError(f"{len(body) - length} bytes beyond the body")
        if digest is not None:
            digest.update(body)
        got = len(body)
        buf = self.buf
        while got < length:
            n = self.sock.recv_into(buf, min(len(buf), length - got))
            if not n:
                raise ConnectionError(f"short body: {got} of {length} bytes")
            if digest is not None:
                digest.update(buf[:n])
            got += n
        return got

    def text(self, path: str) -> str:
        """GET *path* and return its (short) body as text."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, headers, body = self._head()
        length = int(headers.get("content-length", -1))
        if status != 200 or length < 0:
            raise RuntimeError(f"status {status}: {headers}")
        while len(body) < length:
            chunk = self.sock.recv(length - len(body))
            if not chunk:
                raise ConnectionError(f"short body: {len(body)} of {length} bytes")
            body += chunk
        return body.decode()


# --- the controller -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = c.base_parser(__doc__.splitlines()[0], 100 * MiB)
    p.add_argument(
        "--requests", type=int, default=10, help="GETs per run on one connection (default 10)"
    )
    p.add_argument(
        "--nginx",
        default=c.nginx_binary() or "",
        help="the nginx binary, or 'none' (default: nginx on PATH or /usr/sbin/nginx)",
    )
    p.add_argument("--role", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.requests <= 0:
        p.error("--requests must be > 0")
    if args.repeat <= 0:
        p.error("--repeat must be > 0")
    if args.only:
        unknown = [n for n in args.only if n not in {v.name for v in VARIANTS}]
        if unknown:
            p.error(
                f"--only: unknown variant(s) {unknown}; choose from {[v.name for v in VARIANTS]}"
            )
    c.apply_quick(args)
    if args.quick:
        args.requests = min(args.requests, 3)
    return args


def _run_one(server: c.Server, args: argparse.Namespace, buf: memoryview, want: bytes) -> Sample:
    """One run: --requests GETs on one connection; server CPU around it."""
    cpu0 = server.cpu()
    client0 = process_cpu().total
    t0 = perf_counter()
    client = Client(server.port, buf)
    try:
        nbytes = 0
        for _ in range(args.requests):
            digest = hashlib.sha256() if args.verify else None
            nbytes += client.get(PATH, digest)
            if digest is not None and digest.digest() != want:
                raise AssertionError(f"{server.name} served different bytes")
    finally:
        client.close()
    seconds = perf_counter() - t0
    client_cpu = process_cpu().total - client0
    cpu = server.cpu().minus(cpu0)
    if nbytes != args.size * args.requests:
        raise AssertionError(f"{server.name}: {nbytes} bytes, expected {args.size * args.requests}")
    gib = nbytes / GiB
    info = {"client_cpu_s_per_gib": client_cpu / gib, BOTH_CPU: (cpu.total + client_cpu) / gib}
    return Sample(seconds, cpu.user, cpu.sys, nbytes, info)


def _check(server: c.Server, variant: Variant, buf: memoryview, want: bytes) -> str | None:
    """The server serves the file's bytes on the variant's loop; return that loop's class.

    None for nginx (no event loop class, no /loop route).
    """
    digest = hashlib.sha256()
    client = Client(server.port, buf)
    try:
        client.get(PATH, digest)
        loop = client.text(LOOP_PATH) if variant.loop else None
    finally:
        client.close()
    if digest.digest() != want:
        raise AssertionError(f"{server.name} served different bytes")
    if loop is not None and (variant.loop == "uvloop") != ("uvloop." in loop):
        raise AssertionError(f"{server.name} runs on {loop}, not {variant.loop}")
    return loop


def _measure(
    args: argparse.Namespace, variants: list[Variant], servers: list[c.Server], want: bytes
) -> tuple[dict[str, list[Sample]], dict[str, str | None], dict[str, float]]:
    """The rounds, each server's event loop class, and how busy the machine was."""
    buf = memoryview(bytearray(MiB))
    with c.Deadline(args.timeout), contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(server)
        loops = {s.name: _check(s, v, buf, want) for s, v in zip(servers, variants, strict=True)}
        # The servers are ours but reaped only at the end: the meter counts them as ours.
        with LoadMeter(pids=[s.pid for s in servers]) as load:
            results = run_rounds(
                [(s.name, lambda s=s: _run_one(s, args, buf, want)) for s in servers],
                args.repeat,
                on_round=print_round,
            )
    return results, loops, load.summary


FRAMEWORKS = ("uvicorn", "httptools", "starlette", "aiohttp", "uvloop")


def versions(names: Sequence[str] = FRAMEWORKS) -> dict[str, str]:
    """The installed versions of the frameworks compared (absent ones left out)."""
    out = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def nginx_version(binary: str) -> str:
    """What ``nginx -v`` says it is ("nginx/1.22.1"), for the JSON record."""
    proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    # "nginx version: nginx/1.22.1", on stderr
    return (proc.stderr or proc.stdout).strip().rpartition(" ")[2]


def _server(v: Variant, args: argparse.Namespace, workdir: str) -> c.Server:
    """The server of *v*, serving *workdir* on a free port (started by the caller)."""
    port = c.free_port()
    if v.argv is None:
        return c.nginx_server(args.nginx, workdir, port)
    env = dict(os.environ, **{DIR_ENV: workdir})
    return c.Server(v.name, v.argv(port, workdir), port, env=env)


def _sha256(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.digest()


#: Ratios printed under the table (whose ratios are against stock uvicorn):
#: the aiohttp variants against each other.
PAIRS = [
    ("aiohttp uvloop+zerocopy", "aiohttp uvloop"),  # the issue's baseline for 5
    ("aiohttp uvloop+zerocopy", "aiohttp asyncio"),  # "level with aiohttp's own sendfile"
    ("aiohttp uvloop", "aiohttp asyncio"),  # what uvloop costs aiohttp today
    ("aiohttp zerocopy-uvloop", "aiohttp asyncio"),  # issue 24: the loop factory
    ("aiohttp zerocopy-uvloop", "aiohttp uvloop+zerocopy"),  # the loop against the class
    ("uvicorn+zerocopy", NGINX),  # issue 22's comparison
]


def _print_pairs(results: dict[str, list[Sample]]) -> None:
    ran = [(a, b) for a, b in PAIRS if a in results and b in results]
    if ran:
        print("\nagainst each other:")
    for a, b in ran:
        r = c.compare(results, a, b)
        # nan: the baseline's server used no whole 10 ms tick (a --quick run)
        cpu = "n/a" if r["cpu"] != r["cpu"] else f"{r['cpu']:.2f}x"
        both = ""
        if b == NGINX:  # issue 22 counts the client's CPU too
            both = f", server+client CPU per GiB {both_cpu_ratio(results, a, b):.2f}x"
        print(
            f"  {a} / {b}: throughput {r['throughput']:.2f}x "
            f"(paired {r['paired_min']:.2f}-{r['paired_max']:.2f}), server CPU per GiB {cpu}"
            f"{both}"
        )


def _print_issue_figures() -> None:
    print("\nissue 15's figures on its machine (main at f730a43, 10 requests per round):")
    for name, gib_s, cpu in ISSUE_FIGURES:
        print(f"  {name:<16} {gib_s:.2f} GiB/s at {cpu:.2f} server CPU s/GiB")
    thr, both = ISSUE_22_FIGURES
    print(
        f"issue 22's (a quiet machine): uvicorn+zerocopy at {thr:.2f}x nginx's throughput, "
        f"{both:.2f}x its server+client CPU per GiB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.role:
        loop, impl, port, directory = args.role
        role_aiohttp(loop, impl, int(port), directory)
        return 0
    wanted = [v for v in VARIANTS if not args.only or v.name in args.only]
    if args.only:
        wanted.sort(key=lambda v: args.only.index(v.name))
    reasons = {v.name: why_not(v, args.nginx) for v in wanted}
    skipped = [why for why in reasons.values() if why]
    for line in skipped:
        print(line, flush=True)
    wanted = [v for v in wanted if reasons[v.name] is None]
    if not wanted:
        raise SystemExit("no variant can run here")

    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-frameworks-", dir=args.dir)
    servers: list[c.Server] = []
    try:
        src = os.path.join(workdir, "file.bin")
        c.fill_file(src, args.size)
        want = _sha256(src)
        servers = [_server(v, args, workdir) for v in wanted]
        info = machine(workdir)
        results, loops, load = _measure(args, wanted, servers, want)
    except BaseException:
        # The servers have stopped: what they logged is often why the run failed.
        for s in servers:
            if s.errors.strip():
                print(f"\n{s.name} logged:\n{s.errors[-2000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    # A traceback in a server's log means a run it served went wrong.
    errors = {s.name: s.errors[-2000:] for s in servers if "Traceback" in s.errors}
    info["load_during_run"] = load
    info["frameworks"] = versions()
    info["server_loops"] = loops
    ran_nginx = any(v.argv is None for v in wanted)
    info["nginx"] = f"{args.nginx} ({nginx_version(args.nginx)})" if ran_nginx else None
    info["server_errors"] = errors
    info["skipped"] = skipped
    info["requests_per_run"] = args.requests
    info["server_cpu"] = "the server process's, from /proc/<pid>/stat (10 ms ticks)"
    title = (
        f"HTTP/1.1 GET, {args.requests} requests of a {human(args.size)} file per run on one "
        "keep-alive connection (CPU columns: the server's)"
    )
    # publish() labels a run with args.size: here a run is every request.
    shown = argparse.Namespace(
        **{**vars(args), "file_size": args.size, "size": args.size * args.requests}
    )
    c.publish(
        title,
        shown,
        info,
        results,
        "uvicorn",
        TARGETS,
        notes=lambda s: f"client CPU {s['client_cpu_s_per_gib']:.3f} s/GiB",
        columns=[("server+client CPU s/GiB", lambda s: f"{s[BOTH_CPU]:.3f}")],
    )
    _print_pairs(results)
    _print_issue_figures()
    for line in skipped:
        print(line)
    for name, text in errors.items():
        print(f"\n{name} logged a traceback:\n{text}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

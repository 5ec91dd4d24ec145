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
Proxy CPU is the toolkit's ``process_cpu`` of the proxy process, read from
``/proc/<pid>/stat`` around each run (all of its threads; 10 ms ticks).  A
"direct" run (client to sink, no proxy) gives the ceiling.

``--concurrent N --duration S`` measures N connections at once for S seconds
each run: every client connection sends as fast as it can until the
deadline; the table gives the aggregate throughput and the proxy's CPU per
GiB, for zerocopy.relay (a thread per connection), a plain asyncio
StreamReader/StreamWriter relay, ``zerocopy.aio.relay`` (if the module is
there) and HAProxy.

HAProxy runs only if ``haproxy`` is on PATH (``apt-get install haproxy``),
twice, each with a temporary configuration bound to loopback: ``mode tcp``
with ``option splice-auto`` (the issue's baseline; its heuristics may never
splice a single stream) and with ``option splice-request`` and
``splice-response`` plus ``tune.pipesize 1048576`` (splicing from the first
byte through 1 MiB pipes, like zerocopy).

    python benchmarks/bench_relay.py [--size 1G] [--repeat 5] [--json FILE]
    python benchmarks/bench_relay.py --concurrent 32 --duration 20 [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
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

import _common as c

from zerocopy._bench.toolkit import (
    CpuTimes,
    GiB,
    KiB,
    LoadMeter,
    MiB,
    Sample,
    machine,
    print_round,
    process_cpu,
    run_rounds,
)

_ACK = struct.Struct("!Q16s")  # bytes received, blake2b-128 digest (zeros unless verifying)
_NO_DIGEST = bytes(16)


def _block(i: int, base: bytes) -> bytes:
    return struct.pack("<Q", i) + base[8:]


def _base_block() -> bytes:
    return random.Random(0).randbytes(MiB)


# --- the roles: each a separate process -----------------------------------------


def _exit_when_stdin_closes() -> None:
    """A peer never outlives the benchmark: exit when our stdin reaches EOF."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _listen() -> socket.socket:
    ls = socket.create_server(("127.0.0.1", 0), backlog=256)
    print(ls.getsockname()[1], flush=True)
    return ls


def _serve_threads(ls: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


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

    _exit_when_stdin_closes()
    _serve_threads(_listen(), handle)


def role_proxy_zerocopy(target: int) -> None:
    """zerocopy.relay in a thread per connection."""
    import zerocopy

    def handle(conn: socket.socket) -> None:
        with conn, socket.create_connection(("127.0.0.1", target)) as up:
            try:
                zerocopy.relay(conn, up)
            except OSError as exc:
                print(f"relay: {exc!r}", file=sys.stderr, flush=True)

    _exit_when_stdin_closes()
    _serve_threads(_listen(), handle)


def role_proxy_python(target: int) -> None:
    """recv_into a 1 MiB buffer and sendall, a thread per direction."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        buf = memoryview(bytearray(MiB))
        try:
            while n := src.recv_into(buf):
                dst.sendall(buf[:n])
            dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            print(f"pump: {exc!r}", file=sys.stderr, flush=True)

    def handle(conn: socket.socket) -> None:
        with conn, socket.create_connection(("127.0.0.1", target)) as up:
            back = threading.Thread(target=pump, args=(up, conn))
            back.start()
            pump(conn, up)
            back.join()

    _exit_when_stdin_closes()
    _serve_threads(_listen(), handle)


def role_proxy_asyncio(target: int) -> None:
    """A plain asyncio StreamReader/StreamWriter relay (64 KiB reads)."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(64 * KiB):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", target)
        try:
            await asyncio.gather(pump(cr, uw), pump(ur, cw))
        except OSError as exc:
            print(f"asyncio relay: {exc!r}", file=sys.stderr, flush=True)
        finally:
            for w in (cw, uw):
                w.close()

    async def main() -> None:
        ls = _listen()
        server = await asyncio.start_server(handle, sock=ls, backlog=256)
        async with server:
            await server.serve_forever()

    _exit_when_stdin_closes()
    asyncio.run(main())


def role_proxy_aio(target: int) -> None:
    """zerocopy.aio.relay on non-blocking sockets, one task per connection."""
    import zerocopy.aio

    async def handle(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
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

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ls = _listen()
        ls.setblocking(False)
        tasks = set()
        while True:
            conn, _ = await loop.sock_accept(ls)
            conn.setblocking(False)
            task = loop.create_task(handle(loop, conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    _exit_when_stdin_closes()
    asyncio.run(main())


def role_client() -> None:
    """Run the transfers the controller asks for on stdin; answer on stdout."""
    base = _base_block()
    plain = memoryview(base)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "one":
            port, size, verify = int(rest[0]), int(rest[1]), rest[2] == "1"
            print(_client_one(port, size, verify, base, plain), flush=True)
        elif cmd == "many":
            port, n, duration = int(rest[0]), int(rest[1]), float(rest[2])
            print(_client_many(port, n, duration, plain), flush=True)


def _recv_ack(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while len(data) < _ACK.size:
        chunk = sock.recv(_ACK.size - len(data))
        if not chunk:
            raise ConnectionError(f"no answer from the sink ({len(data)} bytes of it)")
        data += chunk
    total, digest = _ACK.unpack(data)
    return total, digest


def _client_one(port: int, size: int, verify: bool, base: bytes, plain: memoryview) -> str:
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
    ok = total == size and (not verify or digest == h.digest())
    return f"{'ok' if ok else 'bad'} {seconds} {total}"


def _client_many(port: int, n: int, duration: float, plain: memoryview) -> str:
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
    ok = not errors and got == sent
    return f"{'ok' if ok else 'bad'} {seconds} {sum(got)} {';'.join(errors)[:200]}"


# --- the controller ----------------------------------------------------------------


class Peer:
    """A role in its own process; its first stdout line is its port."""

    def __init__(self, *role: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", *role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{role} did not start")
        self.port = int(line) if line.strip().isdigit() else 0
        self.first_line = line
        self.pid = self.proc.pid

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"peer {self.pid} exited")
        return answer

    def stop(self) -> None:
        c.stop(self.proc)


class HAProxy:
    """haproxy -db with a temporary mode tcp / option splice-auto configuration."""

    def __init__(
        self, target: int, workdir: str, *, forced: bool = False, pipesize: int | None = None
    ) -> None:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port = probe.getsockname()[1]
        tune = f"    tune.pipesize {pipesize}\n" if pipesize else ""
        # splice-auto splices only once its heuristics call a stream "fast"; with
        # forced=True splice-request/splice-response splice from the first byte.
        splice = (
            "    option splice-request\n    option splice-response\n"
            if forced
            else "    option splice-auto\n"
        )
        self.config = os.path.join(workdir, f"haproxy-{self.port}.cfg")
        with open(self.config, "w", encoding="ascii") as f:
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
                f"    bind 127.0.0.1:{self.port}\n"
                "    default_backend be\n"
                "backend be\n"
                f"    server sink 127.0.0.1:{target}\n"
            )
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", self.config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    raise RuntimeError(f"haproxy did not start: {err}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the benchmark dies (PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


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
        default=20.0,
        help="seconds per run with --concurrent (default 20)",
    )
    p.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    return p


def _run_role(role: list[str]) -> int:
    name, *rest = role
    if name == "sink":
        role_sink(rest == ["verify"])
    elif name == "client":
        role_client()
    else:
        {
            "zerocopy": role_proxy_zerocopy,
            "python": role_proxy_python,
            "asyncio": role_proxy_asyncio,
            "aio": role_proxy_aio,
        }[name](int(rest[0]))
    return 0


_ROLES = {
    "zerocopy.relay": "zerocopy",
    "zerocopy.relay (threads)": "zerocopy",
    "python relay 1M": "python",
    "asyncio streams": "asyncio",
    "zerocopy.aio.relay": "aio",
}


def _start_proxies(
    concurrent: bool, sink: int, haproxy: bool, workdir: str, peers: list[Any]
) -> dict[str, Any]:
    """Start every proxy in front of the *sink* port; each is added to *peers* to stop."""
    if concurrent:
        wanted = ["zerocopy.relay (threads)", "asyncio streams"]
    else:
        wanted = ["zerocopy.relay", "python relay 1M"]
    if importlib.util.find_spec("zerocopy.aio") is not None:
        wanted.append("zerocopy.aio.relay")
    proxies: dict[str, Any] = {}
    for name in wanted:
        proxies[name] = Peer(_ROLES[name], str(sink))
        peers.append(proxies[name])
    if haproxy:
        proxies["haproxy splice-auto"] = HAProxy(sink, workdir)
        peers.append(proxies["haproxy splice-auto"])
        proxies["haproxy forced splice 1M"] = HAProxy(sink, workdir, forced=True, pipesize=MiB)
        peers.append(proxies["haproxy forced splice 1M"])
    return proxies


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
    if args.quick:
        args.duration = min(args.duration, 1.0)
    concurrent = args.concurrent > 0
    haproxy = _haproxy_version()

    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-relay-")
    peers: list[Any] = []
    try:
        sink = Peer("sink", *(["verify"] if args.verify else []))
        peers.append(sink)
        proxies = _start_proxies(concurrent, sink.port, bool(haproxy), workdir, peers)
        client = Peer("client")
        peers.append(client)

        def variant(name: str, port: int, pid: int | None) -> Callable[[], Sample]:
            def run() -> Sample:
                cpu0 = process_cpu(pid) if pid else CpuTimes(0.0, 0.0)
                if concurrent:
                    answer = client.ask(f"many {port} {args.concurrent} {args.duration}")
                else:
                    answer = client.ask(f"one {port} {args.size} {int(args.verify)}")
                cpu1 = process_cpu(pid) if pid else CpuTimes(0.0, 0.0)
                status, seconds, total, *_err = answer.split(maxsplit=3)
                if status != "ok":
                    raise AssertionError(f"{name}: transfer failed: {answer.strip()}")
                cpu = cpu1.minus(cpu0)
                return Sample(float(seconds), cpu.user, cpu.sys, int(total))

            return run

        variants = [(name, variant(name, p.port, p.pid)) for name, p in proxies.items()]
        if not concurrent:
            variants.append(("direct (no proxy)", variant("direct", sink.port, None)))

        info = machine()
        info["haproxy"] = haproxy or "not installed: skipped"
        info["proxy_cpu"] = "the proxy process's, from /proc/<pid>/stat (10 ms ticks)"
        if concurrent:
            info["connections"] = args.concurrent
            info["duration_s"] = args.duration
        peers_cpu0 = sum(process_cpu(p.pid).total for p in peers)
        with LoadMeter() as load, c.Deadline(args.timeout):
            results = run_rounds(c.select(variants, args.only), args.repeat, on_round=print_round)
        # The peers are this benchmark's own processes but are reaped only at
        # the end, so LoadMeter counts them as "everything else": move them.
        peers_cpu = sum(process_cpu(p.pid).total for p in peers) - peers_cpu0
        summary = dict(load.summary)
        summary["own_cpu_s"] = round(summary["own_cpu_s"] + peers_cpu, 1)
        summary["other_cpu_s"] = round(max(0.0, summary["other_cpu_s"] - peers_cpu), 1)
        info["load_during_run"] = summary
    finally:
        for p in reversed(peers):
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if concurrent:
        base = "asyncio streams"
        targets: list[c.Target] = []
        title = f"loopback TCP relay, {args.concurrent} connections x {args.duration:g} s"
        # The header's "per run" figure: the median bytes one run moved.
        args.size = int(statistics.median(s.nbytes for s in results[next(iter(results))]))
    else:
        base = "python relay 1M"
        targets = _targets(results)
        title = "loopback TCP relay, one connection"

    c.publish(title, args, info, results, base, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())

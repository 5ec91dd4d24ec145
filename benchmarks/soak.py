"""Soak: send_file and relay under sustained load on loopback, watching for errors and leaks.

This process runs the system under test:

* an origin server that answers ``GET <file> <offset> <count>`` requests with
  an 8-byte length and then the byte range, sent with ``zerocopy.send_file``
  (one thread per connection, persistent connections);
* a proxy that relays each accepted connection to the origin with
  ``zerocopy.relay`` (one thread per connection).

Client processes (this script's ``--role client``, kit Peers) open
``--connections`` persistent connections between them, half straight to the
origin and half through the proxy (``--mode`` picks one kind only), and send
random range requests until
``--duration`` is over, checking every byte it receives against the files'
known contents.  Every second the server side prints its throughput, its CPU
time per GiB, its resident set size, open fds and threads; at the end it
checks that errors are zero and that fds and threads are back where they
started (idle pooled pipes aside), and prints the RSS trend.

Only loopback addresses are used.  Examples::

    python benchmarks/soak.py --quick                          # 3 s, 8 connections
    python benchmarks/soak.py --connections 50 --duration 20
    python benchmarks/soak.py --connections 200 --duration 60 --json soak.json

The exit status is 0 when the run had no error and no leak, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import socket
import struct
import sys
import tempfile
import threading
import time
from typing import Any

from kit.common import write_json
from kit.peer import Peer, serve_peer
from kit.toolkit import GiB, KiB, MiB, machine, print_machine, process_cpu

#: The files served: name -> size.  Odd sizes on purpose (not page multiples).
FILES = {"4k": 4 * KiB, "64k": 64 * KiB + 1, "1m": MiB - 7, "8m": 8 * MiB + 3}
HEADER = struct.Struct(">Q")
LOOPBACK = "127.0.0.1"


def file_bytes(name: str, seed: int) -> bytes:
    """The deterministic contents of file *name* (the client rebuilds them to check)."""
    return random.Random(f"{seed}:{name}").randbytes(FILES[name])


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own


# --- the server side ----------------------------------------------------------------------


class Stats:
    """Counters shared by the server threads (a lock: += is not atomic across threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0  # bytes the origin put on its sockets with send_file
        self.relayed = 0  # bytes the proxy delivered, both directions
        self.requests = 0
        self.connections = 0
        self.errors: list[str] = []

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{where}: {type(exc).__name__}: {exc}")


def _read_line(sock: socket.socket, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def origin_connection(sock: socket.socket, files: dict[str, Any], stats: Stats) -> None:
    import zerocopy

    buf = bytearray()
    try:
        with sock:
            while (line := _read_line(sock, buf)) is not None:
                name, offset, count = line.decode().split()
                f = files[name]
                sock.sendall(HEADER.pack(int(count)))
                sent = zerocopy.send_file(sock, f, int(offset), int(count))
                if sent != int(count):
                    raise RuntimeError(f"send_file sent {sent} of {count} bytes")
                stats.add(sent=sent, requests=1)
    except Exception as exc:  # noqa: BLE001, RUF100 - counted: the soak's point is that there are none
        stats.error("origin", exc)


def proxy_connection(client: socket.socket, origin: tuple[str, int], stats: Stats) -> None:
    import zerocopy

    try:
        with client, nodelay(socket.create_connection(origin)) as upstream:
            up, down = zerocopy.relay(client, upstream, timeout=30)
            stats.add(relayed=up + down)
    except Exception as exc:  # noqa: BLE001, RUF100 - counted and reported, as in origin_connection
        stats.error("proxy", exc)


def nodelay(sock: socket.socket) -> socket.socket:
    """Turn Nagle off, as servers do: a response's last partial segment would wait for
    the peer's delayed ACK (up to 40 ms) behind the 8-byte header."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(listener: socket.socket, handle: Any, threads: list[threading.Thread]) -> None:
    """Accept until the listener is closed; one thread per connection."""
    while True:
        try:
            conn, _ = listener.accept()
            nodelay(conn)
        except OSError:
            return
        t = threading.Thread(target=handle, args=(conn,), daemon=True)
        t.start()
        threads.append(t)


# --- the client side -----------------------------------------------------------------------


class Client:
    """The connections of one client process (``--role client``), run in threads."""

    def __init__(self, r: dict[str, Any]) -> None:
        self.r = r
        self.contents = {name: file_bytes(name, r["seed"]) for name in FILES}
        self.lock = threading.Lock()
        self.totals = {"direct": 0, "relay": 0, "requests": 0, "errors": 0}
        self.errors: list[str] = []
        self.start = time.monotonic()
        self.deadline = self.start + r["duration"]
        mine = range(r["first"], r["connections"], r["step"])
        self.threads = [threading.Thread(target=self.connection, args=(i,)) for i in mine]
        for t in self.threads:
            t.start()

    def connection(self, i: int) -> None:
        r, names, lock, totals = self.r, sorted(FILES), self.lock, self.totals
        kind = (
            "direct"
            if r["mode"] == "send_file" or (r["mode"] == "both" and i % 2 == 0)
            else "relay"
        )
        port = r["origin_port"] if kind == "direct" else r["proxy_port"]
        rnd = random.Random(r["seed"] * 100_003 + i)
        view = memoryview(bytearray(MiB))
        try:
            with nodelay(socket.create_connection((LOOPBACK, port))) as sock:
                while time.monotonic() < self.deadline:
                    name = rnd.choice(names)
                    data = self.contents[name]
                    offset = rnd.randrange(len(data))
                    count = rnd.randrange(1, len(data) - offset + 1)
                    sock.sendall(f"{name} {offset} {count}\n".encode())
                    header = sock.recv(HEADER.size, socket.MSG_WAITALL)
                    if len(header) != HEADER.size or HEADER.unpack(header)[0] != count:
                        raise RuntimeError(f"bad header {header!r} for {count} bytes")
                    pos = offset
                    end = offset + count
                    while pos < end:
                        n = sock.recv_into(view, min(len(view), end - pos))
                        if not n:
                            raise RuntimeError(f"connection ended {end - pos} bytes short")
                        if bytes(view[:n]) != data[pos : pos + n]:  # memcmp: the cheapest check
                            raise RuntimeError(f"wrong bytes at {name}[{pos}:{pos + n}]")
                        pos += n
                    with lock:
                        totals[kind] += count
                        totals["requests"] += 1
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1):
                    raise RuntimeError("bytes after the last response")
        except Exception as exc:  # noqa: BLE001, RUF100 - any failure is a soak error, counted and shown
            with lock:
                totals["errors"] += 1
                self.errors.append(f"client {i} ({kind}): {type(exc).__name__}: {exc}")

    def figures(self, final: bool = False) -> dict[str, Any]:
        """The totals so far (``running``: a connection is still at work); *final*: joined."""
        if final:
            for t in self.threads:
                t.join()
        with self.lock:
            row = dict(self.totals, t=round(time.monotonic() - self.start, 2))
        row["running"] = any(t.is_alive() for t in self.threads)
        if final:
            row["errors_text"] = self.errors
        return row


def role_client() -> None:
    """A client process: ``start`` its connections, then answer ``figures`` and ``final``."""
    client: Client | None = None

    def handle(r: dict[str, Any]) -> dict[str, Any]:
        nonlocal client
        if r["op"] == "start":
            client = Client(r)
            return {}
        assert client is not None
        return client.figures(final=r["op"] == "final")

    serve_peer(handle)


def _open_files(workdir: str, seed: int) -> dict[str, Any]:
    """Write the served files into *workdir*; return them open for reading."""
    files: dict[str, Any] = {}
    for name in FILES:
        path = os.path.join(workdir, name)
        with open(path, "wb") as f:
            f.write(file_bytes(name, seed))
        # Shared by every connection (send_file uses offsets, not positions);
        # closed at the end of the run.
        files[name] = open(path, "rb")  # noqa: SIM115
    return files


def _start_clients(args: argparse.Namespace, origin_port: int, proxy_port: int) -> list[Peer]:
    """The client processes, each with its share of the connections, started."""
    # Checking every byte costs the clients CPU: they run in their own
    # processes, so that this one's RSS, fds and CPU are the server's alone.
    procs = max(1, min(args.client_procs, args.connections))
    clients: list[Peer] = []
    try:
        for k in range(procs):
            clients.append(Peer(__file__, "client"))
            request = {
                "op": "start",
                "first": k,
                "step": procs,
                "connections": args.connections,
                "duration": args.duration,
                "mode": args.mode,
                "seed": args.seed,
                "origin_port": origin_port,
                "proxy_port": proxy_port,
            }
            clients[-1].ask(request)
    except BaseException:
        for client in clients:
            client.stop()
        raise
    return clients


def _figures(clients: list[Peer], op: str = "figures") -> Rows:
    """Each client's totals so far (or, with op "final", once its connections ended)."""
    for client in clients:
        client.send({"op": op})
    return [client.receive() for client in clients]


Rows = list[dict[str, Any]]


def _total(rows: Rows, key: str) -> int:
    return sum(int(r.get(key, 0)) for r in rows)


def _print_sample(sample: dict[str, Any]) -> None:
    per_gib = sample["cpu_s_per_gib"]
    print(
        f"{sample['t']:6.1f} {sample['direct_mib_s']:13.1f} {sample['relay_mib_s']:12.1f} "
        f"{sample['requests_s']:8.0f} {'-' if per_gib is None else f'{per_gib:.2f}':>10} "
        f"{sample['rss_mib']:8.1f} {sample['fds']:6d} {sample['threads']:8d} "
        f"{sample['errors']:7d}",
        flush=True,
    )


def _watch(args: argparse.Namespace, clients: list[Peer], stats: Stats) -> tuple[Rows, float]:
    """A line of figures every interval until the clients end: (the samples, server CPU s).

    The CPU is read before the clients are reaped, so theirs is never in it.
    """
    samples: Rows = []
    cpu0 = _cpu()
    t0 = time.monotonic()
    last = {"t": 0.0, "direct": 0, "relay": 0, "cpu": 0.0, "requests": 0}
    print(
        f"{'t (s)':>6} {'direct MiB/s':>13} {'relay MiB/s':>12} {'req/s':>8} "
        f"{'CPU s/GiB':>10} {'RSS MiB':>8} {'fds':>6} {'threads':>8} {'errors':>7}"
    )
    latest = [{"running": True}]
    while any(row["running"] for row in latest):
        time.sleep(args.interval)
        latest = _figures(clients)
        now = {
            "t": time.monotonic() - t0,
            "direct": _total(latest, "direct"),
            "relay": _total(latest, "relay"),
            "requests": _total(latest, "requests"),
            "cpu": _cpu() - cpu0,
        }
        dt = max(now["t"] - last["t"], 1e-9)
        moved = now["direct"] - last["direct"] + now["relay"] - last["relay"]
        sample = {
            "t": round(now["t"], 2),
            "direct_mib_s": (now["direct"] - last["direct"]) / dt / MiB,
            "relay_mib_s": (now["relay"] - last["relay"]) / dt / MiB,
            "requests_s": (now["requests"] - last["requests"]) / dt,
            "cpu_s_per_gib": (now["cpu"] - last["cpu"]) / (moved / GiB) if moved else None,
            "rss_mib": rss() / MiB,
            "fds": open_fds(),
            "threads": threading.active_count(),
            "errors": _total(latest, "errors") + len(stats.errors),
        }
        _print_sample(sample)
        samples.append(sample)
        last = now
    return samples, _cpu() - cpu0


def _final(finals: Rows, duration: float) -> dict[str, Any]:
    """The clients' final counts, summed."""
    return {
        "direct": _total(finals, "direct"),
        "relay": _total(finals, "relay"),
        "requests": _total(finals, "requests"),
        "errors": _total(finals, "errors"),
        "errors_text": [text for f in finals for text in f.get("errors_text", [])],
        "t": max((float(f.get("t", 0)) for f in finals), default=duration),
    }


# --- the driver ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--connections", type=int, default=200, help="concurrent connections (default 200)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument(
        "--mode",
        choices=["both", "send_file", "relay"],
        default="both",
        help="what the connections exercise: half and half (default), or one only",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between report lines")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--backend", choices=["auto", "cffi", "os"], default=None, help="ZEROCOPY_BACKEND"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 3 s, 8 connections")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="client processes sharing the connections (default 2)",
    )
    p.add_argument("--role", choices=["client"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.backend:
        os.environ["ZEROCOPY_BACKEND"] = args.backend
    if args.role:
        role_client()
        return 0
    if args.quick:
        args.duration, args.connections = 3.0, 8
    return driver(args)


def driver(args: argparse.Namespace) -> int:
    import zerocopy
    from zerocopy._pipes import default_pool

    info = machine()
    print_machine(info)
    print(
        f"soak: {args.connections} connections ({args.mode}) for {args.duration:.0f} s "
        f"on {LOOPBACK}, backend {zerocopy.BACKEND}\n"
    )
    # Every connection costs fds on both sides of the loopback (and a proxy's
    # connection four, plus two pooled pipes): make room where the limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 16 * args.connections + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    stats = Stats()
    workdir = tempfile.mkdtemp(prefix="zerocopy-soak-")
    files = _open_files(workdir, args.seed)
    handlers: list[threading.Thread] = []
    base_fds, base_threads = open_fds(), threading.active_count()
    origin = socket.create_server((LOOPBACK, 0), backlog=4096)
    proxy = socket.create_server((LOOPBACK, 0), backlog=4096)
    origin_addr = origin.getsockname()
    acceptors = [
        threading.Thread(
            target=serve,
            args=(origin, lambda c: origin_connection(c, files, stats), handlers),
            daemon=True,
        ),
        threading.Thread(
            target=serve,
            args=(proxy, lambda c: proxy_connection(c, origin_addr, stats), handlers),
            daemon=True,
        ),
    ]
    for t in acceptors:
        t.start()

    clients = _start_clients(args, origin_addr[1], proxy.getsockname()[1])
    try:
        samples, cpu_total = _watch(args, clients, stats)
        finals = _figures(clients, "final")
    finally:
        for client in clients:
            client.stop()
    returncodes = [client.proc.returncode for client in clients]
    final = _final(finals, args.duration)

    # The clients closed their connections: every handler thread must end.
    for t in list(handlers):
        t.join(timeout=30)
    stuck = sum(t.is_alive() for t in handlers)
    for listener in (origin, proxy):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        listener.close()
    for t in acceptors:
        t.join(timeout=5)
    pooled = 2 * len(default_pool())
    end_fds = open_fds() - pooled
    end_threads = threading.active_count()
    for f in files.values():
        f.close()
    for name in FILES:
        os.unlink(os.path.join(workdir, name))
    os.rmdir(workdir)

    client_errors = final.get("errors", -1)
    errors = client_errors + len(stats.errors)
    moved = final.get("direct", 0) + final.get("relay", 0)
    seconds = final.get("t", args.duration)
    steady = [s["rss_mib"] for s in samples[len(samples) // 5 :]] or [rss() / MiB]
    summary = {
        "machine": info,
        "connections": args.connections,
        "mode": args.mode,
        "duration_s": seconds,
        "requests": final.get("requests", 0),
        "bytes": {"direct": final.get("direct", 0), "relay": final.get("relay", 0)},
        "throughput_mib_s": {
            "direct": final.get("direct", 0) / seconds / MiB,
            "relay": final.get("relay", 0) / seconds / MiB,
            "total": moved / seconds / MiB,
        },
        "server_cpu_s": cpu_total,
        "server_cpu_s_per_gib": cpu_total / (moved / GiB) if moved else None,
        "rss_mib": {
            "start": samples[0]["rss_mib"] if samples else None,
            "steady_min": min(steady),
            "steady_max": max(steady),
            "end": rss() / MiB,
        },
        "fds": {"before": base_fds, "after": end_fds},
        "threads": {"before": base_threads, "after": end_threads, "stuck_handlers": stuck},
        "errors": errors,
        "error_samples": (final.get("errors_text", []) + stats.errors)[:10],
        "samples": samples,
    }
    _print_summary(summary)
    if args.json:
        write_json(args.json, summary)
    leak = end_fds > base_fds or end_threads > base_threads or stuck
    ok = errors == 0 and not leak and not any(returncodes)
    print("\nRESULT          " + ("PASS: no error, no leak" if ok else "FAIL"))
    return 0 if ok else 1


def _print_summary(summary: dict[str, Any]) -> None:
    print()
    print(f"requests        {summary['requests']}")
    t = summary["throughput_mib_s"]
    print(
        "throughput      "
        f"direct {t['direct']:.1f} MiB/s, relay {t['relay']:.1f} MiB/s, "
        f"total {t['total']:.1f} MiB/s"
    )
    per_gib = summary["server_cpu_s_per_gib"]
    cpu_total = summary["server_cpu_s"]
    print(
        f"server CPU      {cpu_total:.1f} s ({per_gib:.2f} s/GiB)"
        if per_gib
        else "server CPU      -"
    )
    r = summary["rss_mib"]
    print(
        f"RSS (MiB)       start {r['start']:.1f}, "
        f"steady {r['steady_min']:.1f}..{r['steady_max']:.1f}, end {r['end']:.1f}"
    )
    fds, threads = summary["fds"], summary["threads"]
    print(f"fds             {fds['before']} before, {fds['after']} after (idle pooled pipes aside)")
    print(
        f"threads         {threads['before']} before, {threads['after']} after, "
        f"{threads['stuck_handlers']} handlers stuck"
    )
    print(f"errors          {summary['errors']}")
    for text in summary["error_samples"]:
        print(f"  {text}")


def _cpu() -> float:
    """The server's CPU: this process (the toolkit's accounting); the clients are
    reaped only after the last reading, so theirs is never in it."""
    return process_cpu().total


if __name__ == "__main__":
    sys.exit(main())

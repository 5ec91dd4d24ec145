#!/usr/bin/env python3
"""HTTP file serving: ``python -m zerocopy serve`` against ``python -m http.server`` and nginx.

Each server runs as its own process on 127.0.0.1 and serves one file (100 MiB
by default); a run fetches it ``--fetches`` times (20 by default), one
request after the other, with the same client for every server.  Rounds
alternate the servers (A B C A B C ...) after a warm-up round.

Target (issue): ``zerocopy serve`` throughput >= 1.3x ``python -m
http.server``.  nginx (``sendfile on``, one worker, access log off) is the
reference a C server reaches; its ratio is reported, with no target.

Over loopback the client copies every byte it receives, so throughput is
bounded by the client; what sendfile saves shows as *server* CPU, reported in
s/GiB (the toolkit's ``process_tree_cpu``: the server process, its threads
and its children, from ``/proc/PID/stat``).  The client's own CPU is in the notes column.

The default client reads with ``recv_into`` into one 1 MiB buffer, in this
process (``--client python``); ``--client curl`` runs one ``curl`` per run,
writing to /dev/null (slower here: curl reads 16 KiB at a time).

nginx is started as root from a temporary config when the ``nginx`` binary
exists (Debian: ``apt-get install nginx-light``); otherwise it is left out,
with a note.  ``--nginx none`` leaves it out.

    python benchmarks/bench_http.py [--size 100M] [--fetches 20] [--repeat 5] [--json FILE]
    python benchmarks/bench_http.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from kit import common as c
from kit.toolkit import (
    GiB,
    MiB,
    Sample,
    human,
    machine,
    print_round,
    process_cpu,
    run_rounds,
)

# --- clients --------------------------------------------------------------------


def python_fetch(port: int, path: str, buf: memoryview, digest: Any = None) -> int:
    """GET *path* over HTTP/1.0; read the body with recv_into into *buf*; return its length."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"connection closed in the headers: {head!r}")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"status {status.decode()}: {head!r}")
        length = None
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        if digest is not None:
            digest.update(body)
        got = len(body)
        while length is None or got < length:
            n = sock.recv_into(buf)
            if not n:
                break
            if digest is not None:
                digest.update(buf[:n])
            got += n
        if length is not None and got != length:
            raise RuntimeError(f"short body: {got} of {length} bytes")
        return got


def curl_fetch_many(port: int, path: str, fetches: int) -> int:
    url = f"http://127.0.0.1:{port}{path}"
    argv = ["curl", "-s", "--fail", "-w", "%{http_code} %{size_download}\\n"]
    for _ in range(fetches):
        argv += ["-o", "/dev/null", url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    codes, sizes = out[0::2], out[1::2]
    if set(codes) != {"200"} or len(codes) != fetches:
        raise RuntimeError(f"curl: {out}")
    return sum(int(s) for s in sizes)


def _client_cpu() -> float:
    # This process (the Python client) plus the children waited for (curl);
    # the servers are children too, but reaped only at the end.
    return process_cpu().total


# --- main -----------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = c.base_parser(__doc__.splitlines()[0], 100 * MiB)
    p.add_argument("--fetches", type=int, default=20, help="requests per run (default 20)")
    p.add_argument(
        "--client",
        choices=("python", "curl"),
        default="python",
        help="the HTTP client, the same for every server (default: python)",
    )
    p.add_argument(
        "--nginx",
        default=shutil.which("nginx") or "",
        help="the nginx binary, or 'none' (default: nginx on PATH, if any)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.size = min(args.size, 4 * MiB)
        args.repeat = min(args.repeat, 2)
        args.fetches = min(args.fetches, 3)
    if args.client == "curl" and shutil.which("curl") is None:
        p.error("--client curl: curl is not installed")
    return args


def _servers(args: argparse.Namespace, workdir: str) -> tuple[list[c.Server], list[str]]:
    """The servers to compare, serving *workdir*; and notes on any left out."""
    # Both Python servers log every request to stderr, alike.
    port = c.free_port()
    servers = [
        c.Server(
            "http.server",
            [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                workdir,
                str(port),
            ],
            port,
        ),
    ]
    port = c.free_port()
    servers.append(
        c.Server(
            "zerocopy serve",
            [
                sys.executable,
                "-m",
                "zerocopy",
                "serve",
                workdir,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            port,
        ),
    )
    notes = []
    if args.nginx and args.nginx != "none":
        if os.geteuid() != 0:
            notes.append("nginx left out: the benchmark runs it as root, and this is not root")
        else:
            servers.append(c.nginx_server(args.nginx, workdir, c.free_port()))
    else:
        notes.append(
            "nginx left out: no nginx binary (apt-get install nginx-light) or --nginx none"
        )
    return servers, notes


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-http-", dir=args.dir)
    # nginx's worker reads the file as root (user root in its config), and
    # the Python servers as this user; 0755 lets either in.
    os.chmod(workdir, 0o755)
    src = os.path.join(workdir, "file.bin")
    c.fill_file(src, args.size)
    expected = hashlib.sha256()
    with open(src, "rb") as f:
        while chunk := f.read(MiB):
            expected.update(chunk)
    servers, notes = _servers(args, workdir)

    buf = memoryview(bytearray(MiB))
    path = "/file.bin"

    def run_one(server: c.Server) -> Sample:
        u0, s0 = server.cpu()
        r0 = _client_cpu()
        t0 = perf_counter()
        if args.client == "python":
            nbytes = sum(python_fetch(server.port, path, buf) for _ in range(args.fetches))
        else:
            nbytes = curl_fetch_many(server.port, path, args.fetches)
        seconds = perf_counter() - t0
        r1 = _client_cpu()
        u1, s1 = server.cpu()
        if nbytes != args.size * args.fetches:
            expected = args.size * args.fetches
            raise AssertionError(f"{server.name}: {nbytes} bytes, expected {expected}")
        client_cpu = r1 - r0
        return Sample(
            seconds,
            u1 - u0,
            s1 - s0,
            nbytes,
            {"client_cpu_s_per_gib": client_cpu / (nbytes / GiB)},
        )

    info = machine(workdir)
    info["client"] = args.client
    try:
        with c.Deadline(args.timeout), contextlib.ExitStack() as stack:
            for server in servers:
                stack.enter_context(server)
            for server in servers:  # every server serves the right bytes
                digest = hashlib.sha256()
                python_fetch(server.port, path, buf, digest)
                if digest.digest() != expected.digest():
                    raise AssertionError(f"{server.name} served different bytes")
            results = run_rounds(
                [(s.name, lambda s=s: run_one(s)) for s in servers],
                args.repeat,
                on_round=print_round,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    targets = [c.Target("zerocopy serve", "http.server", "throughput", 1.3)]
    title = (
        f"HTTP GET, {args.fetches} fetches of a {human(args.size)} file per run "
        f"(client: {args.client}; CPU columns: the server's)"
    )
    # publish() labels a run with args.size: here a run is every fetch.
    shown = argparse.Namespace(
        **{**vars(args), "file_size": args.size, "size": args.size * args.fetches}
    )
    c.publish(
        title,
        shown,
        info,
        results,
        "http.server",
        targets,
        notes=lambda s: f"client CPU {s['client_cpu_s_per_gib']:.3f} s/GiB",
    )
    if "nginx" in results:
        r = c.compare(results, "zerocopy serve", "nginx")
        print(
            f"\nzerocopy serve / nginx: throughput {r['throughput']:.2f}x "
            f"(paired {r['paired_min']:.2f}-{r['paired_max']:.2f}), "
            f"server CPU per GiB {r['cpu']:.2f}x"
            if r["cpu"] == r["cpu"]
            else ""
        )
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

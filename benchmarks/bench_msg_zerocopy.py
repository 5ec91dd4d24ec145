#!/usr/bin/env python3
"""MSG_ZEROCOPY: ZeroCopySender against plain sendall, over loopback and a veth pair.

Target (issue): with its default settings :class:`zerocopy.ZeroCopySender`
costs at most 5% more sender CPU than plain ``socket.sendall`` on these paths
(``zc default`` CPU <= 1.05x ``sendall``).

Variants, per path and send size, alternating within each round:

``sendall``
    ``sock.sendall(buf)`` in a loop: the baseline.
``zc default``
    ``ZeroCopySender(sock)``: threshold 10 KiB, stop_on_copied=True.
``zc keep``
    ``ZeroCopySender(sock, stop_on_copied=False)``: zero-copy asked for on
    every send, for reference (what MSG_ZEROCOPY itself costs on the path).
``zc proposed``
    diagnosis, not a target: the default sender, subclassed here so that
    completions already queued are read before every send (so the first
    copied completion turns zero-copy off during the run, not at ``flush()``)
    and a send that will be plain anyway goes straight to ``sock.sendall``
    instead of through the zero-copy bookkeeping.  It shows what those two
    changes to ``ZeroCopySender`` would cost or save.

Both paths deliver to a local receiver, which copies anyway: the kernel
completes every zero-copy send as "copied", and the figures are sender CPU,
not a throughput gain.  The receiver is another process (on the veth path, in
another network namespace), started once per path and reaped at the end; it
reads each connection to its end and answers with the byte count and its CPU
time.  This process (single-threaded) connects untimed, then times the sends,
``flush()``, ``shutdown(SHUT_WR)`` and the receiver's answer.  The veth pair
lives in two namespaces this script creates (root and iproute2 needed; else
the veth path is skipped, saying why) and deletes in ``finally``.

    python benchmarks/bench_msg_zerocopy.py [--size 4K,64K,1M] [--bytes 1G] [--repeat 5]
                                            [--paths loopback,veth] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kit import common as c
from kit.toolkit import (
    GiB,
    LoadMeter,
    MiB,
    Sample,
    Stopwatch,
    human,
    machine,
    print_machine,
    print_round,
    process_cpu,
    run_rounds,
    size_arg,
)

import zerocopy


def role_receiver(host: str, verify: bool) -> None:
    """The receiver (``--role receiver HOST verify|count``): per request, one connection.

    Reads it to its end; answers the byte count, its own CPU time for it and,
    with *verify*, the SHA-256 of the stream.
    """
    ls = socket.create_server((host, 0))
    buf = memoryview(bytearray(MiB))

    def receive(request: dict[str, Any]) -> dict[str, Any]:
        conn, _ = ls.accept()
        with conn:
            cpu0 = process_cpu()
            total, h = 0, hashlib.sha256()
            while n := conn.recv_into(buf):
                total += n
                if verify:
                    h.update(buf[:n])
            cpu = process_cpu().minus(cpu0)
        digest = h.hexdigest() if verify else ""
        return {"bytes": total, "user": cpu.user, "sys": cpu.sys, "digest": digest}

    c.serve_peer(receive, ports=[ls.getsockname()[1]])


_CLONE_NEWNET = 0x40000000
_SIZES = "4K,64K,1M"


# --- the veth pair ------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=True)


@contextlib.contextmanager
def veth_pair() -> Iterator[tuple[str, str, str] | str]:
    """Yield (sender namespace, receiver namespace, receiver address), or why not."""
    if shutil.which("ip") is None:
        yield "the ip command (iproute2) is missing"
        return
    pid = os.getpid()
    ns_a, ns_b = f"zc-bench-{pid}-a", f"zc-bench-{pid}-b"
    x = pid % 250 + 1
    created: list[str] = []
    try:
        try:
            for ns in (ns_a, ns_b):
                _ip("netns", "add", ns)
                created.append(ns)
            _ip("-n", ns_a, "link", "add", "zc0", "type", "veth", "peer", "name", "zc0",
                "netns", ns_b)  # fmt: skip
            for ns, host in ((ns_a, 1), (ns_b, 2)):
                _ip("-n", ns, "addr", "add", f"10.213.{x}.{host}/30", "dev", "zc0")
                _ip("-n", ns, "link", "set", "zc0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            yield f"cannot set up the veth pair: {' '.join(exc.cmd)}: {exc.stderr.strip()}"
            return
        yield ns_a, ns_b, f"10.213.{x}.2"
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block (this thread only) in network namespace *name* (None: stay)."""
    if name is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                raise SystemExit("could not return to the original network namespace")
    finally:
        os.close(target)
        os.close(home)


class ProposedSender(zerocopy.ZeroCopySender):
    """Diagnosis only: ZeroCopySender with the two changes described for ``zc proposed``."""

    def sendall(self, data: Any, *, on_release: Any = None) -> None:
        if self.pending:
            self.poll()
        if on_release is None and (not self.zerocopy or memoryview(data).nbytes < self.threshold):
            self.sock.sendall(data)
            self.stats.plain_sends += 1
            return
        super().sendall(data, on_release=on_release)


def receiver(host: str, netns: str | None, verify: bool) -> c.Peer:
    """The peer process of one path, in network namespace *netns* if given."""
    prefix = ["ip", "netns", "exec", netns] if netns is not None else []
    return c.Peer(__file__, "receiver", host, "verify" if verify else "count", prefix=prefix)


# --- one path, one send size ---------------------------------------------------------


def _digest(buf: bytes | bytearray, count: int) -> str:
    """SHA-256 of *buf* sent *count* times, as the receiver computes it."""
    h = hashlib.sha256()
    for _ in range(count):
        h.update(buf)
    return h.hexdigest()


def zc_send(
    cls: type[zerocopy.ZeroCopySender],
    kw: dict[str, Any],
    buf: bytearray,
    count: int,
    sock: socket.socket,
) -> dict[str, Any]:
    """Send *buf* *count* times through a *cls* sender; return its counters."""
    s = cls(sock, **kw)
    for _ in range(count):
        s.sendall(buf)
    peak = s.pending
    s.flush()
    st = s.stats
    return {
        "zc_sends": st.zerocopy_sends,
        "plain_sends": st.plain_sends,
        "copied": st.copied,
        "completions": st.completions,
        "enobufs": st.enobufs_retries,
        "pending_at_end": peak,
    }


def variants_for(
    receiver: c.Peer,
    host: str,
    sender_ns: str | None,
    send_size: int,
    total: int,
    verify: bool,
) -> list[tuple[str, Callable[[], Sample]]]:
    buf = bytearray(os.urandom(send_size))
    count = max(1, total // send_size)
    nbytes = count * send_size
    expect = _digest(buf, count) if verify else ""

    def run(send: Callable[[socket.socket], dict[str, Any]]) -> Sample:
        with in_netns(sender_ns):
            sock = socket.create_connection((host, receiver.port))
        receiver.send({})
        with sock, Stopwatch() as sw:
            info = send(sock)
            sock.shutdown(socket.SHUT_WR)
            answer = receiver.receive()
        got, ruser, rsys, digest = (answer[k] for k in ("bytes", "user", "sys", "digest"))
        if got != nbytes:
            raise AssertionError(f"receiver got {got} bytes, expected {nbytes}")
        if verify and digest != expect:
            raise AssertionError("the receiver's bytes differ from what was sent")
        return sw.sample(nbytes, receiver_cpu_s_per_gib=(ruser + rsys) / (nbytes / GiB), **info)

    def plain() -> Sample:
        def send(sock: socket.socket) -> dict[str, Any]:
            for _ in range(count):
                sock.sendall(buf)
            return {}

        return run(send)

    def zc(cls: type[zerocopy.ZeroCopySender], **kw: Any) -> Callable[[], Sample]:
        return functools.partial(run, functools.partial(zc_send, cls, kw, buf, count))

    return [
        ("sendall", plain),
        ("zc default", zc(zerocopy.ZeroCopySender)),
        ("zc keep", zc(zerocopy.ZeroCopySender, stop_on_copied=False)),
        ("zc proposed", zc(ProposedSender)),
    ]


def notes(s: dict[str, Any]) -> str:
    out = f"rx {s['receiver_cpu_s_per_gib']:.2f} s/GiB"
    if "zc_sends" in s:
        out += (
            f"; zc {s['zc_sends']:.0f}, plain {s['plain_sends']:.0f}, "
            f"copied {s['copied']:.0f}, held at end {s['pending_at_end']:.0f}"
        )
        if s.get("enobufs"):
            out += f", ENOBUFS {s['enobufs']:.0f}"
    return out


# --- main ---------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """'4K,64K' -> [4096, 65536], for argparse (each part through size_arg)."""
    return [size_arg(part) for part in text.split(",") if part.strip()]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--size",
        type=parse_sizes,
        default=parse_sizes(_SIZES),
        help=f"bytes per send, comma-separated (default {_SIZES})",
    )
    p.add_argument(
        "--bytes",
        type=size_arg,
        default=GiB,
        help="bytes per measured run (default 1G)",
    )
    p.add_argument("--repeat", type=int, default=5, help="measured rounds after the warm-up")
    p.add_argument(
        "--paths", default="loopback,veth", help="comma-separated: loopback, veth (default both)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 16 MiB, 2 rounds, verified")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    p.add_argument("--role", nargs=3, help=argparse.SUPPRESS)
    p.add_argument(
        "--only",
        action=c.OnlyAction,
        help="run only these variants: separated by ';' or by commas outside parentheses, "
        "or --only repeated",
    )
    args = p.parse_args(argv)
    args.verify = args.quick
    if args.quick:
        args.bytes = min(args.bytes, 16 * MiB)
        args.repeat = min(args.repeat, 2)
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    for path in paths:
        if path not in ("loopback", "veth"):
            p.error(f"unknown path {path!r}")
    args.paths = paths
    return args


def _setups(
    args: argparse.Namespace, stack: contextlib.ExitStack, skipped: dict[str, str]
) -> list[tuple[str, c.Peer, str, str | None]]:
    """(path, its receiver, its address, the sender's namespace) for each path that can run."""
    setups: list[tuple[str, c.Peer, str, str | None]] = []
    if "loopback" in args.paths:
        rx = receiver("127.0.0.1", None, args.verify)
        stack.callback(rx.stop)
        setups.append(("loopback", rx, "127.0.0.1", None))
    if "veth" in args.paths:
        veth = stack.enter_context(veth_pair())
        if isinstance(veth, str):
            skipped["veth"] = veth
            print(f"skipping the veth path: {veth}", file=sys.stderr)
        else:
            ns_a, ns_b, addr = veth
            rx = receiver(addr, ns_b, args.verify)
            stack.callback(rx.stop)
            setups.append(("veth", rx, addr, ns_a))
    return setups


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.role:
        role_receiver(args.role[1], args.role[2] == "verify")
        return 0
    info = machine()
    info["optmem_max"] = _read("/proc/sys/net/core/optmem_max")
    info["RLIMIT_MEMLOCK"] = _memlock()
    skipped: dict[str, str] = {}
    results: dict[str, dict[str, dict[str, list[Sample]]]] = {}
    with LoadMeter() as load, c.Deadline(args.timeout), contextlib.ExitStack() as stack:
        for path, rx, host, sender_ns in _setups(args, stack, skipped):
            results[path] = {}
            for size in args.size:
                print(f"{path}, {human(size)} sends:", file=sys.stderr, flush=True)
                variants = variants_for(rx, host, sender_ns, size, args.bytes, args.verify)
                results[path][human(size)] = run_rounds(
                    c.select(variants, args.only), args.repeat, on_round=print_round
                )
    info["load_during_run"] = load.summary
    info["skipped"] = skipped
    _publish(args, info, results)
    return 0


def _publish(
    args: argparse.Namespace,
    info: dict[str, Any],
    results: dict[str, dict[str, dict[str, list[Sample]]]],
) -> None:
    """Print the machine, a table per path and send size, the targets; write the JSON."""
    print(
        f"\nMSG_ZEROCOPY sender: {human(args.bytes)} per run, median of {args.repeat} "
        "alternating rounds after 1 warm-up round\n"
    )
    print_machine(info)
    payload: dict[str, Any] = {
        "benchmark": "msg_zerocopy",
        "command": [sys.executable, *sys.argv],
        "args": {k: v for k, v in vars(args).items()},
        "machine": info,
        "results": {},
        "targets": [],
    }
    checks = []
    for path, by_size in results.items():
        for size, res in by_size.items():
            base = "sendall" if "sendall" in res else next(iter(res))
            text, data = c.report(res, base, notes)
            print(f"\n{path}, {size} sends (baseline {base})\n")
            print(text)
            payload["results"][f"{path} {size}"] = data
            target = c.Target("zc default", "sendall", "cpu", 1.05)
            if "zc default" in res and "sendall" in res:
                check = target.check(res)
                check["target"] = f"{path} {size}: {check['target']}"
                checks.append(check)
    if checks:
        c.print_targets(checks)
    payload["targets"] = checks
    c.write_json(args.json, payload)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as exc:
        return f"? ({exc.strerror})"


def _memlock() -> str:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)

    def fmt(v: int) -> str:
        return "unlimited" if v == resource.RLIM_INFINITY else human(v)

    return f"soft {fmt(soft)}, hard {fmt(hard)}"


if __name__ == "__main__":
    sys.exit(main())

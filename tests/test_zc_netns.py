"""ZeroCopySender across a veth pair between two network namespaces the test creates.

Loopback always copies, so this is the nearest path to a real NIC a test can
build on one machine: sender in namespace A, receiver in namespace B, a veth
pair with addresses in 10.213.x.0/30 that exist only inside those namespaces.
Both ends run as subprocesses under ``ip netns exec``; the namespaces are
deleted in ``finally``.  Needs root and iproute2; skips (saying why) otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import zerocopy

KiB = 1024
MiB = 1024 * KiB

RECEIVER = r"""
import hashlib, json, socket, sys
ls = socket.create_server((sys.argv[1], 0))
print(ls.getsockname()[1], flush=True)
ls.settimeout(60)
conn, _ = ls.accept()
conn.settimeout(60)
h, total = hashlib.sha256(), 0
buf = memoryview(bytearray(1 << 20))
while n := conn.recv_into(buf):
    h.update(buf[:n])
    total += n
print(json.dumps({"total": total, "sha256": h.hexdigest()}), flush=True)
"""

SENDER = r"""
import hashlib, json, random, socket, sys
import zerocopy
host, port, chunks, stop = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
sock = socket.create_connection((host, port), timeout=60)
sender = zerocopy.ZeroCopySender(sock, stop_on_copied=(stop == "stop"))
h, total, rng = hashlib.sha256(), 0, random.Random(1234)
with sender:
    for size in chunks:
        data = rng.randbytes(size)
        h.update(data)
        total += size
        sender.sendall(data)
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
print(json.dumps({"stats": vars(sender.stats), "pending": sender.pending,
                  "zerocopy": sender.zerocopy, "total": total, "sha256": h.hexdigest(),
                  "backend": zerocopy.BACKEND, "features": sorted(zerocopy.FEATURES)}))
"""


@dataclass
class Veth:
    ns_a: str
    ns_b: str
    addr_a: str
    addr_b: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=True)


def _skip(reason: str) -> None:
    print(f"skipping the veth tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def veth() -> Iterator[Veth]:
    """Two namespaces joined by a veth pair; deleted afterwards whatever happens."""
    if not sys.platform.startswith("linux"):
        _skip("Linux only")
    if shutil.which("ip") is None:
        _skip("the ip command (iproute2) is missing")
    pid = os.getpid()
    ns_a, ns_b = f"zc-test-{pid}-a", f"zc-test-{pid}-b"
    x = pid % 250 + 1
    net = Veth(ns_a, ns_b, f"10.213.{x}.1", f"10.213.{x}.2")
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            try:
                _ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                _skip(f"cannot create network namespace {ns}: {exc.stderr.strip()}")
            created.append(ns)
        # Both ends are born inside the namespaces: nothing appears on the host.
        _ip("-n", ns_a, "link", "add", "zc0", "type", "veth", "peer", "name", "zc0", "netns", ns_b)
        for ns, addr in ((ns_a, net.addr_a), (ns_b, net.addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", "zc0")
            _ip("-n", ns, "link", "set", "zc0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield net
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def transfer(
    net: Veth, chunks: list[int], stop: str, backend: str = "auto"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send *chunks* from namespace A to B; return (sender report, receiver report)."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", net.ns_b, sys.executable, "-c", RECEIVER, net.addr_b],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        port = receiver.stdout.readline().strip()
        assert port, receiver.stderr.read() if receiver.stderr else "receiver died"
        sender = subprocess.run(
            ["ip", "netns", "exec", net.ns_a, sys.executable, "-c", SENDER,
             net.addr_b, port, json.dumps(chunks), stop],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "ZEROCOPY_BACKEND": backend},
        )  # fmt: skip
        assert sender.returncode == 0, sender.stderr
        out, err = receiver.communicate(timeout=60)
        assert receiver.returncode == 0, err
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    sent = json.loads(sender.stdout.splitlines()[-1])
    got = json.loads(out.splitlines()[-1])
    print("sender:", json.dumps(sent))
    return sent, got


@pytest.fixture
def needs_zerocopy() -> None:
    if zerocopy.BACKEND != "cffi" or "msg_zerocopy" not in zerocopy.FEATURES:
        pytest.skip("needs the cffi backend with MSG_ZEROCOPY")


class TestVeth:
    def test_byte_exact_with_completions(self, veth: Veth, needs_zerocopy: None) -> None:
        """64 MiB in 1 MiB sends and sizes around the threshold arrive exactly, with completions."""
        t = 10 * KiB
        chunks = [1, t - 1, t, t + 1, *([MiB] * 64), 3 * MiB + 7, 100]
        sent, got = transfer(veth, chunks, "keep")
        assert (got["total"], got["sha256"]) == (sent["total"], sent["sha256"])
        assert got["total"] == sum(chunks)
        stats = sent["stats"]
        assert stats["zerocopy_sends"] >= 66
        assert stats["completions"] == stats["zerocopy_sends"]
        assert stats["copied"] <= stats["completions"]
        assert sent["pending"] == 0
        assert sent["zerocopy"]

    def test_default_settings(self, veth: Veth, needs_zerocopy: None) -> None:
        """With the defaults: exact, and zero-copy stays on only if nothing was copied."""
        sent, got = transfer(veth, [MiB] * 32, "stop")
        assert (got["total"], got["sha256"]) == (sent["total"], sent["sha256"])
        stats = sent["stats"]
        assert stats["completions"] == stats["zerocopy_sends"] > 0
        assert sent["zerocopy"] == (stats["copied"] == 0)

    def test_os_backend_across_veth(self, veth: Veth) -> None:
        """The os backend sends plainly across the veth pair, byte for byte."""
        sent, got = transfer(veth, [MiB] * 8, "stop", backend="os")
        assert sent["backend"] == "os"
        assert "msg_zerocopy" not in sent["features"]
        assert (got["total"], got["sha256"]) == (sent["total"], sent["sha256"])
        assert sent["stats"]["zerocopy_sends"] == 0
        assert sent["pending"] == 0
        assert not sent["zerocopy"]

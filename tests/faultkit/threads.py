"""Operations that 16 threads run at once, and the probe that a blocked call frees the GIL.

Each operation returns after checking its own bytes.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zerocopy
from conftest import tcp_pair
from faultkit import MiB
from faultkit.peers import random_bytes
from timekit import scaled

THREADS = 16


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _send_all(sock: socket.socket, data: bytes, shut: bool = True) -> None:
    sock.sendall(data)
    if shut:
        sock.shutdown(socket.SHUT_WR)


def _background(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run *fn* in a thread; the list receives its result or exception."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # re-raised by the caller
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _result(t: threading.Thread, box: list[Any], timeout: float = 60) -> Any:
    t.join(timeout)
    assert not t.is_alive(), "helper thread did not finish"
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def op_file_file(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 3 * MiB), seed)
    src, dst = tmp / f"s{seed}", tmp / f"d{seed}"
    src.write_bytes(data)
    with open(src, "rb") as f, open(dst, "wb") as g:
        assert zerocopy.copyfileobj(f, g) == len(data)
    assert dst.read_bytes() == data
    src.unlink()
    dst.unlink()


def op_copyfile(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(0, 2 * MiB), seed)
    src, dst = tmp / f"s{seed}", tmp / f"d{seed}"
    src.write_bytes(data)
    assert zerocopy.copyfile(src, dst) == dst
    assert dst.read_bytes() == data
    src.unlink()
    dst.unlink()


def op_file_socket(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 3 * MiB), seed)
    src = tmp / f"s{seed}"
    src.write_bytes(data)
    a, b = socket.socketpair()
    with a, b:
        t, box = _background(lambda: _recv_all(b))
        with open(src, "rb") as f, a.makefile("wb") as out:
            assert zerocopy.copyfileobj(f, out) == len(data)
        a.shutdown(socket.SHUT_WR)
        assert _result(t, box) == data
    src.unlink()


def op_socket_file(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 3 * MiB), seed)
    dst = tmp / f"d{seed}"
    a, b = tcp_pair() if seed % 2 else socket.socketpair()
    with a, b:
        t, box = _background(lambda: _send_all(b, data))
        with a.makefile("rb") as f, open(dst, "wb") as g:
            assert zerocopy.copyfileobj(f, g) == len(data)
        _result(t, box)
    assert dst.read_bytes() == data
    dst.unlink()


def op_pipe_file(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 2 * MiB), seed)
    dst = tmp / f"d{seed}"
    r, w = os.pipe()

    def feed() -> None:
        with open(w, "wb") as f:
            f.write(data)

    t, box = _background(feed)
    with open(r, "rb") as f, open(dst, "wb") as g:
        assert zerocopy.copyfileobj(f, g) == len(data)
    _result(t, box)
    assert dst.read_bytes() == data
    dst.unlink()


def op_send_file(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 3 * MiB), seed)
    src = tmp / f"s{seed}"
    src.write_bytes(data)
    a, b = tcp_pair() if seed % 2 else socket.socketpair()
    with a, b:
        t, box = _background(lambda: _recv_all(b))
        with open(src, "rb") as f:
            assert zerocopy.send_file(a, f) == len(data)
        a.shutdown(socket.SHUT_WR)
        assert _result(t, box) == data
    src.unlink()


def op_relay(tmp: Path, seed: int) -> None:
    rnd = random.Random(seed)
    up = random_bytes(rnd.randrange(0, 2 * MiB), seed)
    down = random_bytes(rnd.randrange(0, 2 * MiB), seed + 1)
    c, a = tcp_pair() if seed % 2 else socket.socketpair()
    b, s = socket.socketpair() if seed % 3 else tcp_pair()
    with a, b, c, s:
        helpers = [
            _background(lambda: _send_all(c, up)),
            _background(lambda: _recv_all(s)),
            _background(lambda: _send_all(s, down)),
            _background(lambda: _recv_all(c)),
        ]
        assert zerocopy.relay(a, b, timeout=30) == (len(up), len(down))
        results = [_result(t, box) for t, box in helpers]
    assert results[1] == up
    assert results[3] == down


def op_zerocopy_sender(tmp: Path, seed: int) -> None:
    data = random_bytes(random.Random(seed).randrange(1, 3 * MiB), seed)
    a, b = tcp_pair()
    with a, b:
        t, box = _background(lambda: _recv_all(b))
        with zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=bool(seed % 2)) as zc:
            zc.sendall(data)
        assert zc.pending == 0
        a.shutdown(socket.SHUT_WR)
        assert _result(t, box) == data


OPERATIONS: dict[str, Callable[[Path, int], None]] = {
    "file->file": op_file_file,
    "copyfile": op_copyfile,
    "file->socket": op_file_socket,
    "socket->file": op_socket_file,
    "pipe->file": op_pipe_file,
    "send_file": op_send_file,
    "relay": op_relay,
    "ZeroCopySender": op_zerocopy_sender,
}


def run_threads(work: Callable[[int], None], n: int = THREADS) -> None:
    """Start *n* threads at the same moment (a barrier) and re-raise the first failure."""
    barrier = threading.Barrier(n)

    def start(i: int) -> None:
        barrier.wait(30)
        work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        for future in [pool.submit(start, i) for i in range(n)]:
            future.result(timeout=120)


# --- the GIL is released while a call blocks -----------------------------------------------

SYSCALLS = {"splice": 275, "sendfile": 40, "vmsplice": 278, "tee": 276, "recvfrom": 45, "poll": 7}


def _syscall_of(tid: int) -> int | None:
    """The number of the system call thread *tid* is blocked in, or None if it is running."""
    try:
        with open(f"/proc/self/task/{tid}/syscall") as f:
            first = f.read().split()[0]
    except (FileNotFoundError, ProcessLookupError):  # the thread has ended
        return None
    return None if first == "running" or first.startswith("-") else int(first)


def _count_for(seconds: float) -> int:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def _blocked_in(t: threading.Thread, syscall: str, timeout: float = 5) -> None:
    """Wait (*timeout* seconds, scaled) until thread *t* is asleep in *syscall*."""
    deadline = time.monotonic() + scaled(timeout)
    assert t.native_id is not None
    while time.monotonic() < deadline:
        if _syscall_of(t.native_id) == SYSCALLS[syscall]:
            return
        time.sleep(0.005)
    raise AssertionError(f"thread never blocked in {syscall} (in {_syscall_of(t.native_id)})")


_SAFETY_NET = """
import os, socket, sys, time
time.sleep(float(sys.argv[2]))
action, fd = sys.argv[1], int(sys.argv[3])
if action == "write":
    os.write(fd, b"!")
elif action == "read":
    os.read(fd, 1 << 20)
else:
    socket.socket(fileno=fd).shutdown(socket.SHUT_WR)
"""


@contextlib.contextmanager
def safety_net(action: str, fd: int, after: float = 3.0) -> Iterator[None]:
    """A child process that unblocks the call after *after* s (scaled) if this process cannot.

    A call that held the GIL would stop every thread here, the unblocking one
    included: the test would hang instead of failing.  The child needs no GIL.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _SAFETY_NET, action, str(scaled(after)), str(fd)],
        pass_fds=(fd,),
    )
    try:
        yield
    finally:
        child.kill()
        child.wait()


class GilProbe:
    """Starts *block* in a thread, waits until it sits in *syscall*, counts, then *unblock*s."""

    def __init__(
        self,
        block: Callable[[], Any],
        syscall: str,
        unblock: Callable[[], None],
        net: tuple[str, int],
    ):
        self.block, self.syscall, self.unblock, self.net = block, syscall, unblock, net

    def run(self) -> tuple[int, int, Any]:
        baseline = _count_for(0.3)  # this thread alone, just before
        with safety_net(*self.net):
            t, box = _background(self.block)
            try:
                _blocked_in(t, self.syscall)
                during = _count_for(0.3)
                assert t.is_alive(), "the call returned before it was unblocked"
                assert not box
            finally:
                self.unblock()
            return baseline, during, _result(t, box, timeout=10)


def assert_progressed(baseline: int, during: int) -> None:
    # A held GIL would leave this thread at ~0.  Other processes share the two
    # CPUs, so the bar is a fraction of what this thread counted alone.
    assert during > 100_000, f"only {during} iterations in 0.3 s (baseline {baseline})"
    assert during > baseline // 5, f"{during} iterations in 0.3 s against {baseline} alone"

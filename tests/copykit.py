"""Helpers shared by the copy and low-level test files.

copyfileobj's tests (test_copy_*.py): Peers (the objects, files and threads of
one play), the reference copy and the observations compared with it, FailOnce
and inject (an errno on one low-level call), and the fd pairs of the fast paths.

The low-level calls' tests (test_lowlevel_*.py, test_sender_cparser.py): file,
pipe and socket fixtures, defined here under ``<name>_fixture`` and registered
as ``<name>`` (a test module imports the ones it uses), and the compiled module.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import tcp_pair
from zerocopy import _backend

KiB = 1024
MiB = 1024 * KiB
TAIL = b"<<later-write:51e0>>"
counter = itertools.count()


@functools.cache
def payload(size: int) -> bytes:
    """Deterministic random bytes: any reordering or loss shows."""
    return random.Random(size * 7919 + 1).randbytes(size)


# --- Peers: threads on the other end of pipes and sockets ----------------------


class Peers:
    """Objects, files and threads of one play; close() joins and closes everything."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.closers: list[Callable[[], object]] = []
        self.threads: list[threading.Thread] = []
        self.paths: list[Path] = []

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, stem: str, content: bytes | None = None) -> Path:
        p = self.tmp / f"{stem}-{next(counter)}"
        self.paths.append(p)
        if content is not None:
            p.write_bytes(content)
        return p

    def closing(self, obj: Any) -> Any:
        self.closers.append(obj.close)
        return obj

    def thread(self, target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        self.closers.clear()
        for t in self.threads:
            t.join(20)
        alive = [t for t in self.threads if t.is_alive()]
        for p in self.paths:
            p.unlink(missing_ok=True)
        assert not alive, f"peer threads still running: {alive}"

    # Sources -----------------------------------------------------------------

    def file(self, data: bytes, mode: str = "rb", **kw: Any) -> Any:
        return self.closing(open(self.path("src", data), mode, **kw))

    def pipe_source(self, data: bytes, buffering: int = -1, prefill: int = 0) -> Any:
        """A pipe's read end opened with open(fd, 'rb'); a thread writes *data* and closes."""
        r, w = os.pipe()
        if prefill:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 * MiB)
            _write_fully(w, data[:prefill])
            data = data[prefill:]

        def write() -> None:
            try:
                _write_fully(w, data)
            except OSError:
                pass
            finally:
                os.close(w)

        self.thread(write)
        return self.closing(open(r, "rb", buffering=buffering))

    def socket_source(self, data: bytes, buffering: int = -1, tcp: bool = False) -> Any:
        """A stream socket's makefile('rb'); a thread sends *data* and closes."""
        mine, peer = tcp_pair() if tcp else socket.socketpair()
        self.closing(mine)

        def send() -> None:
            try:
                peer.sendall(data)
                peer.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finally:
                peer.close()

        self.thread(send)
        return self.closing(mine.makefile("rb", buffering=buffering))

    # Destinations --------------------------------------------------------------

    def pipe_dest(self) -> tuple[Any, Callable[[], bytes]]:
        """A pipe's write end opened 'wb'; finish() closes it and returns what arrived."""
        r, w = os.pipe()
        sink: list[bytes] = []

        def read() -> None:
            try:
                while chunk := os.read(r, 256 * KiB):
                    sink.append(chunk)
            finally:
                os.close(r)

        t = self.thread(read)
        f = self.closing(open(w, "wb"))  # noqa: SIM115

        def finish() -> bytes:
            f.close()
            t.join(20)
            return b"".join(sink)

        return f, finish

    def socket_dest(self, tcp: bool = False) -> tuple[Any, Callable[[], bytes]]:
        """A socket's makefile('wb'); finish() closes it and returns what the peer got."""
        mine, peer = tcp_pair() if tcp else socket.socketpair()
        self.closing(mine)
        sink: list[bytes] = []

        def read() -> None:
            try:
                while chunk := peer.recv(256 * KiB):
                    sink.append(chunk)
            except OSError:
                pass
            finally:
                peer.close()

        t = self.thread(read)
        f = self.closing(mine.makefile("wb"))

        def finish() -> bytes:
            f.close()
            mine.close()
            t.join(20)
            return b"".join(sink)

        return f, finish

    def file_dest(
        self, mode: str = "wb", prefix: bytes = b"", **kw: Any
    ) -> tuple[Any, Callable[[], bytes]]:
        p = self.path("dst", prefix)
        f = self.closing(open(p, mode, **kw))  # noqa: SIM115

        def finish() -> bytes:
            f.close()
            return p.read_bytes()

        return f, finish


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exactly(f: Any, n: int) -> bytes:
    """Read up to *n* bytes from *f*, stopping early only at end of input."""
    parts = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def attempt(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What a call gives: its value, or the type (and errno) of what it raised."""
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raises", type(exc).__name__, getattr(exc, "errno", None))


def by_hand(count: int | None, length: int = 0) -> Callable[[Any, Any], int | None]:
    """The reference copy: shutil's without a count, else ``read(count)`` written by hand."""

    def copy(fsrc: Any, fdst: Any) -> int | None:
        if count is None:
            shutil.copyfileobj(fsrc, fdst, length)
            return None
        data = read_exactly(fsrc, count)
        fdst.write(data)
        return len(data)

    return copy


def with_zerocopy(
    count: int | None = None, length: int = 0, progress: Callable[[int], object] | None = None
) -> Callable[[Any, Any], int]:
    def copy(fsrc: Any, fdst: Any) -> int:
        return zerocopy.copyfileobj(fsrc, fdst, length, count=count, progress=progress)

    return copy


def observe(
    copy: Callable[[Any, Any], int | None], fsrc: Any, fdst: Any, finish: Callable[[], bytes]
) -> dict[str, Any]:
    """Copy, then record positions, a later read and write, and the destination's bytes."""
    before = attempt(lambda: fsrc.tell())
    returned = copy(fsrc, fdst)
    after = attempt(lambda: fsrc.tell())
    return {
        "returned": returned,
        "moved": after[1] - before[1] if after[0] == before[0] == "ok" else None,
        "src_tell": after,
        "src_rest": attempt(lambda: fsrc.read()),
        "dst_tell": attempt(lambda: fdst.tell()),
        "dst_write": attempt(lambda: fdst.write(TAIL)),
        "content": finish(),
    }


def assert_same(got: dict[str, Any], ref: dict[str, Any]) -> None:
    """zerocopy's observations equal the reference's; its return is the bytes moved."""
    assert got["content"] == ref["content"], (
        f"destination differs: {len(got['content'])} bytes vs {len(ref['content'])}"
    )
    for key in ("src_tell", "src_rest", "dst_tell", "dst_write"):
        assert got[key] == ref[key], key
    expected = ref["returned"] if ref["returned"] is not None else ref["moved"]
    if expected is not None:
        assert got["returned"] == expected


class FailOnce:
    """A stand-in for a low-level call: fails (or returns 0) on one call, else is the real one.

    *fail_on* is the 1-based call that fails (calls for which *when* says
    False pass through uncounted); the other calls go to the real function
    with their count capped at *cap*, so that a later failure comes after
    bytes really moved.  *result* is an errno to raise, or 0 to return.
    """

    def __init__(
        self,
        name: str,
        result: int,
        fail_on: int = 1,
        cap: int | None = None,
        when: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        self.real = getattr(_backend.current(), name)
        # sendfile(out_fd, in_fd, offset, count); the others (src, dst, count, ...)
        self.count_at = 3 if name == "sendfile" else 2
        self.result = result
        self.fail_on = fail_on
        self.cap = cap
        self.when = when
        self.calls = 0
        self.failed = False

    def __call__(self, *args: Any) -> int:
        if self.when is not None and not self.when(args[0], args[1]):
            return int(self.real(*args))
        self.calls += 1
        if self.calls == self.fail_on:
            self.failed = True
            if self.result == 0:
                return 0
            raise OSError(self.result, os.strerror(self.result))
        if self.cap is not None:
            capped = list(args)
            capped[self.count_at] = min(capped[self.count_at], self.cap)
            args = tuple(capped)
        return int(self.real(*args))


def inject(monkeypatch: pytest.MonkeyPatch, name: str, *args: Any, **kw: Any) -> FailOnce:
    """Replace the active backend's ``<name>`` with a FailOnce for this test."""
    stand_in = FailOnce(name, *args, **kw)
    monkeypatch.setattr(_backend.current(), name, stand_in)
    return stand_in


def always_fail(err: int) -> Callable[..., int]:
    def call(*args: Any) -> int:
        raise OSError(err, os.strerror(err))

    return call


def run_child(backend: ModuleType, script: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def make_pair(
    peers: Peers, src_kind: str, dst_kind: str, data: bytes
) -> tuple[Any, Any, Callable[[], bytes]]:
    if src_kind == "socket":
        fsrc = peers.socket_source(data)
    elif src_kind == "pipe":
        fsrc = peers.pipe_source(data)
    else:
        fsrc = peers.file(data)
        fsrc.seek(5)
        if src_kind == "pre-read":
            fsrc.read(11)
    if dst_kind == "socket":
        fdst, finish = peers.socket_dest()
    elif dst_kind == "pipe":
        fdst, finish = peers.pipe_dest()
    else:
        fdst, finish = peers.file_dest("r+b", prefix=b"Z" * 50)
        fdst.seek(20)
        fdst.write(b"unflushed")
    return fsrc, fdst, finish


def assert_arrived(content: bytes, dst_kind: str, expected: bytes) -> None:
    """A destination made by make_pair holds exactly *expected* after its own bytes."""
    if dst_kind == "file":
        head = b"Z" * 20 + b"unflushed"
        assert content[: len(head)] == head
        assert content[len(head) : len(head) + len(expected)] == expected
        assert len(content) == max(50, len(head) + len(expected))
    else:
        assert content == expected


# --- low-level calls: helpers and fixtures ------------------------------------

SIZE = 50_000  # below the default pipe capacity (64 KiB), not page aligned


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def pos(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def read_fd_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        assert chunk, f"EOF with {n} bytes still expected"
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def fionread(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(raw, sys.byteorder, signed=True)


def fill_pipe(w: int) -> int:
    """Write into pipe *w* until it is full; return the bytes written."""
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    total = 0
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    total += os.write(w, b"f" * size)
                except BlockingIOError:
                    break
    finally:
        fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return total


@pytest.fixture(name="src")
def src_fixture(tmp_path: Path) -> tuple[Path, bytes]:
    """A regular file holding SIZE random bytes, and those bytes."""
    data = random_bytes(SIZE)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture(name="src_fd")
def src_fd_fixture(src: tuple[Path, bytes]) -> Iterator[int]:
    """The source file, opened read-only."""
    fd = os.open(src[0], os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    _close(fd)


@pytest.fixture(name="dst")
def dst_fixture(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An empty destination file and a read-write fd on it."""
    path = tmp_path / "dst.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    yield path, fd
    _close(fd)


@pytest.fixture(name="appending")
def appending_fixture(tmp_path: Path) -> Iterator[int]:
    """A destination file opened with O_APPEND, already holding 3 bytes."""
    path = tmp_path / "append.bin"
    path.write_bytes(b"old")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    yield fd
    _close(fd)


@pytest.fixture(name="pipe")
def pipe_fixture() -> Iterator[tuple[int, int]]:
    """A pipe: (read end, write end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    _close(r, w)


@pytest.fixture(name="pipe2")
def pipe2_fixture() -> Iterator[tuple[int, int]]:
    """A second pipe: (read end, write end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    _close(r, w)


@pytest.fixture(name="sockpair")
def sockpair_fixture() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected AF_UNIX stream socket pair."""
    a, b = socket.socketpair()
    with a, b:
        yield a, b


@pytest.fixture(name="tcp")
def tcp_fixture() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair: (client, server side)."""
    client, server = tcp_pair()
    with client, server:
        yield client, server


def closed_fd() -> int:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


def load_compiled() -> ModuleType:
    """The compiled cffi module (whatever the current backend), or a skip."""
    try:
        _backend.load("cffi")
    except ImportError as exc:
        if os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail(f"the compiled module is required but does not load: {exc}")
        pytest.skip(f"the compiled module does not load here: {exc}")
    from zerocopy import _zerocopy_cffi

    return _zerocopy_cffi  # type: ignore[no-any-return]

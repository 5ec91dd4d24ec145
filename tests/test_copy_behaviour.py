"""copyfileobj, copyfile and patch_shutil: properties against shutil, odd
sources, the fallback chain under injected errnos, real failures, count and
progress, argument checks, fd hygiene, the method used, and copyfile's and
patch_shutil's contracts.

Every test that copies runs on both backends (the ``backend`` fixture).
Errnos are injected the way CPython's test_shutil does it: the low-level call
a fast path makes is replaced, for one test, by one that fails on its first
call.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zerocopy
from conftest import hang_guard
from zerocopy import _backend, _pipes

KiB = 1024
MiB = 1024 * KiB
TAIL = b"<<later-write:51e0>>"
_counter = itertools.count()


@functools.cache
def payload(size: int) -> bytes:
    """Deterministic random bytes: any reordering or loss shows."""
    return random.Random(size * 7919 + 1).randbytes(size)


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


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
        p = self.tmp / f"{stem}-{next(_counter)}"
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


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


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


def _always_fail(err: int) -> Callable[..., int]:
    def call(*args: Any) -> int:
        raise OSError(err, os.strerror(err))

    return call


# --- Hypothesis properties -----------------------------------------------------

_FUNCTION_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_SIZES = st.one_of(st.integers(0, 300), st.integers(0, 150_000))
_LENGTHS = st.sampled_from([0, 3, 4096, 65537, -1])


def _open_file_source(peers: Peers, data: bytes, mode: str, start: int, pre: int) -> Any:
    """A file source at *start* with *pre* bytes read (and, "r+b-dirty", unflushed writes)."""
    if mode == "fileio":
        f = peers.file(data, "rb", buffering=0)
    else:
        f = peers.file(data, "r+b" if mode.startswith("r+b") else mode)
    f.seek(start)
    if mode == "r+b-dirty":
        f.write(b"dirty")  # held in the buffer: a copy must see it written first
    f.read(pre)
    return f


def _open_dest(
    peers: Peers, kind: str, prefix: int, offset: int, unflushed: bytes
) -> tuple[Any, Callable[[], bytes]]:
    if kind == "pipe":
        f, finish = peers.pipe_dest()
    elif kind == "socket":
        f, finish = peers.socket_dest()
    elif kind == "r+b":
        f, finish = peers.file_dest("r+b", prefix=b"P" * prefix)
        f.seek(offset)
    elif kind == "r+b-preread":
        # A read buffer in the destination object: stale once the kernel wrote.
        f, finish = peers.file_dest("r+b", prefix=b"P" * prefix)
        f.seek(offset)
        f.read(7)
    elif kind == "fileio":
        f, finish = peers.file_dest("wb", buffering=0)
        f.seek(offset)
    else:
        f, finish = peers.file_dest("wb")
        f.seek(offset)
    f.write(unflushed)  # a buffered writer holds these: they must come first
    return f, finish


class TestProperties:
    """Random data, positions, buffered state, count and length: same as the reference."""

    @_FUNCTION_FIXTURES
    @given(
        size=_SIZES,
        start=st.integers(0, 200_000),
        pre=st.integers(0, 20_000),
        src_mode=st.sampled_from(["rb", "fileio", "r+b", "r+b-dirty"]),
        dst_kind=st.sampled_from(["wb", "fileio", "r+b", "r+b-preread", "pipe", "socket"]),
        prefix=st.integers(0, 10_000),
        offset=st.integers(0, 12_000),
        unflushed=st.binary(max_size=64),
        length=_LENGTHS,
        count=st.none() | st.integers(0, 200_000),
    )
    def test_file_source(
        self,
        backend: ModuleType,
        tmp_path: Path,
        size: int,
        start: int,
        pre: int,
        src_mode: str,
        dst_kind: str,
        prefix: int,
        offset: int,
        unflushed: bytes,
        length: int,
        count: int | None,
    ) -> None:
        """A file source (any start, read-ahead) to any destination (unflushed bytes, offset)."""
        data = payload(size)
        start = min(start, size + 8)
        plays = []
        for copy in (by_hand(count, length), with_zerocopy(count, length)):
            with Peers(tmp_path) as peers:
                fsrc = _open_file_source(peers, data, src_mode, start, pre)
                fdst, finish = _open_dest(peers, dst_kind, prefix, offset, unflushed)
                plays.append(observe(copy, fsrc, fdst, finish))
        assert_same(plays[1], plays[0])

    @_FUNCTION_FIXTURES
    @given(
        size=_SIZES,
        pre=st.integers(0, 9_000),
        kind=st.sampled_from(["pipe", "pipe-raw", "socket", "socket-raw"]),
        dst_kind=st.sampled_from(["wb", "r+b", "pipe", "socket"]),
        offset=st.integers(0, 300),
        unflushed=st.binary(max_size=64),
        length=_LENGTHS,
        count=st.none() | st.integers(0, 200_000),
    )
    def test_stream_source(
        self,
        backend: ModuleType,
        tmp_path: Path,
        size: int,
        pre: int,
        kind: str,
        dst_kind: str,
        offset: int,
        unflushed: bytes,
        length: int,
        count: int | None,
    ) -> None:
        """A pipe or socket source (buffered with read-ahead, or raw) to any destination."""
        data = payload(size)
        buffering = 0 if kind.endswith("raw") else -1
        plays = []
        consumed = 0
        for copy in (by_hand(count, length), with_zerocopy(count, length)):
            with Peers(tmp_path) as peers:
                if kind.startswith("pipe"):
                    fsrc = peers.pipe_source(data, buffering)
                else:
                    fsrc = peers.socket_source(data, buffering)
                consumed = len(read_exactly(fsrc, pre)) if buffering else 0
                fdst, finish = _open_dest(peers, dst_kind, 100, offset, unflushed)
                plays.append(observe(copy, fsrc, fdst, finish))
        # Streams have no position: compare what reached the destination, what
        # is left to read, the destination's position and the return value.
        got, ref = plays[1], plays[0]
        assert got["content"] == ref["content"]
        assert got["src_rest"] == ref["src_rest"]
        assert got["dst_tell"] == ref["dst_tell"]
        assert got["dst_write"] == ref["dst_write"]
        if ref["returned"] is not None:
            assert got["returned"] == ref["returned"]
        else:
            assert got["returned"] == len(data) - consumed

    @_FUNCTION_FIXTURES
    @given(
        size=_SIZES,
        length=_LENGTHS,
        count=st.none() | st.integers(0, 200_000),
        kind=st.sampled_from(["file", "user", "pipe"]),
    )
    def test_progress_totals(
        self,
        backend: ModuleType,
        tmp_path: Path,
        size: int,
        length: int,
        count: int | None,
        kind: str,
    ) -> None:
        """progress sees non-decreasing totals, the last equal to the return value."""
        data = payload(size)
        seen: list[int] = []
        with Peers(tmp_path) as peers:
            if kind == "file":
                fsrc = peers.file(data)
            elif kind == "pipe":
                fsrc = peers.pipe_source(data)
            else:
                fsrc = io.BytesIO(data)
            fdst, finish = peers.file_dest()
            n = zerocopy.copyfileobj(fsrc, fdst, length, count=count, progress=seen.append)
            content = finish()
        expected = data if count is None else data[:count]
        assert content == expected
        assert n == len(expected)
        assert seen, "progress was never called"
        assert seen == sorted(seen)
        assert seen[-1] == n
        assert all(0 <= x <= n for x in seen)


# --- Odd sources -----------------------------------------------------------------


def _copy_path_both(backend: ModuleType, path: str, tmp_path: Path) -> tuple[bytes, bytes, int]:
    refp, gotp = tmp_path / "ref", tmp_path / "got"
    with open(path, "rb") as fsrc, open(refp, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst)
    with open(path, "rb") as fsrc, open(gotp, "wb") as fdst:
        n = zerocopy.copyfileobj(fsrc, fdst)
    return refp.read_bytes(), gotp.read_bytes(), n


class TestPseudoFiles:
    """procfs and sysfs files report a size that is not their content's."""

    @pytest.mark.parametrize("path", ["/proc/version", "/proc/self/cmdline"])
    def test_procfs_same_as_shutil(self, backend: ModuleType, tmp_path: Path, path: str) -> None:
        """A procfs file (size 0 in stat) copies in full, by the readinto fallback."""
        ref, got, n = _copy_path_both(backend, path, tmp_path)
        assert got == ref
        assert n == len(ref) > 0
        assert zerocopy.last_method() == "readinto"

    def test_procfs_status_same_fields(self, backend: ModuleType, tmp_path: Path) -> None:
        """/proc/self/status, whose values change between reads, copies every field."""
        ref, got, n = _copy_path_both(backend, "/proc/self/status", tmp_path)

        def fields(b: bytes) -> list[bytes]:
            return [line.split(b":")[0] for line in b.splitlines()]

        assert n == len(got) > 0
        assert fields(got) == fields(ref)
        assert got.endswith(b"\n")
        assert zerocopy.last_method() == "readinto"

    @pytest.mark.parametrize(
        "path", ["/sys/kernel/mm/transparent_hugepage/enabled", "/sys/devices/system/cpu/online"]
    )
    def test_sysfs_same_as_shutil(self, backend: ModuleType, tmp_path: Path, path: str) -> None:
        """A sysfs file (size 4096 in stat) copies its real content, not 4096 bytes."""
        if not os.path.exists(path):
            pytest.skip(f"{path} does not exist on this kernel")
        ref, got, n = _copy_path_both(backend, path, tmp_path)
        assert got == ref
        assert n == len(ref) < os.stat(path).st_size
        # Under 64 KiB by its stat size: copied through the objects, read to EOF.
        assert zerocopy.last_method() == "readinto"

    def test_zero_on_first_call_falls_back(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """copy_file_range moving 0 bytes on its first call hands over to sendfile."""
        data = payload(100_000)
        stand_in = inject(monkeypatch, "copy_file_range", 0)
        with Peers(tmp_path) as peers:
            fsrc = peers.file(data)
            fdst, finish = peers.file_dest()
            n = zerocopy.copyfileobj(fsrc, fdst)
            assert fsrc.tell() == len(data)
            assert fdst.tell() == len(data)
            assert finish() == data
        assert stand_in.failed
        assert n == len(data)
        assert zerocopy.last_method() == "sendfile"

    def test_cross_filesystem_falls_back(self, backend: ModuleType, tmp_path: Path) -> None:
        """tmpfs to ext4: copy_file_range says EXDEV, sendfile copies the same bytes."""
        data = payload(300_000)
        src = Path("/dev/shm") / f"zerocopy-test-{os.getpid()}-{next(_counter)}"
        src.write_bytes(data)
        try:
            with open(src, "rb") as fsrc, open(tmp_path / "dst", "wb") as fdst:
                n = zerocopy.copyfileobj(fsrc, fdst)
        finally:
            src.unlink()
        assert (tmp_path / "dst").read_bytes() == data
        assert n == len(data)
        assert zerocopy.last_method() == "sendfile"

    def test_character_device_source_with_count(self, backend: ModuleType, tmp_path: Path) -> None:
        """/dev/zero, endless, copies exactly count bytes."""
        with open("/dev/zero", "rb") as fsrc, open(tmp_path / "dst", "wb") as fdst:
            n = zerocopy.copyfileobj(fsrc, fdst, count=MiB + 3)
        assert n == MiB + 3
        assert (tmp_path / "dst").read_bytes() == bytes(MiB + 3)


class TestEmpty:
    """Nothing to copy."""

    @pytest.mark.parametrize("kind", ["rb", "fileio", "pipe", "socket", "bytesio"])
    def test_empty_source(self, backend: ModuleType, tmp_path: Path, kind: str) -> None:
        """An empty source copies 0 bytes and leaves the destination as shutil does."""
        plays = []
        for copy in (by_hand(None), with_zerocopy()):
            with Peers(tmp_path) as peers:
                if kind == "pipe":
                    fsrc = peers.pipe_source(b"")
                elif kind == "socket":
                    fsrc = peers.socket_source(b"")
                elif kind == "bytesio":
                    fsrc = io.BytesIO()
                else:
                    fsrc = peers.file(b"", buffering=0 if kind == "fileio" else -1)
                fdst, finish = peers.file_dest("r+b", prefix=b"keep")
                fdst.seek(2)
                plays.append(observe(copy, fsrc, fdst, finish))
        assert plays[1]["returned"] == 0
        assert plays[1]["content"] == plays[0]["content"] == b"ke" + TAIL
        assert_same(plays[1], plays[0])

    @pytest.mark.parametrize("kind", ["file", "pipe"])
    def test_last_method_names_the_path(
        self, backend: ModuleType, tmp_path: Path, kind: str
    ) -> None:
        """An empty source still reports the path that found it empty; only count=0 is "none"."""
        with Peers(tmp_path) as peers:
            fsrc = peers.file(b"") if kind == "file" else peers.pipe_source(b"")
            fdst, _ = peers.file_dest()
            assert zerocopy.copyfileobj(fsrc, fdst) == 0
            assert zerocopy.last_method() == "readinto"
            assert zerocopy.copyfileobj(fsrc, fdst, count=0) == 0
            assert zerocopy.last_method() == "none"


class TestChangingSource:
    """A source file that shrinks or grows while it is copied."""

    @pytest.fixture
    def small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Real copy_file_range and sendfile calls, 64 KiB at a time (fail_on=0:
        # never fails), so the copy has many chunks and progress runs between.
        for name in ("copy_file_range", "sendfile"):
            inject(monkeypatch, name, errno.EINVAL, fail_on=0, cap=64 * KiB)

    @pytest.mark.parametrize("new_size", [0, 10_000, 64 * KiB, 300_000])
    @pytest.mark.parametrize("dst_kind", ["file", "pipe"])
    def test_truncated_during_copy(
        self,
        backend: ModuleType,
        tmp_path: Path,
        small_chunks: None,
        new_size: int,
        dst_kind: str,
    ) -> None:
        """Truncation after the first chunk: the copy stops at what was still there."""
        data = payload(1 * MiB)
        with Peers(tmp_path) as peers:
            fsrc = peers.file(data)
            fdst, finish = peers.file_dest() if dst_kind == "file" else peers.pipe_dest()
            done: list[int] = []

            def shrink(total: int) -> None:
                if not done:
                    done.append(total)
                    os.truncate(fsrc.name, new_size)

            n = zerocopy.copyfileobj(fsrc, fdst, progress=shrink)
            assert fsrc.tell() == n
            content = finish()
        assert done == [64 * KiB]
        assert n == max(new_size, done[0])
        assert len(content) == n
        if dst_kind == "file":
            assert content == data[:n]
        else:
            # Sent pages are references (design, "Known pitfalls"): bytes that sat
            # in the pipe when the file shrank may read back as zeros.
            assert content[:new_size] == data[: min(n, new_size)]

    @pytest.mark.parametrize("dst_kind", ["file", "socket"])
    def test_grown_during_copy(
        self, backend: ModuleType, tmp_path: Path, small_chunks: None, dst_kind: str
    ) -> None:
        """Growth after the first chunk: the copy takes the new bytes too, as a read loop would."""
        data, extra = payload(300_000), payload(77_777)
        with Peers(tmp_path) as peers:
            fsrc = peers.file(data)
            fdst, finish = peers.file_dest() if dst_kind == "file" else peers.socket_dest()
            done: list[int] = []

            def grow(total: int) -> None:
                if not done:
                    done.append(total)
                    with open(fsrc.name, "ab") as appender:
                        appender.write(extra)

            n = zerocopy.copyfileobj(fsrc, fdst, progress=grow)
            assert fsrc.tell() == n
            content = finish()
        assert n == len(data) + len(extra)
        assert content == data + extra

    @pytest.mark.parametrize("path", ["copy_file_range", "sendfile", "readinto"])
    def test_concurrent_writer_no_hang(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
    ) -> None:
        """A thread truncating and regrowing the source meanwhile: every copy ends, consistent."""
        if path != "copy_file_range":
            monkeypatch.setattr(_backend.current(), "copy_file_range", _always_fail(errno.EXDEV))
        if path == "readinto":
            monkeypatch.setattr(_backend.current(), "sendfile", _always_fail(errno.EINVAL))
        data = payload(4 * MiB)
        src = tmp_path / "changing"
        src.write_bytes(data)
        stop = threading.Event()

        def churn() -> None:
            rnd = random.Random(5)
            fd = os.open(src, os.O_WRONLY)
            try:
                while not stop.is_set():
                    k = rnd.randrange(len(data))
                    os.truncate(fd, k)
                    os.pwrite(fd, data[k:], k)
            finally:
                os.close(fd)

        t = threading.Thread(target=churn, daemon=True)
        t.start()
        try:
            for i in range(8):
                dst = tmp_path / f"out{i}"
                with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
                    n = zerocopy.copyfileobj(fsrc, fdst)
                    assert fsrc.tell() == n
                assert 0 <= n <= len(data)
                assert dst.stat().st_size == n
                dst.unlink()
        finally:
            stop.set()
            t.join(20)
        assert not t.is_alive()


class TestAppendAfterOpen:
    """O_APPEND set with fcntl after the destination was opened."""

    @pytest.mark.parametrize("src_kind", ["file", "pre-read", "pipe", "socket"])
    @pytest.mark.parametrize("size", [1, 100_000])
    def test_appended_like_shutil(
        self, backend: ModuleType, tmp_path: Path, src_kind: str, size: int
    ) -> None:
        """Bytes land at the end, as with shutil, and positions match."""
        data = payload(size)
        plays = []
        for copy in (by_hand(None), with_zerocopy()):
            with Peers(tmp_path) as peers:
                if src_kind == "pipe":
                    fsrc = peers.pipe_source(data)
                elif src_kind == "socket":
                    fsrc = peers.socket_source(data)
                else:
                    fsrc = peers.file(data)
                    if src_kind == "pre-read":
                        fsrc.read(3)
                fdst, finish = peers.file_dest("r+b", prefix=b"Q" * 5000)
                fdst.seek(10)
                flags = fcntl.fcntl(fdst.fileno(), fcntl.F_GETFL)
                fcntl.fcntl(fdst.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
                plays.append(observe(copy, fsrc, fdst, finish))
        if src_kind in ("pipe", "socket"):
            plays[0]["moved"] = len(data)
        assert_same(plays[1], plays[0])
        assert plays[1]["content"].startswith(b"Q" * 5000)


class Runaway(Exception):
    """shutil's copy of a file onto itself did not end."""


class Guarded:
    """Forwards read() to a file; raises Runaway once far more than the file was read.

    A copy of a file onto itself that ends reads the file once plus less than
    a chunk of its own output, in a few dozen reads at most; one that feeds
    itself goes on for ever.
    """

    def __init__(self, f: Any, budget: int) -> None:
        self.f = f
        self.budget = budget
        self.total = 0
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.total += len(data)
        self.reads += 1
        if self.total > self.budget or self.reads > 2_000:
            raise Runaway
        return data


#: (file size, source position, destination position) of a file copied onto itself.
SELF_COPIES = [
    (100, 10, 0),
    (100, 0, 10),
    (5000, 0, 10),
    (5000, 10, 0),
    (5000, 0, 5000),
    (3 * MiB, 10, 0),
    (3 * MiB, 0, 10),
    (3 * MiB, 0, 5000),
]


class TestSelfCopy:
    """A file copied onto itself through two objects."""

    @pytest.mark.parametrize(
        ("size", "src_at", "dst_at"),
        SELF_COPIES,
        ids=[f"size{n}-src@{a}-dst@{b}" for n, a, b in SELF_COPIES],
    )
    @pytest.mark.parametrize("dst_buffering", [-1, 0], ids=["buffered-dst", "raw-dst"])
    @pytest.mark.parametrize("length", [0, -1], ids=["len0", "len-1"])
    def test_terminates_and_matches_shutil(
        self,
        backend: ModuleType,
        tmp_path: Path,
        size: int,
        src_at: int,
        dst_at: int,
        dst_buffering: int,
        length: int,
    ) -> None:
        """The copy ends; where shutil's ends too, the file and positions are shutil's."""
        data = payload(size)
        results = []
        for use_zerocopy in (False, True):
            p = tmp_path / f"self-{use_zerocopy}"
            p.write_bytes(data)
            with open(p, "rb") as fsrc, open(p, "r+b", buffering=dst_buffering) as fdst:
                fsrc.seek(src_at)
                fdst.seek(dst_at)
                if use_zerocopy:
                    moved: Any = zerocopy.copyfileobj(fsrc, fdst, length)
                else:
                    guard = Guarded(fsrc, size + 256 * KiB)
                    try:
                        shutil.copyfileobj(guard, fdst, length)
                        moved = guard.total
                    except Runaway:
                        moved = "runaway"
                positions = (fsrc.tell(), fdst.tell())
            results.append((moved, positions, p.read_bytes()))
            p.unlink()
        (ref_moved, ref_pos, ref_bytes), (moved, pos, content) = results
        if ref_moved == "runaway":
            # shutil never ends here; zerocopy stops a few chunks past what
            # was there at the start (its guard), having copied faithfully.
            guard = size - src_at + 4 * max(length, 64 * KiB) + MiB
            assert size - src_at <= moved <= guard
            assert len(content) == max(size, dst_at + moved)
        else:
            assert moved == ref_moved
            assert pos == ref_pos
            assert content == ref_bytes

    def test_append_to_itself_terminates(self, backend: ModuleType, tmp_path: Path) -> None:
        """A file copied onto its own 'ab' object ends instead of growing forever."""
        size = 3 * MiB
        script = textwrap.dedent(
            f"""
            import json, os, resource, sys, zerocopy
            p = sys.argv[1]
            with open(p, "wb") as f:
                f.write(os.urandom({size}))
            # Runaway growth ends in EFBIG at 4x the size, not in a full disk.
            resource.setrlimit(resource.RLIMIT_FSIZE, ({4 * size}, resource.RLIM_INFINITY))
            try:
                with open(p, "rb") as fsrc, open(p, "ab") as fdst:
                    out = {{"returned": zerocopy.copyfileobj(fsrc, fdst)}}
            except OSError as exc:
                out = {{"errno": exc.errno, "bytes_transferred": exc.bytes_transferred}}
            out["size"] = os.path.getsize(p)
            print(json.dumps(out))
            """
        )
        out = _run_child(backend, script, str(tmp_path / "self"))
        assert out == {"returned": size, "size": 2 * size}, (
            f"copying a file onto its own append object ran away: {out}"
        )


def _run_child(backend: ModuleType, script: str, *args: str) -> dict[str, Any]:
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


# --- The fallback chain ------------------------------------------------------------

FALLBACK_ERRNOS = sorted(
    {
        errno.EINVAL,
        errno.ENOSYS,
        errno.EXDEV,
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
        errno.EPERM,
        errno.EBADF,
        errno.ENODATA,
        errno.EIO,
    }
)


def _is_fifo(fd: Any) -> bool:
    return stat.S_ISFIFO(os.fstat(fd if isinstance(fd, int) else fd.fileno()).st_mode)


#: name -> (source kind, destination kind, call to break, only calls where, method after)
FAST_PATHS: dict[str, tuple[str, str, str, Callable[..., bool] | None, str]] = {
    "file->file:copy_file_range": ("file", "file", "copy_file_range", None, "sendfile"),
    "file->file:sendfile-too": ("file", "file", "sendfile", None, "readinto"),
    "file->socket:sendfile": ("file", "socket", "sendfile", None, "readinto"),
    "file->pipe:sendfile": ("file", "pipe", "sendfile", None, "readinto"),
    "socket->file:splice-in": ("socket", "file", "splice", None, "readinto"),
    "socket->file:splice-out": ("socket", "file", "splice", lambda a, b: _is_fifo(a), "readinto"),
    "socket->socket:splice-in": ("socket", "socket", "splice", None, "readinto"),
    "pipe->file:splice": ("pipe", "file", "splice", None, "readinto"),
    "pipe->socket:splice": ("pipe", "socket", "splice", None, "readinto"),
    "file-preread->file:copy_file_range": ("pre-read", "file", "copy_file_range", None, "sendfile"),
}


def _make_pair(
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
    """A destination made by _make_pair holds exactly *expected* after its own bytes."""
    if dst_kind == "file":
        head = b"Z" * 20 + b"unflushed"
        assert content[: len(head)] == head
        assert content[len(head) : len(head) + len(expected)] == expected
        assert len(content) == max(50, len(head) + len(expected))
    else:
        assert content == expected


def _break_also_cfr(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # To reach sendfile on file->file, copy_file_range has to give up first.
    if path == "file->file:sendfile-too":
        monkeypatch.setattr(_backend.current(), "copy_file_range", _always_fail(errno.EXDEV))


class TestFallback:
    """Every "not supported here" errno on every fast path's first call falls back cleanly."""

    @pytest.mark.parametrize("err", FALLBACK_ERRNOS, ids=errno.errorcode.get)
    @pytest.mark.parametrize("path", list(FAST_PATHS))
    def test_errno_on_first_call(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        path: str,
        err: int,
    ) -> None:
        """The copy still gives shutil's result, and last_method() names the fallback."""
        src_kind, dst_kind, call, when, after = FAST_PATHS[path]
        data = payload(200_001)
        with Peers(tmp_path) as peers:
            ref = observe(by_hand(None), *_make_pair(peers, src_kind, dst_kind, data))
        _break_also_cfr(monkeypatch, path)
        stand_in = inject(monkeypatch, call, err, when=when)
        with Peers(tmp_path) as peers:
            got = observe(with_zerocopy(), *_make_pair(peers, src_kind, dst_kind, data))
        assert stand_in.failed, f"{call} was never called on this path"
        if src_kind in ("socket", "pipe"):
            ref["moved"] = len(data)
        assert_same(got, ref)
        assert zerocopy.last_method() == after

    # Not splice: there 0 means end of input, not "unsupported".
    @pytest.mark.parametrize("path", [p for p, v in FAST_PATHS.items() if v[2] != "splice"])
    def test_zero_on_first_call(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
    ) -> None:
        """A first copy_file_range/sendfile call moving 0 bytes falls back too."""
        src_kind, dst_kind, call, when, after = FAST_PATHS[path]
        data = payload(200_001)
        with Peers(tmp_path) as peers:
            ref = observe(by_hand(None), *_make_pair(peers, src_kind, dst_kind, data))
        _break_also_cfr(monkeypatch, path)
        stand_in = inject(monkeypatch, call, 0, when=when)
        with Peers(tmp_path) as peers:
            got = observe(with_zerocopy(), *_make_pair(peers, src_kind, dst_kind, data))
        assert stand_in.failed
        assert_same(got, ref)
        assert zerocopy.last_method() == after

    @pytest.mark.parametrize(
        "err", [errno.EINVAL, errno.EXDEV, errno.EBADF], ids=errno.errorcode.get
    )
    @pytest.mark.parametrize(
        "path",
        [
            "file->file:copy_file_range",
            "file->socket:sendfile",
            "file->pipe:sendfile",
            "socket->file:splice-in",
            "socket->file:splice-out",
            "pipe->file:splice",
        ],
    )
    def test_no_fallback_after_first_byte(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        path: str,
        err: int,
    ) -> None:
        """A fallback errno after bytes moved is a real failure, with the exact count moved."""
        src_kind, dst_kind, call, when, _ = FAST_PATHS[path]
        data = payload(200_001)
        # The calls before the failing one move at most 4 KiB each (the socket
        # path's first two go into and out of the pooled pipe).
        fail_on = 3 if path == "socket->file:splice-in" else 2
        stand_in = inject(monkeypatch, call, err, fail_on=fail_on, cap=4096, when=when)
        with Peers(tmp_path) as peers:
            fsrc, fdst, finish = _make_pair(peers, src_kind, dst_kind, data)
            start = fsrc.tell() if src_kind == "file" else 0
            with pytest.raises(OSError, match=os.strerror(err)) as info:
                zerocopy.copyfileobj(fsrc, fdst)
            if src_kind == "file":
                # The source stands right after the bytes that reached the destination.
                assert fsrc.tell() == start + info.value.bytes_transferred
            content = finish()
        assert stand_in.failed
        assert type(info.value) is type(OSError(err, "x"))
        assert info.value.errno == err
        moved = info.value.bytes_transferred
        if src_kind == "file":
            assert moved == 4096
        assert 0 < moved < len(data)
        assert_arrived(content, dst_kind, data[start : start + moved])


# --- Real failures ----------------------------------------------------------------


class TestRealFailures:
    """Errors that are not "unsupported" propagate, with bytes_transferred."""

    @pytest.mark.parametrize(
        ("path", "err"),
        [
            ("file->file:copy_file_range", errno.ENOSPC),
            ("file->file:copy_file_range", errno.EFBIG),
            ("file->socket:sendfile", errno.EPIPE),
            ("file->socket:sendfile", errno.ECONNRESET),
            ("file->pipe:sendfile", errno.ENOSPC),
            ("socket->file:splice-in", errno.ECONNRESET),
            ("socket->file:splice-out", errno.ENOSPC),
            ("pipe->file:splice", errno.ENOSPC),
            ("file-preread->file:copy_file_range", errno.ENOSPC),
        ],
        ids=lambda v: errno.errorcode.get(v, v) if isinstance(v, int) else v,
    )
    def test_injected_on_first_call(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        path: str,
        err: int,
    ) -> None:
        """Raised as the errno's own OSError subclass, bytes_transferred counting what arrived."""
        src_kind, dst_kind, call, when, _ = FAST_PATHS[path]
        data = payload(200_001)
        inject(monkeypatch, call, err, when=when)
        with Peers(tmp_path) as peers:
            fsrc, fdst, finish = _make_pair(peers, src_kind, dst_kind, data)
            start = {"file": 5, "pre-read": 16}.get(src_kind, 0)
            with pytest.raises(OSError, match=os.strerror(err)) as info:
                zerocopy.copyfileobj(fsrc, fdst)
            content = finish()
        exc = info.value
        assert type(exc) is type(OSError(err, "x"))
        assert exc.errno == err
        moved = exc.bytes_transferred  # type: ignore[attr-defined]
        if src_kind == "file":
            assert moved == 0
        elif src_kind == "pre-read":
            assert moved > 0  # the reader's read-ahead was written before the kernel call
        assert_arrived(content, dst_kind, data[start : start + moved])

    def test_broken_pipe(self, backend: ModuleType, tmp_path: Path) -> None:
        """A pipe whose reader is gone: BrokenPipeError as with shutil, nothing transferred."""
        data = payload(1 * MiB)
        kinds = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            with Peers(tmp_path) as peers:
                fsrc = peers.file(data)
                r, w = os.pipe()
                os.close(r)
                fdst = peers.closing(open(w, "wb"))  # noqa: SIM115
                with pytest.raises(BrokenPipeError) as info:
                    copy(fsrc, fdst)
                kinds.append(type(info.value))
        assert kinds == [BrokenPipeError, BrokenPipeError]
        assert info.value.bytes_transferred == 0  # type: ignore[attr-defined]

    def test_broken_pipe_part_way(self, backend: ModuleType, tmp_path: Path) -> None:
        """A reader leaving after 100 kB: BrokenPipeError, bytes_transferred covers what it got."""
        data = payload(4 * MiB)
        with Peers(tmp_path) as peers:
            fsrc = peers.file(data)
            r, w = os.pipe()
            got: list[bytes] = []

            def read_some() -> None:
                try:
                    got.append(read_exactly(io.FileIO(r, closefd=False), 100_000))
                finally:
                    os.close(r)

            t = peers.thread(read_some)
            fdst = peers.closing(open(w, "wb"))  # noqa: SIM115
            with pytest.raises(BrokenPipeError) as info:
                zerocopy.copyfileobj(fsrc, fdst)
            t.join(20)
        moved = info.value.bytes_transferred  # type: ignore[attr-defined]
        assert got == [data[:100_000]]
        assert 100_000 <= moved < len(data)

    def test_connection_reset(self, backend: ModuleType, tmp_path: Path) -> None:
        """A TCP peer that resets: a ConnectionError as with shutil, with bytes_transferred."""
        data = payload(8 * MiB)
        raised = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            with Peers(tmp_path) as peers:
                fsrc = peers.file(data)
                mine, peer = tcp_pair()
                peers.closing(mine)
                fdst = peers.closing(mine.makefile("wb"))
                # Closing with unread data and a zero linger sends a reset.
                mine.sendall(b"x")
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()
                with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                    copy(fsrc, fdst)
                raised.append(info.value)
        assert all(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in raised), raised
        assert 0 <= raised[1].bytes_transferred < len(data)  # type: ignore[attr-defined]

    @pytest.mark.parametrize("src_kind", ["file", "pipe", "socket"])
    def test_efbig_exact_count(self, backend: ModuleType, tmp_path: Path, src_kind: str) -> None:
        """RLIMIT_FSIZE stops the copy: EFBIG as with shutil, bytes_transferred exact."""
        script = textwrap.dedent(
            """
            import json, os, resource, shutil, socket, sys, threading, zerocopy
            src_kind, dst, = sys.argv[1:]
            data = os.urandom(2_000_000)
            LIMIT, START = 700_001, 1_000

            def source():
                if src_kind == "file":
                    with open(dst + ".src", "wb") as f:
                        f.write(data)
                    return open(dst + ".src", "rb"), None
                if src_kind == "pipe":
                    r, w = os.pipe()
                    def feed():
                        try:
                            os.write(w, data)
                        except OSError:
                            pass
                        finally:
                            os.close(w)
                    t = threading.Thread(target=feed)
                    t.start()
                    return open(r, "rb"), t
                a, b = socket.socketpair()
                def feed():
                    try:
                        b.sendall(data)
                    except OSError:
                        pass
                    finally:
                        b.close()
                t = threading.Thread(target=feed)
                t.start()
                f = a.makefile("rb")
                a.close()
                return f, t

            out = {}
            for name, copy in (("shutil", shutil.copyfileobj), ("zerocopy", zerocopy.copyfileobj)):
                with open(dst, "wb") as f:
                    f.write(b"S" * START)
                fsrc, feeder = source()
                resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
                fdst = open(dst, "r+b")
                fdst.seek(START)
                try:
                    copy(fsrc, fdst)
                    res = {"exc": None}
                except OSError as exc:
                    res = {"exc": type(exc).__name__, "errno": exc.errno,
                           "bytes_transferred": getattr(exc, "bytes_transferred", None)}
                try:
                    fdst.close()
                except OSError:
                    pass
                resource.setrlimit(resource.RLIMIT_FSIZE,
                                   (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                fsrc.close()
                if feeder is not None:
                    feeder.join(30)
                res["size"] = os.path.getsize(dst)
                with open(dst, "rb") as f:
                    res["intact"] = f.read()[START:] == data[: res["size"] - START]
                out[name] = res
            print(json.dumps(out))
            """
        )
        out = _run_child(backend, script, src_kind, str(tmp_path / "efbig"))
        ref, got = out["shutil"], out["zerocopy"]
        assert ref["exc"] == got["exc"] == "OSError"
        assert ref["errno"] == got["errno"] == errno.EFBIG
        assert got["size"] == 700_001
        assert got["bytes_transferred"] == 700_001 - 1_000
        assert got["intact"]


# --- count, progress, arguments --------------------------------------------------


class TestCountAndProgress:
    """count limits the copy; progress reports it."""

    @pytest.mark.parametrize("kind", ["file", "pre-read", "pipe", "socket", "bytesio", "user"])
    @pytest.mark.parametrize("count", [0, 1, 5000, 100_000, 10**9])
    def test_count(self, backend: ModuleType, tmp_path: Path, kind: str, count: int) -> None:
        """Exactly min(count, available) bytes move; the rest stays readable in the source."""
        data = payload(100_000)
        with Peers(tmp_path) as peers:
            if kind == "pipe":
                fsrc: Any = peers.pipe_source(data)
            elif kind == "socket":
                fsrc = peers.socket_source(data)
            elif kind == "bytesio":
                fsrc = io.BytesIO(data)
            elif kind == "user":
                fsrc = _UserSource(data)
            else:
                fsrc = peers.file(data)
                if kind == "pre-read":
                    fsrc.read(10)
            skip = 10 if kind == "pre-read" else 0
            fdst, finish = peers.file_dest()
            n = zerocopy.copyfileobj(fsrc, fdst, count=count)
            rest = fsrc.read()
            content = finish()
        want = data[skip : skip + count]
        assert n == len(want)
        assert content == want
        assert rest == data[skip + len(want) :]

    @pytest.mark.parametrize("kind", ["file", "socket", "user"])
    def test_progress_per_chunk(self, backend: ModuleType, tmp_path: Path, kind: str) -> None:
        """progress is called for every chunk and once more at the end, with the total."""
        data = payload(64 * KiB + 17)
        seen: list[int] = []
        with Peers(tmp_path) as peers:
            if kind == "file":
                fsrc: Any = peers.file(data)
            elif kind == "socket":
                fsrc = peers.socket_source(data)
            else:
                fsrc = _UserSource(data)
            fdst, finish = peers.file_dest()
            n = zerocopy.copyfileobj(fsrc, fdst, 4096, progress=seen.append)
            assert finish() == data
        assert n == len(data)
        assert seen[-1] == n
        assert seen == sorted(seen)
        if kind == "user":
            # shutil's loop with 4 KiB chunks: 17 chunks, then the final call.
            assert seen == [*range(4096, 64 * KiB + 1, 4096), n, n]
        else:
            assert len(seen) >= 2

    def test_progress_for_nothing(self, backend: ModuleType, tmp_path: Path) -> None:
        """An empty copy still reports its total, 0, once."""
        seen: list[int] = []
        with Peers(tmp_path) as peers:
            fsrc = peers.file(b"")
            fdst, _ = peers.file_dest()
            zerocopy.copyfileobj(fsrc, fdst, progress=seen.append)
        assert seen == [0]

    def test_count_zero_touches_nothing(self, backend: ModuleType, tmp_path: Path) -> None:
        """count=0 reads nothing: positions, read-ahead and unflushed bytes stay as they were."""
        data = payload(10_000)
        with Peers(tmp_path) as peers:
            fsrc = peers.pipe_source(data)
            fsrc.read(3)
            fdst, finish = peers.file_dest()
            fdst.write(b"held")
            assert zerocopy.copyfileobj(fsrc, fdst, count=0) == 0
            assert fsrc.read() == data[3:]
            assert fdst.tell() == 4
            assert finish() == b"held"


class Stop(Exception):
    """Raised by a progress callback or a signal handler to end a copy early."""


class TestInterrupted:
    """A copy ended by an exception leaves both objects where the delivered bytes put them."""

    @pytest.mark.parametrize(
        ("src_kind", "dst_kind"),
        [("file", "file"), ("file", "socket"), ("socket", "file"), ("pipe", "file")],
    )
    def test_progress_raises(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        src_kind: str,
        dst_kind: str,
    ) -> None:
        """The callback's exception propagates; a later write lands right after what arrived."""
        for name in ("copy_file_range", "sendfile", "splice"):
            inject(monkeypatch, name, errno.EINVAL, fail_on=0, cap=64 * KiB)
        data = payload(1 * MiB)
        seen: list[int] = []

        def progress(total: int) -> None:
            seen.append(total)
            if len(seen) == 3:
                raise Stop

        with Peers(tmp_path) as peers:
            fsrc, fdst, finish = _make_pair(peers, src_kind, dst_kind, data)
            start = 5 if src_kind == "file" else 0
            with pytest.raises(Stop) as info:
                zerocopy.copyfileobj(fsrc, fdst, progress=progress)
            moved = seen[-1]
            assert info.value.bytes_transferred == moved  # type: ignore[attr-defined]
            if src_kind == "file":
                assert fsrc.tell() == start + moved
            fdst.write(TAIL)
            content = finish()
        assert 0 < moved < len(data)
        assert_arrived(content, dst_kind, data[start : start + moved] + TAIL)

    @pytest.mark.parametrize("dst_kind", ["file", "pipe"])
    def test_signal_during_stalled_read(
        self, backend: ModuleType, tmp_path: Path, dst_kind: str
    ) -> None:
        """A signal handler's exception ends a copy blocked on a quiet socket, positions intact."""

        def expire(signum: int, frame: FrameType | None) -> None:
            raise Stop

        data = payload(5000)
        with Peers(tmp_path) as peers:
            mine, peer = socket.socketpair()
            peers.closing(mine)
            peers.closing(peer)
            peer.sendall(data)  # and then nothing, without closing
            fsrc = peers.closing(mine.makefile("rb"))
            if dst_kind == "file":
                fdst, finish = peers.file_dest()
            else:
                fdst, finish = peers.pipe_dest()
            previous = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            try:
                with pytest.raises(Stop) as info:
                    zerocopy.copyfileobj(fsrc, fdst)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            assert info.value.bytes_transferred == len(data)  # type: ignore[attr-defined]
            if dst_kind == "file":
                assert fdst.tell() == len(data)
            fdst.write(TAIL)
            content = finish()
        assert content == data + TAIL


class _UserSource:
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


class TestArguments:
    """Bad arguments are refused before a byte is read."""

    @pytest.mark.parametrize(
        ("kwargs", "exc"),
        [
            ({"count": -1}, ValueError),
            ({"count": "x"}, TypeError),
            ({"count": 1.5}, TypeError),
            ({"progress": 5}, TypeError),
            ({"length": "x"}, TypeError),
            ({"length": 1.5}, TypeError),
        ],
        ids=lambda v: repr(v) if isinstance(v, dict) else v.__name__,
    )
    def test_rejected(
        self, backend: ModuleType, tmp_path: Path, kwargs: dict[str, Any], exc: type
    ) -> None:
        """The error is raised and neither object moved."""
        data = payload(1000)
        with Peers(tmp_path) as peers:
            fsrc = peers.file(data)
            fsrc.read(10)
            fdst, finish = peers.file_dest()
            with pytest.raises(exc):
                zerocopy.copyfileobj(fsrc, fdst, **kwargs)
            assert fsrc.tell() == 10
            assert fsrc.read() == data[10:]
            assert finish() == b""

    def test_length_none_like_shutil(self, backend: ModuleType, tmp_path: Path) -> None:
        """shutil takes length=None as its default chunk ("if not length"); a drop-in must too."""
        data = payload(100_000)
        outs = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            with Peers(tmp_path) as peers:
                fsrc = peers.file(data)
                fdst, finish = peers.file_dest()
                copy(fsrc, fdst, None)
                outs.append(finish())
        assert outs[1] == outs[0] == data

    def test_error_message_not_rewritten(self, backend: ModuleType, tmp_path: Path) -> None:
        """An exception from the objects themselves reaches the caller as shutil lets it."""
        data = payload(1000)
        raised = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            with Peers(tmp_path) as peers:
                fsrc = peers.file(data)
                p = peers.path("ro", b"")
                fdst = peers.closing(open(p, "rb"))  # noqa: SIM115 - not writable
                with pytest.raises(io.UnsupportedOperation) as info:
                    copy(fsrc, fdst)
                raised.append(info.value)
        assert str(raised[1]) == str(raised[0])
        assert raised[1].args == raised[0].args


# --- Deviations where the kernel writes before shutil's buffer would ------------------


class TestBufferedDestinationErrors:
    """shutil's buffered writer holds small copies; a failing fd shows only at close."""

    def test_small_copy_to_broken_pipe(self, backend: ModuleType, tmp_path: Path) -> None:
        """A 10-byte copy to a pipe without reader: shutil's copy succeeds, its close fails."""
        outcomes = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            with Peers(tmp_path) as peers:
                fsrc = peers.file(b"0123456789")
                r, w = os.pipe()
                os.close(r)
                fdst = open(w, "wb")  # noqa: SIM115
                try:
                    copy(fsrc, fdst)
                    during = None
                except OSError as exc:
                    during = type(exc)
                try:
                    fdst.close()
                    at_close = None
                except OSError as exc:
                    at_close = type(exc)
                outcomes.append((during, at_close))
        assert outcomes[1] == outcomes[0]


# --- Read-ahead larger than one chunk ----------------------------------------------


class TestLargeReadAhead:
    """A buffered pipe or socket reader whose buffer holds more than 64 KiB."""

    @pytest.mark.parametrize(
        ("kind", "dst_kind"),
        [(k, d) for k in ("pipe", "socket") for d in ("file", "pipe", "socket")],
        ids=[f"{k}->{d}" for k in ("pipe", "socket") for d in ("file", "pipe", "socket")],
    )
    def test_nothing_lost(
        self, backend: ModuleType, tmp_path: Path, kind: str, dst_kind: str
    ) -> None:
        """Every buffered byte is copied, in order, before what the fd still holds."""
        data = payload(600_000)
        with Peers(tmp_path) as peers:
            if kind == "pipe":
                fsrc = peers.pipe_source(data, buffering=MiB, prefill=len(data))
            else:
                fsrc = peers.socket_source(data, buffering=MiB)
                _wait_queued(fsrc, 150_000)
            fsrc.read(1)
            held = len(fsrc.peek())
            if dst_kind == "file":
                fdst, finish = peers.file_dest()
            elif dst_kind == "pipe":
                fdst, finish = peers.pipe_dest()
            else:
                fdst, finish = peers.socket_dest()
            n = zerocopy.copyfileobj(fsrc, fdst)
            rest = fsrc.read()
            content = finish()
        assert held > 64 * KiB, "the scenario needs a read-ahead larger than 64 KiB"
        assert rest == b""
        assert n == len(data) - 1
        assert content == data[1:]


def _wait_queued(f: Any, want: int) -> None:
    import termios
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        raw = fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0\0\0\0")
        if int.from_bytes(raw, "little") >= want:
            return
        time.sleep(0.001)


# --- fd hygiene --------------------------------------------------------------------


class TestNoFdLeaks:
    """No copy, successful or failing, leaves an fd open behind it."""

    @pytest.mark.parametrize("path", list(FAST_PATHS))
    @pytest.mark.parametrize("outcome", ["ok", "ENOSPC", "EINVAL-later"])
    def test_no_leak(
        self,
        backend: ModuleType,
        no_leaks: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        path: str,
        outcome: str,
    ) -> None:
        """fds open after the copy (idle pooled pipes aside) are those open before it."""
        src_kind, dst_kind, call, when, _ = FAST_PATHS[path]
        data = payload(200_001)
        _break_also_cfr(monkeypatch, path)
        if outcome == "ENOSPC":
            inject(monkeypatch, call, errno.ENOSPC, when=when)
        elif outcome == "EINVAL-later":
            fail_on = 3 if path.startswith("socket") and when is None else 2
            inject(monkeypatch, call, errno.EINVAL, fail_on, 4096, when=when)
        with Peers(tmp_path) as peers:
            fsrc, fdst, finish = _make_pair(peers, src_kind, dst_kind, data)
            if outcome == "ok":
                zerocopy.copyfileobj(fsrc, fdst)
            else:
                err = errno.ENOSPC if outcome == "ENOSPC" else errno.EINVAL
                with pytest.raises(OSError, match=os.strerror(err)):
                    zerocopy.copyfileobj(fsrc, fdst)
            finish()
        pool = _pipes.default_pool()
        assert len(pool) <= pool.maxsize
        pool.clear()  # idle pooled pipes are kept on purpose; anything else is a leak

    def test_pool_stays_bounded_and_clean(self, backend: ModuleType, tmp_path: Path) -> None:
        """Many socket copies, some failing part-way, leave only empty pipes in a bounded pool."""
        pool = _pipes.default_pool()
        data = payload(300_000)
        for i in range(20):
            with Peers(tmp_path) as peers:
                fsrc = peers.socket_source(data)
                fdst, finish = peers.file_dest()
                if i % 3 == 0:
                    zerocopy.copyfileobj(fsrc, fdst, count=123_457)
                else:
                    zerocopy.copyfileobj(fsrc, fdst)
                finish()
        assert len(pool) <= pool.maxsize
        for pipe in list(pool._idle):
            assert pipe.queued() == 0


# --- Methods -------------------------------------------------------------------------


class TestMethods:
    """On this machine, each pair of fds takes the method the design names."""

    @pytest.mark.parametrize(
        ("src_kind", "dst_kind", "method"),
        [
            ("file", "file", "copy_file_range"),
            ("file", "socket", "sendfile"),
            ("file", "pipe", "sendfile"),
            ("socket", "file", "splice"),
            ("pipe", "file", "splice"),
            ("socket", "socket", "splice"),
            ("pipe", "socket", "splice"),
        ],
    )
    def test_method(
        self, backend: ModuleType, tmp_path: Path, src_kind: str, dst_kind: str, method: str
    ) -> None:
        """The bytes arrive intact, moved by the expected system call."""
        data = payload(1 * MiB + 3)
        with Peers(tmp_path) as peers:
            fsrc, fdst, finish = _make_pair(peers, src_kind, dst_kind, data)
            start = 5 if src_kind == "file" else 0
            n = zerocopy.copyfileobj(fsrc, fdst)
            content = finish()
        assert zerocopy.last_method() == method
        assert n == len(data) - start
        if dst_kind == "file":
            assert content == b"Z" * 20 + b"unflushed" + data[start:]
        else:
            assert content == data[start:]


# --- copyfile ------------------------------------------------------------------------


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raises", type(exc))


class TestCopyfile:
    """copyfile returns and raises what shutil.copyfile does."""

    def test_regular_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """Same bytes, dst returned as given, copied with copy_file_range."""
        data = payload(3 * MiB + 5)
        src = tmp_path / "src"
        src.write_bytes(data)
        ref = shutil.copyfile(src, tmp_path / "ref")
        dst = tmp_path / "dst"
        got = zerocopy.copyfile(src, dst)
        assert got is dst
        assert type(got) is type(ref)
        assert dst.read_bytes() == data
        assert zerocopy.last_method() == "copy_file_range"
        str_dst = str(tmp_path / "dst2")
        assert zerocopy.copyfile(str(src), str_dst) is str_dst

    def test_overwrites_existing(self, backend: ModuleType, tmp_path: Path) -> None:
        """An existing, longer destination is truncated, as shutil does."""
        src = tmp_path / "src"
        src.write_bytes(b"short")
        dst = tmp_path / "dst"
        dst.write_bytes(b"a much longer existing content")
        zerocopy.copyfile(src, dst)
        assert dst.read_bytes() == b"short"

    def test_permission_bits_not_copied(self, backend: ModuleType, tmp_path: Path) -> None:
        """The new file gets the umask's mode, not the source's, as with shutil."""
        src = tmp_path / "src"
        src.write_bytes(b"x")
        src.chmod(0o751)
        shutil.copyfile(src, tmp_path / "ref")
        zerocopy.copyfile(src, tmp_path / "dst")
        mode = stat.S_IMODE((tmp_path / "dst").stat().st_mode)
        assert mode == stat.S_IMODE((tmp_path / "ref").stat().st_mode)
        assert mode != 0o751

    @pytest.mark.parametrize(
        "case",
        [
            "same-file",
            "same-file-via-link",
            "src-directory",
            "dst-directory",
            "dst-missing-directory",
            "src-fifo",
            "dst-fifo",
            "src-missing",
            "dst-symlink-to-src",
        ],
    )
    def test_errors_like_shutil(self, backend: ModuleType, tmp_path: Path, case: str) -> None:
        """The same exception type as shutil.copyfile for the same mistake."""
        outcomes = []
        for i, copyfile in enumerate((shutil.copyfile, zerocopy.copyfile)):
            d = tmp_path / f"play{i}"
            d.mkdir()
            src, dst = d / "src", d / "dst"
            src.write_bytes(b"content")
            if case == "same-file":
                dst = src
            elif case == "same-file-via-link":
                os.link(src, dst)
            elif case == "src-directory":
                src = d / "adir"
                src.mkdir()
            elif case == "dst-directory":
                dst.mkdir()
            elif case == "dst-missing-directory":
                dst = d / "missing" / "dst"
            elif case == "src-fifo":
                src = d / "fifo"
                os.mkfifo(src)
            elif case == "dst-fifo":
                os.mkfifo(dst)
            elif case == "src-missing":
                src = d / "nope"
            elif case == "dst-symlink-to-src":
                dst.symlink_to(src)
            outcomes.append(_outcome(lambda src=src, dst=dst, c=copyfile: c(src, dst)))
        assert outcomes[0][0] == "raises", f"shutil accepted {case}"
        assert outcomes[1] == outcomes[0]

    @pytest.mark.parametrize("follow", [True, False])
    def test_symlink(self, backend: ModuleType, tmp_path: Path, follow: bool) -> None:
        """A symlink source: followed, the target's bytes; not followed, a new symlink."""
        target = tmp_path / "target"
        target.write_bytes(b"pointed-at bytes")
        link = tmp_path / "link"
        link.symlink_to(target)
        ref, dst = tmp_path / "ref", tmp_path / "dst"
        shutil.copyfile(link, ref, follow_symlinks=follow)
        assert zerocopy.copyfile(link, dst, follow_symlinks=follow) is dst
        assert dst.is_symlink() == ref.is_symlink() == (not follow)
        if follow:
            assert dst.read_bytes() == b"pointed-at bytes"
        else:
            assert os.readlink(dst) == os.readlink(ref) == str(target)

    def test_direntry_source(self, backend: ModuleType, tmp_path: Path) -> None:
        """An os.DirEntry source works as in shutil."""
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "f").write_bytes(b"entry")
        (entry,) = list(os.scandir(tmp_path / "in"))
        assert zerocopy.copyfile(entry, tmp_path / "out") == tmp_path / "out"
        assert (tmp_path / "out").read_bytes() == b"entry"


# --- patch_shutil -------------------------------------------------------------------


class TestPatchShutil:
    """patch_shutil swaps shutil's functions while active, and puts them back."""

    def test_active_and_undone(self, backend: ModuleType, tmp_path: Path) -> None:
        """shutil.copy goes through zerocopy while patched; undo restores it, twice harmlessly."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        src = tmp_path / "src"
        src.write_bytes(payload(500_000))
        patch = zerocopy.patch_shutil()
        try:
            assert shutil.copyfileobj is zerocopy.copyfileobj
            assert shutil.copyfile is zerocopy.copyfile
            method = method_in_thread(lambda: shutil.copy(src, tmp_path / "dst"))
            assert method == "copy_file_range"
            assert (tmp_path / "dst").read_bytes() == src.read_bytes()
        finally:
            patch.undo()
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        patch.undo()
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        # Unpatched, shutil copies by itself: zerocopy never runs in that thread.
        assert method_in_thread(lambda: shutil.copy(src, tmp_path / "dst2")) is None
        assert (tmp_path / "dst2").read_bytes() == src.read_bytes()

    def test_context_manager(self, backend: ModuleType, tmp_path: Path) -> None:
        """As a with block, the patch ends with the block, even on an exception."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        (tmp_path / "a").write_bytes(b"abc")
        inside: list[tuple[bool, str | None]] = []

        def body() -> None:
            with zerocopy.patch_shutil():
                with open(tmp_path / "a", "rb") as fsrc, open(tmp_path / "b", "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst)
                inside.append((shutil.copyfile is zerocopy.copyfile, zerocopy.last_method()))
                raise RuntimeError("leave the block")

        with pytest.raises(RuntimeError, match="leave"):
            body()
        assert inside == [(True, "readinto")]  # 3 bytes: the small-copy path
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        assert (tmp_path / "b").read_bytes() == b"abc"

    def test_nested(self, backend: ModuleType) -> None:
        """Nested patches: shutil stays patched until the outer one ends."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        with zerocopy.patch_shutil():
            with zerocopy.patch_shutil():
                assert shutil.copyfile is zerocopy.copyfile
            assert shutil.copyfile is zerocopy.copyfile
        assert (shutil.copyfileobj, shutil.copyfile) == originals


def method_in_thread(fn: Callable[[], object]) -> str | None:
    """Run *fn* in a new thread and return last_method() as that thread sees it."""
    seen: list[str | None] = []

    def run() -> None:
        fn()
        seen.append(zerocopy.last_method())

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert seen, "the copy in the thread failed"
    return seen[0]


class TestUrgentData:
    """TCP urgent data (MSG_OOB) stops splice at its mark; the copy reads past it."""

    def test_bytes_after_the_mark_arrive_like_shutil(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """Bytes sent after an urgent byte reach the file, as shutil's recv gets them."""
        results = []
        for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
            listener = socket.create_server(("127.0.0.1", 0))
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            listener.close()
            with client, server:
                client.sendall(b"hello")
                time.sleep(0.05)  # so the urgent byte is not merged into one segment
                client.send(b"!", socket.MSG_OOB)
                client.sendall(b"world" * 30_000)
                client.close()
                dest = tmp_path / f"out-{len(results)}"
                with server.makefile("rb") as fsrc, open(dest, "wb") as fdst:
                    copy(fsrc, fdst)
                results.append(dest.read_bytes())
        assert results[1] == results[0] == b"hello" + b"world" * 30_000
        assert zerocopy.last_method() == "splice"

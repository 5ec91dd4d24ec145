"""copyfileobj's behaviour: properties against shutil, odd sources (procfs and
sysfs files, empty, changing and appended-to sources, a file copied onto itself,
TCP urgent data, read-ahead larger than a chunk).

Every test that copies runs on both backends (the ``backend`` fixture).
Errnos are injected the way CPython's test_shutil does it: the low-level call
a fast path makes is replaced, for one test, by one that fails on its first
call.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import random
import shutil
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zerocopy
from conftest import hang_guard
from copykit import (
    TAIL,
    KiB,
    MiB,
    Peers,
    always_fail,
    assert_same,
    by_hand,
    counter,
    inject,
    observe,
    payload,
    read_exactly,
    run_child,
    with_zerocopy,
)
from zerocopy import _backend


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


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
        """A procfs file (size 0 in stat) copies in full, by shutil's own loop."""
        ref, got, n = _copy_path_both(backend, path, tmp_path)
        assert got == ref
        assert n == len(ref) > 0
        assert zerocopy.last_method() == "read"  # ended within two chunks

    def test_procfs_status_same_fields(self, backend: ModuleType, tmp_path: Path) -> None:
        """/proc/self/status, whose values change between reads, copies every field."""
        ref, got, n = _copy_path_both(backend, "/proc/self/status", tmp_path)

        def fields(b: bytes) -> list[bytes]:
            return [line.split(b":")[0] for line in b.splitlines()]

        assert n == len(got) > 0
        assert fields(got) == fields(ref)
        assert got.endswith(b"\n")
        assert zerocopy.last_method() == "read"

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
        # Ended within shutil's loop's first two chunks, whatever its stat size says.
        assert zerocopy.last_method() == "read"

    def test_zero_on_first_call_falls_back(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """copy_file_range moving 0 bytes on its first call hands over to sendfile."""
        data = payload(300_000)  # past shutil's loop's two chunks and the next: the kernel's
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
        src = Path("/dev/shm") / f"zerocopy-test-{os.getpid()}-{next(counter)}"
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
            assert zerocopy.last_method() == "read"  # shutil's loop, whose first read was empty
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
            monkeypatch.setattr(_backend.current(), "copy_file_range", always_fail(errno.EXDEV))
        if path == "readinto":
            monkeypatch.setattr(_backend.current(), "sendfile", always_fail(errno.EINVAL))
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
        out = run_child(backend, script, str(tmp_path / "self"))
        assert out == {"returned": size, "size": 2 * size}, (
            f"copying a file onto its own append object ran away: {out}"
        )


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

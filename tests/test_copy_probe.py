"""copyfileobj's first chunks: shutil's own loop, then the kernel for the rest.

Every copy starts as shutil's loop (read, write, read); only a second read
with bytes in it weighs the kernel, with that chunk in hand.  These tests
put the sizes on both sides of that boundary, from files, pipes and
sockets, with every kind of length, count and progress, and compare with
shutil: the bytes that arrive, both objects' positions, the count.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from copykit import KiB, MiB, Peers, assert_same, by_hand, observe, payload, with_zerocopy

CHUNK = 64 * KiB
#: Both sides of one chunk and of two, and one size the kernel must take.
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 1 * MiB]
LENGTHS = [0, 1, 4096, -1]


def _source(peers: Peers, kind: str, data: bytes) -> Any:
    if kind == "pipe":
        return peers.pipe_source(data)
    if kind == "socket":
        return peers.socket_source(data)
    return peers.file(data)


def _dest(peers: Peers, kind: str) -> tuple[Any, Any]:
    if kind == "pipe":
        return peers.pipe_dest()
    return peers.file_dest()


def _play(
    tmp_path: Path, src: str, dst: str, data: bytes, copy: Any
) -> tuple[dict[str, Any], str | None]:
    with Peers(tmp_path) as peers:
        fsrc = _source(peers, src, data)
        fdst, finish = _dest(peers, dst)
        seen = observe(copy, fsrc, fdst, finish)
    return seen, zerocopy.last_method()


#: (size, length); a byte at a time through a MiB shows nothing the smaller sizes do not.
BOUNDARY = [(n, k) for n in SIZES for k in LENGTHS if not (k == 1 and n > 2 * CHUNK)]


@pytest.mark.parametrize(("size", "length"), BOUNDARY, ids=[f"{n}-len{k}" for n, k in BOUNDARY])
@pytest.mark.parametrize("dst", ["file", "pipe"])
@pytest.mark.parametrize("src", ["file", "pipe", "socket"])
def test_boundary_same_as_shutil(
    backend: ModuleType, tmp_path: Path, src: str, dst: str, size: int, length: int
) -> None:
    """Sizes around one and two chunks copy exactly as shutil's loop does."""
    data = payload(size)
    ref, _ = _play(tmp_path, src, dst, data, by_hand(None, length))
    got, method = _play(tmp_path, src, dst, data, with_zerocopy(length=length))
    assert_same(got, ref)
    assert got["returned"] == size
    chunk = length if length > 0 else CHUNK
    if src == "file" and length >= 0 and size <= chunk:
        # Ended by shutil's second read: nothing else was looked at.
        assert method == "read"
    if size == 1 * MiB and length in (0, 4096):
        # Large: after shutil's first two chunks, the kernel took the rest.
        expected = {"file": "copy_file_range", "pipe": "sendfile"} if src == "file" else None
        assert method == (expected[dst] if expected else "splice")


@pytest.mark.parametrize(
    "count", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 300 * KiB]
)
@pytest.mark.parametrize("size", [CHUNK, 2 * CHUNK + 1, 1 * MiB])
@pytest.mark.parametrize("src", ["file", "pipe", "socket"])
def test_count_and_progress_across_the_boundary(
    backend: ModuleType, tmp_path: Path, src: str, size: int, count: int
) -> None:
    """count= stops exactly where read(count) would, and progress ends at the count."""
    data = payload(size)
    seen: list[int] = []
    ref, _ = _play(tmp_path, src, "file", data, by_hand(count))
    got, method = _play(tmp_path, src, "file", data, with_zerocopy(count, progress=seen.append))
    assert_same(got, ref)
    assert got["returned"] == min(count, size)
    assert seen == sorted(seen)
    assert seen[-1] == got["returned"]
    if count == 0:
        assert method == "none"


@pytest.mark.parametrize("length", [0, 4096], ids=["len0", "len4096"])
@pytest.mark.parametrize(
    "size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 300 * KiB]
)
def test_append_to_itself_across_the_boundary(
    backend: ModuleType, tmp_path: Path, size: int, length: int
) -> None:
    """A file copied onto its own 'ab' object stops at the size it began with, at every size."""
    data = payload(size)
    p = tmp_path / "self"
    p.write_bytes(data)
    with open(p, "rb") as fsrc, open(p, "ab") as fdst:
        moved = zerocopy.copyfileobj(fsrc, fdst, length)
        # The source stands after what was copied, not after bytes it read back.
        assert fsrc.tell() == size
    assert moved == size
    assert p.read_bytes() == data + data


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK + 1, 2 * CHUNK + 1, 300 * KiB])
@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_failing_write_counts_what_arrived(
    backend: ModuleType, tmp_path: Path, size: int, fail_on: int
) -> None:
    """A write failing in or after shutil's first chunks: shutil's exception, the exact count."""

    class Sink:
        def __init__(self) -> None:
            self.got = bytearray()
            self.calls = 0

        def write(self, b: Any) -> int:
            self.calls += 1
            if self.calls == fail_on:
                raise OSError(28, "No space left on device")
            self.got += b
            return len(b)

    data = payload(size)
    outcomes = []
    for copy in (shutil.copyfileobj, zerocopy.copyfileobj):
        sink = Sink()
        with open(tmp_path / "src", "wb") as f:
            f.write(data)
        with open(tmp_path / "src", "rb") as fsrc:
            try:
                copy(fsrc, sink)
                outcomes.append((None, bytes(sink.got), fsrc.tell()))
            except OSError as exc:
                count = getattr(exc, "bytes_transferred", None)
                outcomes.append((type(exc), bytes(sink.got), fsrc.tell()))
                if copy is zerocopy.copyfileobj:
                    assert count == len(sink.got)
    assert outcomes[1] == outcomes[0]


def test_second_read_failing_counts_the_first_chunk(backend: ModuleType, tmp_path: Path) -> None:
    """An error on shutil's second read carries the first chunk's count, as written."""

    class Source:
        def __init__(self) -> None:
            self.reads = 0

        def read(self, n: int) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise OSError(5, "Input/output error")
            return b"x" * n

    with open(tmp_path / "dst", "wb") as fdst, pytest.raises(OSError, match="Input/output") as info:
        zerocopy.copyfileobj(Source(), fdst)
    assert info.value.bytes_transferred == CHUNK  # type: ignore[attr-defined]
    assert zerocopy.last_method() == "read"
    assert os.path.getsize(tmp_path / "dst") == CHUNK


@pytest.mark.parametrize("size", [10, CHUNK + 1, 1 * MiB])
@pytest.mark.parametrize("src", ["pipe", "socket"])
def test_short_reads_are_not_the_end(
    backend: ModuleType, tmp_path: Path, src: str, size: int
) -> None:
    """A stream whose first reads come back short is copied to its end, as shutil does."""
    data = payload(size)
    with Peers(tmp_path) as peers:
        if src == "pipe":
            r, w = os.pipe()
            fsrc = peers.closing(open(r, "rb"))  # noqa: SIM115
            put, done = (lambda b: os.write(w, b)), (lambda: os.close(w))
        else:
            mine, peer = socket.socketpair()
            peers.closing(mine)
            fsrc = peers.closing(mine.makefile("rb"))
            put, done = peer.sendall, peer.close

        def write() -> None:
            # A byte, then a pause, then a few more, then the rest: the first
            # two reads come back with fewer bytes than asked for.
            try:
                for piece in (data[:1], data[1:7]):
                    put(piece)
                    time.sleep(0.05)
                view = memoryview(data)[7:]
                while view:
                    view = view[put(view[:CHUNK]) or len(view[:CHUNK]) :]
            finally:
                done()

        peers.thread(write)
        fdst, finish = peers.file_dest()
        moved = zerocopy.copyfileobj(fsrc, fdst)
        content = finish()
    assert moved == size
    assert content == data

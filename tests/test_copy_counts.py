"""Exact counts when a copy's writes fail part-way, and the read-ahead path onto sendfile.

Real failures, no mocks: EFBIG from ``RLIMIT_FSIZE`` (set in this process
around the copy alone, with ``SIGXFSZ`` ignored) and ENOSPC from a small
tmpfs mounted by the test.  For each writer (buffered, a smaller and a
larger buffer, raw, append), each path copyfileobj can take (shutil's loop
first, the probe with ``count``/``progress``, small and negative lengths)
and failures at 1 byte, inside the first chunk, at the chunk boundary and
later, the promise checked is the one in docs/safety.md: the count equals
how far the destination's ``tell()`` moved, and the bytes in its file are
that many, less what its buffer still holds, and are the source's prefix.

Then the path no other test reaches: a BufferedReader holding read-ahead,
copied onto a regular file where copy_file_range cannot start, so the
read-ahead goes out with pwrite and sendfile takes over at the cursor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from copykit import KiB, MiB, inject, payload

pytestmark = pytest.mark.usefixtures("no_leaks")

#: name -> open() arguments of the destination.
WRITERS: dict[str, dict[str, Any]] = {
    "buffered": {"mode": "wb"},
    "buffered-1k": {"mode": "wb", "buffering": 1024},
    "buffered-256k": {"mode": "wb", "buffering": 256 * KiB},
    "raw": {"mode": "wb", "buffering": 0},
    "append": {"mode": "ab"},
}

#: name -> keyword arguments of copyfileobj: each takes another path.
PATHS: dict[str, dict[str, Any]] = {
    "default": {},  # shutil's loop first, then the kernel or the readinto loop
    "count": {"count": 1 << 40},  # the probe, then the same
    "progress": {"progress": lambda n: None},
    "length-1000": {"length": 1000},  # the probe's small chunks, then the readinto loop
    "length-negative": {"length": -1},  # no probe: the kernel path at once
}

#: (source size, where the file stops taking bytes)
EFBIG_CASES = [
    (5000, 1),  # at the first byte of a copy smaller than a chunk
    (70_000, 1),
    (70_000, 4096),  # inside the first chunk
    (3 * MiB, 4096),
    (200_000, 64 * KiB),  # at the chunk boundary
    (200_000, 64 * KiB + 1),  # just past it: inside the second chunk
    (3 * MiB, 128 * KiB),  # later: the kernel's part
    (3 * MiB, MiB + 1),
]


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE at *limit* for this process, SIGXFSZ ignored (EFBIG instead of death)."""
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def copy_and_observe(
    src: Path, dst: Path, writer: str, kwargs: dict[str, Any], fault: Callable[[], Any]
) -> dict[str, Any]:
    """Copy *src* onto a fresh *dst* under *fault*; the count, positions and what is in the file."""
    with open(src, "rb") as fsrc, open(dst, **WRITERS[writer]) as fdst:
        start = fdst.tell()
        exc: OSError | None = None
        returned = None
        with fault():
            try:
                returned = zerocopy.copyfileobj(fsrc, fdst, **kwargs)
            except OSError as e:
                exc = e
        tell = fdst.tell()
        held = tell - os.lseek(fdst.fileno(), 0, os.SEEK_CUR)  # still in its buffer
        landed = dst.read_bytes()
        with contextlib.suppress(OSError):
            fdst.close()  # its buffer may not fit either: that is the caller's close
    count = zerocopy.bytes_transferred(exc) if exc is not None else returned
    return {
        "errno": None if exc is None else exc.errno,
        "count": count,
        "moved": tell - start,
        "held": held,
        "landed": landed,
        "method": zerocopy.last_method(),
    }


def assert_exact(obs: dict[str, Any], data: bytes, failure: int) -> None:
    """The count is the destination's move; its file holds that many bytes, less its buffer's."""
    where = (obs["method"], obs["errno"])
    assert obs["count"] == obs["moved"], where
    assert len(obs["landed"]) == obs["count"] - obs["held"], where
    assert obs["landed"] == data[: len(obs["landed"])], where
    assert obs["errno"] in (None, failure), where


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One source file per size, written once for the module."""
    where = tmp_path_factory.mktemp("sources")
    paths = {}
    for size in sorted({size for size, _ in EFBIG_CASES}):
        paths[size] = where / f"src-{size}"
        paths[size].write_bytes(payload(size))
    return paths


class TestFileSizeLimit:
    @pytest.mark.parametrize("path", list(PATHS))
    @pytest.mark.parametrize("writer", list(WRITERS))
    @pytest.mark.parametrize(("size", "limit"), EFBIG_CASES)
    def test_count_matches_file_and_position(
        self,
        backend: ModuleType,
        tmp_path: Path,
        sources: dict[int, Path],
        size: int,
        limit: int,
        writer: str,
        path: str,
    ) -> None:
        """Under RLIMIT_FSIZE, the count equals the destination's move and the bytes in its file."""
        obs = copy_and_observe(
            sources[size], tmp_path / "dst", writer, PATHS[path], lambda: file_size_limit(limit)
        )
        assert_exact(obs, payload(size), errno.EFBIG)
        assert len(obs["landed"]) <= limit


# --- a full disk: a small tmpfs ------------------------------------------------------

TMPFS_SIZE = 512 * KiB

#: Bytes the tmpfs has room for when the copy starts (it allocates whole pages).
ENOSPC_ROOM = [4 * KiB, 64 * KiB, 68 * KiB, 256 * KiB]


@pytest.fixture(scope="module")
def tmpfs() -> Iterator[Path]:
    """A 512 KiB tmpfs mounted in a temporary directory for the module, unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="zc-counts-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        where.rmdir()
        why = proc.stderr.strip() or f"exit status {proc.returncode}"
        reason = f"cannot mount a tmpfs here ({why}); the RLIMIT_FSIZE tests cover the counts"
        print(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


@contextlib.contextmanager
def room_left(tmpfs: Path, room: int) -> Iterator[None]:
    """Fill *tmpfs* so that *room* bytes are left; empty it afterwards."""
    filler = tmpfs / "filler"
    try:
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * TMPFS_SIZE)  # as much as fits
        with open(filler, "r+b") as f:
            f.truncate(os.path.getsize(filler) - room)
        yield
    finally:
        filler.unlink()


class TestDiskFull:
    @pytest.mark.parametrize("path", list(PATHS))
    @pytest.mark.parametrize("writer", list(WRITERS))
    @pytest.mark.parametrize("room", ENOSPC_ROOM)
    def test_count_matches_file_and_position(
        self,
        backend: ModuleType,
        sources: dict[int, Path],
        tmpfs: Path,
        room: int,
        writer: str,
        path: str,
    ) -> None:
        """On a full tmpfs, the count equals the destination's move and the bytes in its file."""
        size = 3 * MiB
        dst = tmpfs / "dst"
        try:
            obs = copy_and_observe(
                sources[size], dst, writer, PATHS[path], lambda: room_left(tmpfs, room)
            )
        finally:
            dst.unlink()
        assert_exact(obs, payload(size), errno.ENOSPC)
        assert obs["errno"] == errno.ENOSPC
        assert len(obs["landed"]) <= room


# --- read-ahead, then sendfile where copy_file_range cannot start ---------------------


class TestReadAheadThenSendfile:
    @pytest.mark.parametrize("err", [errno.EXDEV, errno.EINVAL], ids=["EXDEV", "EINVAL"])
    @pytest.mark.parametrize("length", [-1, 2 * MiB], ids=["length-1", "length-2MiB"])
    @pytest.mark.parametrize("hold", ["read", "peek"])
    def test_same_as_shutil(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        err: int,
        length: int,
        hold: str,
    ) -> None:
        """Read-ahead goes first, then sendfile from the cursor: shutil's bytes and positions."""
        data = payload(3 * MiB + 123)
        src = tmp_path / "src"
        src.write_bytes(data)

        def play(copy: Callable[..., Any], dst: Path) -> dict[str, Any]:
            with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
                if hold == "read":
                    assert fsrc.read(10) == data[:10]
                else:
                    assert fsrc.peek(1)  # position 0, the buffer full
                fdst.write(b"head")  # held by the writer: goes first
                returned = copy(fsrc, fdst, length)
                tells = (fsrc.tell(), fdst.tell())
            return {"tells": tells, "landed": dst.read_bytes(), "returned": returned}

        ref = play(shutil.copyfileobj, tmp_path / "ref")
        stand_in = inject(monkeypatch, "copy_file_range", err)
        got = play(zerocopy.copyfileobj, tmp_path / "dst")
        assert stand_in.failed
        assert zerocopy.last_method() == "sendfile"
        assert got["landed"] == ref["landed"]
        assert got["tells"] == ref["tells"]
        assert got["returned"] == len(data) - (10 if hold == "read" else 0)

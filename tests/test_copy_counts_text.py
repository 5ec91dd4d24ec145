"""Exact counts, in characters, when a copy into a text file fails part-way.

A TextIOWrapper destination counts in characters, keeps encoded bytes
pending until it has a chunk's worth (``_CHUNK_SIZE``, 8192) and drops them
when its buffer's write fails.  Under real EFBIG (``RLIMIT_FSIZE``, SIGXFSZ
ignored) and ENOSPC (a small tmpfs), for ASCII, UTF-8 with 2-, 3- and 4-byte
characters, latin-1 and UTF-16 (a byte-order mark first), newlines
untranslated and written as "\\r\\n", each writer and path, the promise
checked is: the count is the number of characters whose encoded bytes the
destination's buffer accepted (its binary position has moved past them, and
into the next character by less than its bytes), and the file holds a prefix
of the encoding (the rest of what moved is in the buffer).  Then the
documented limit (utf-7: whole writes), and text copies that do not fail,
against shutil.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from copykit import KiB
from test_copy_counts import file_size_limit, room_left
from test_copy_counts import tmpfs as tmpfs  # the module's fixture, shared

pytestmark = pytest.mark.usefixtures("no_leaks")

NATIVE = "le" if sys.byteorder == "little" else "be"

#: Characters by their UTF-8 length, for the text of each source.
ALPHABETS = {
    "ascii": "abcdefghijklmnopqrstuvwxyz0123456789 ",
    "latin": "abcdefghij éßüñ¿ÆØ",
    "multi": "abcdef éßж€中あ😀𝄞🐍",  # 1, 2, 3 and 4 bytes in UTF-8
}

#: name -> (alphabet, encoding of the destination, codec of its bytes after the BOM, BOM)
ENCODINGS: dict[str, tuple[str, str, str, bytes]] = {
    "ascii": ("ascii", "ascii", "ascii", b""),
    "utf8": ("multi", "utf-8", "utf-8", b""),
    "latin1": ("latin", "latin-1", "latin-1", b""),
    "utf16": ("multi", "utf-16", f"utf-16-{NATIVE}", codecs.BOM_UTF16),
}

#: id -> newline argument of open()
NEWLINES = {"lf": None, "untranslated": "", "crlf": "\r\n"}

#: name -> open() arguments of the destination (text).
WRITERS: dict[str, dict[str, Any]] = {
    "text": {"mode": "w"},
    "line-buffered": {"mode": "w", "buffering": 1},
    "text-256k": {"mode": "w", "buffering": 256 * KiB},
    "append": {"mode": "a"},
}

#: name -> keyword arguments of copyfileobj: each takes another path.
PATHS: dict[str, dict[str, Any]] = {
    "default": {},  # the first chunk on the fast path, then shutil's loop
    "count": {"count": 1 << 40},  # the probe
    "progress": {"progress": lambda n: None},
    "length-1000": {"length": 1000},  # small chunks: the wrapper would keep several pending
    "length-negative": {"length": -1},  # one write of everything
}

#: (characters in the source, bytes the file may grow to)
LIMITS = [
    (70_000, 1),  # the first byte
    (70_000, 4099),  # inside the first chunk (odd: inside a character, where they are wider)
    (300_000, 8192),  # the text layer's chunk boundary
    (300_000, 8193),
    (300_000, 100_001),  # inside the first chunk's bytes, or the second's
    (300_000, 170_001),  # later
]
# Where a buffer's write is all or nothing, the counts were exact before the text
# writer was: a failure inside a write's last buffer-full (65_537 with "\r\n"), on a
# write's edge (a page-aligned ENOSPC after 64 KiB of ASCII) or in a 256 KiB buffer's
# flush.  Those cases are left out: each one here failed before.


def make_text(alphabet: str, size: int) -> str:
    """*size* characters from *alphabet* in lines of 1 to 80, after a "#": deterministic."""
    rng = random.Random(size * 31 + len(alphabet))
    out: list[str] = []
    n = 0
    while n < size:
        line = "".join(rng.choices(alphabet, k=rng.randrange(0, 80))) + "\n"
        out.append(line)
        n += len(line)
    return ("#" + "".join(out))[:size]


def encoded(text: str, encoding: str, newline: str | None) -> bytes:
    """The bytes a text file with *encoding* and *newline* holds for *text*."""
    _, _, codec, bom = ENCODINGS[encoding]
    if newline == "\r\n":
        text = text.replace("\n", "\r\n")
    return bom + codecs.encode(text, codec)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], tuple[Path, str]]:
    """One UTF-8 source file per alphabet and size, written once for the module."""
    where = tmp_path_factory.mktemp("sources")
    paths = {}
    for alphabet in ALPHABETS:
        for size in sorted({size for size, _ in LIMITS} | {600_000}):
            text = make_text(ALPHABETS[alphabet], size)
            path = where / f"{alphabet}-{size}"
            path.write_text(text, encoding="utf-8", newline="")
            paths[alphabet, size] = (path, text)
    return paths


def copy_and_observe(
    src: Path,
    dst: Path,
    encoding: str,
    newline: str | None,
    writer: str,
    kwargs: dict[str, Any],
    fault: Callable[[], Any],
) -> dict[str, Any]:
    """Copy *src* onto a fresh *dst* under *fault*; the count, positions and what is in the file."""
    with (
        open(src, encoding="utf-8", newline="") as fsrc,
        open(dst, encoding=ENCODINGS[encoding][1], newline=newline, **WRITERS[writer]) as fdst,
    ):
        start = fdst.buffer.tell()
        exc: OSError | None = None
        returned = None
        with fault():
            try:
                returned = zerocopy.copyfileobj(fsrc, fdst, **kwargs)
            except OSError as e:
                exc = e
        pos = fdst.buffer.tell()
        held = pos - os.lseek(fdst.fileno(), 0, os.SEEK_CUR)  # still in its buffer
        landed = dst.read_bytes()
        chunk_size = fdst._CHUNK_SIZE
        with contextlib.suppress(OSError):
            fdst.close()  # its buffer may not fit either: that is the caller's close
    count = zerocopy.bytes_transferred(exc) if exc is not None else returned
    return {
        "errno": None if exc is None else exc.errno,
        "count": count,
        "moved": pos - start,
        "held": held,
        "landed": landed,
        "chunk_size": chunk_size,
    }


def assert_exact(
    obs: dict[str, Any], text: str, encoding: str, newline: str | None, failure: int
) -> None:
    """The count is the characters wholly in the buffer's move; the file holds a prefix of them."""
    count, moved = obs["count"], obs["moved"]
    where = (obs["errno"], count, moved, obs["held"], len(obs["landed"]))
    assert obs["errno"] == failure, where
    assert count is not None, where
    assert len(encoded(text[:count], encoding, newline)) <= moved, where
    assert moved < len(encoded(text[: count + 1], encoding, newline)), where
    assert len(obs["landed"]) + obs["held"] == moved, where
    full = encoded(text, encoding, newline)
    assert obs["landed"] == full[: len(obs["landed"])], where
    assert obs["chunk_size"] == 8192, where


#: (writer, path): a 256 KiB buffer takes a 64 KiB chunk whole or not at all.
WRITER_PATHS = [
    (writer, path)
    for writer in WRITERS
    for path in PATHS
    if writer != "text-256k" or path in ("length-1000", "length-negative")
]


class TestFileSizeLimit:
    @pytest.mark.parametrize(("size", "limit"), LIMITS)
    @pytest.mark.parametrize("newline", list(NEWLINES))
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_encodings_and_newlines(
        self,
        backend: ModuleType,
        tmp_path: Path,
        sources: dict[tuple[str, int], tuple[Path, str]],
        encoding: str,
        newline: str,
        size: int,
        limit: int,
    ) -> None:
        """Under RLIMIT_FSIZE, the count is the characters whose bytes the buffer accepted."""
        src, text = sources[ENCODINGS[encoding][0], size]
        obs = copy_and_observe(
            src,
            tmp_path / "dst",
            encoding,
            NEWLINES[newline],
            "text",
            {},
            lambda: file_size_limit(limit),
        )
        assert_exact(obs, text, encoding, NEWLINES[newline], errno.EFBIG)
        assert len(obs["landed"]) <= limit

    @pytest.mark.parametrize(("size", "limit"), LIMITS)
    @pytest.mark.parametrize(("writer", "path"), WRITER_PATHS)
    def test_writers_and_paths(
        self,
        backend: ModuleType,
        tmp_path: Path,
        sources: dict[tuple[str, int], tuple[Path, str]],
        writer: str,
        path: str,
        size: int,
        limit: int,
    ) -> None:
        """Every text writer and path: UTF-8 of 1 to 4 bytes a character, newlines as "\\r\\n"."""
        src, text = sources["multi", max(size, 300_000)]  # more than the 256 KiB buffer holds
        obs = copy_and_observe(
            src,
            tmp_path / "dst",
            "utf8",
            "\r\n",
            writer,
            PATHS[path],
            lambda: file_size_limit(limit),
        )
        assert_exact(obs, text, "utf8", "\r\n", errno.EFBIG)
        assert len(obs["landed"]) <= limit


#: Bytes the tmpfs has room for when the copy starts (it allocates whole pages); every
#: source below is larger than the whole tmpfs.
ENOSPC_ROOM = [4 * KiB, 68 * KiB, 96 * KiB, 200 * KiB]


class TestDiskFull:
    @pytest.mark.parametrize("room", ENOSPC_ROOM)
    @pytest.mark.parametrize("newline", list(NEWLINES))
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_encodings_and_newlines(
        self,
        backend: ModuleType,
        sources: dict[tuple[str, int], tuple[Path, str]],
        tmpfs: Path,
        encoding: str,
        newline: str,
        room: int,
    ) -> None:
        """On a full tmpfs, the count is the characters whose bytes the buffer accepted."""
        src, text = sources[ENCODINGS[encoding][0], 600_000]
        dst = tmpfs / "dst"
        try:
            obs = copy_and_observe(
                src, dst, encoding, NEWLINES[newline], "text", {}, lambda: room_left(tmpfs, room)
            )
        finally:
            dst.unlink()
        assert_exact(obs, text, encoding, NEWLINES[newline], errno.ENOSPC)
        assert len(obs["landed"]) <= room

    @pytest.mark.parametrize("room", [4 * KiB, 68 * KiB])
    @pytest.mark.parametrize(("writer", "path"), WRITER_PATHS)
    def test_writers_and_paths(
        self,
        backend: ModuleType,
        sources: dict[tuple[str, int], tuple[Path, str]],
        tmpfs: Path,
        writer: str,
        path: str,
        room: int,
    ) -> None:
        """Every text writer and path on a full tmpfs: UTF-8, newlines as "\\r\\n"."""
        src, text = sources["multi", 600_000]
        dst = tmpfs / "dst"
        try:
            obs = copy_and_observe(
                src, dst, "utf8", "\r\n", writer, PATHS[path], lambda: room_left(tmpfs, room)
            )
        finally:
            dst.unlink()
        assert_exact(obs, text, "utf8", "\r\n", errno.ENOSPC)
        assert len(obs["landed"]) <= room


# --- the documented limit: encoders with state between characters -------------------


class TestStatefulEncoder:
    @pytest.mark.parametrize("limit", [1, 8192, 100_001])
    def test_count_stops_at_whole_writes(
        self,
        backend: ModuleType,
        tmp_path: Path,
        sources: dict[tuple[str, int], tuple[Path, str]],
        limit: int,
    ) -> None:
        """utf-7: the count is whole writes the buffer accepted, never past the buffer's move."""
        src, text = sources["ascii", 300_000]  # utf-7 writes these letters as they are
        dst = tmp_path / "dst"
        with (
            open(src, encoding="utf-8", newline="") as fsrc,
            open(dst, "w", encoding="utf-7") as fdst,
        ):
            with file_size_limit(limit), pytest.raises(OSError, match="File too large") as info:
                zerocopy.copyfileobj(fsrc, fdst, 1000)
            moved = fdst.buffer.tell()
            chunk_size = fdst._CHUNK_SIZE
            with contextlib.suppress(OSError):
                fdst.close()
        count = zerocopy.bytes_transferred(info.value)
        assert info.value.errno == errno.EFBIG
        assert count is not None
        assert count % 1000 == 0, count  # writes of 1000 characters, each all or nothing
        assert count <= moved < count + 1000, (count, moved)
        assert dst.read_bytes() == text[:moved].encode("utf-7")
        assert chunk_size == 8192


# --- nothing fails: shutil's result -------------------------------------------------


class TestSameAsShutil:
    @pytest.mark.parametrize("path", ["default", "length-1000", "length-negative"])
    @pytest.mark.parametrize("newline", list(NEWLINES))
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    def test_bytes_positions_and_count(
        self,
        backend: ModuleType,
        tmp_path: Path,
        sources: dict[tuple[str, int], tuple[Path, str]],
        encoding: str,
        newline: str,
        path: str,
    ) -> None:
        """Text onto text, some pending: shutil's bytes and positions, the wrapper as it was."""
        src, text = sources[ENCODINGS[encoding][0], 300_000]
        length = PATHS[path].get("length", 0)

        def play(copy: Callable[..., Any], dst: Path) -> dict[str, Any]:
            with (
                open(src, encoding="utf-8", newline="") as fsrc,
                open(dst, "w", encoding=ENCODINGS[encoding][1], newline=NEWLINES[newline]) as fdst,
            ):
                fsrc.read(7)
                fdst.write("head\n")  # pending in the wrapper: goes first
                returned = copy(fsrc, fdst, length)
                tells = (fsrc.tell(), fdst.tell(), fdst._CHUNK_SIZE)
            return {"tells": tells, "landed": dst.read_bytes(), "returned": returned}

        ref = play(shutil.copyfileobj, tmp_path / "ref")
        got = play(zerocopy.copyfileobj, tmp_path / "dst")
        assert got["landed"] == ref["landed"]
        assert got["tells"] == ref["tells"]
        assert got["returned"] == len(text) - 7  # characters, as it always was (shutil: None)

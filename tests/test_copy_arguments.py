"""copyfileobj's count, progress and arguments, and copies interrupted by an
exception from progress or a signal handler.

Every test runs on both backends (the ``backend`` fixture).
"""

from __future__ import annotations

import errno
import io
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import hang_guard
from copykit import TAIL, KiB, MiB, Peers, assert_arrived, inject, make_pair, payload


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


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
            fsrc, fdst, finish = make_pair(peers, src_kind, dst_kind, data)
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

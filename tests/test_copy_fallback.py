"""copyfileobj's fallback chain and its real failures: every "unsupported"
errno on every fast path falls back, other errors propagate with
bytes_transferred, no copy leaves an fd behind, and each pair of fds takes the
method the design names.

Every test runs on both backends (the ``backend`` fixture).  Errnos are
injected the way CPython's test_shutil does it: the low-level call a fast path
makes is replaced, for one test, by one that fails on its first call.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import socket
import stat
import struct
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import hang_guard, tcp_pair
from copykit import (
    MiB,
    Peers,
    always_fail,
    assert_arrived,
    assert_same,
    by_hand,
    inject,
    make_pair,
    observe,
    payload,
    read_exactly,
    run_child,
    with_zerocopy,
)
from zerocopy import _backend, _pipes


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


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


def _break_also_cfr(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # To reach sendfile on file->file, copy_file_range has to give up first.
    if path == "file->file:sendfile-too":
        monkeypatch.setattr(_backend.current(), "copy_file_range", always_fail(errno.EXDEV))


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
            ref = observe(by_hand(None), *make_pair(peers, src_kind, dst_kind, data))
        _break_also_cfr(monkeypatch, path)
        stand_in = inject(monkeypatch, call, err, when=when)
        with Peers(tmp_path) as peers:
            got = observe(with_zerocopy(), *make_pair(peers, src_kind, dst_kind, data))
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
            ref = observe(by_hand(None), *make_pair(peers, src_kind, dst_kind, data))
        _break_also_cfr(monkeypatch, path)
        stand_in = inject(monkeypatch, call, 0, when=when)
        with Peers(tmp_path) as peers:
            got = observe(with_zerocopy(), *make_pair(peers, src_kind, dst_kind, data))
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
            fsrc, fdst, finish = make_pair(peers, src_kind, dst_kind, data)
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
            # shutil's loop moved two chunks before the kernel took over.
            assert moved == 2 * 64 * 1024 + 4096
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
            fsrc, fdst, finish = make_pair(peers, src_kind, dst_kind, data)
            start = {"file": 5, "pre-read": 16}.get(src_kind, 0)
            with pytest.raises(OSError, match=os.strerror(err)) as info:
                zerocopy.copyfileobj(fsrc, fdst)
            content = finish()
        exc = info.value
        assert type(exc) is type(OSError(err, "x"))
        assert exc.errno == err
        moved = exc.bytes_transferred  # type: ignore[attr-defined]
        if src_kind == "file":
            assert moved == 2 * 64 * 1024  # shutil's loop's two chunks; then the kernel failed
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
        out = run_child(backend, script, src_kind, str(tmp_path / "efbig"))
        ref, got = out["shutil"], out["zerocopy"]
        assert ref["exc"] == got["exc"] == "OSError"
        assert ref["errno"] == got["errno"] == errno.EFBIG
        assert got["size"] == 700_001
        assert got["bytes_transferred"] == 700_001 - 1_000
        assert got["intact"]


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
            fsrc, fdst, finish = make_pair(peers, src_kind, dst_kind, data)
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
            fsrc, fdst, finish = make_pair(peers, src_kind, dst_kind, data)
            start = 5 if src_kind == "file" else 0
            n = zerocopy.copyfileobj(fsrc, fdst)
            content = finish()
        assert zerocopy.last_method() == method
        assert n == len(data) - start
        if dst_kind == "file":
            assert content == b"Z" * 20 + b"unflushed" + data[start:]
        else:
            assert content == data[start:]

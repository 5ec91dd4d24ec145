"""Fault injection for the copies (copyfileobj, copyfile), on every backend.

Each test drives a real copy into a fault: a full disk (a 1 MiB tmpfs,
mounted by the test), a file-size limit (``RLIMIT_FSIZE`` -> EFBIG, in a
subprocess), a peer that resets or closes at a random point, a signal every
millisecond (with a handler that returns, and one that raises), non-blocking
fds where blocking ones were expected, an fd replaced or shut down by another
thread, a source file truncated or grown, full pipes, and an io object closed
under the copy.

After each, the promises checked are: the error is the documented one,
``bytes_transferred`` equals what reached the destination, the destination
holds exactly the bytes before that point, no fd is leaked (the default pipe
pool's idle pipes aside) and no thread is left behind.  The machinery the
capabilities share (peers, signal scenarios, subprocess harnesses) is in
``tests/faultkit``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import tcp_pair
from faultkit import KiB, MiB
from faultkit.peers import (
    PEER_SIZE,
    SEEDS,
    SLOW,
    Feeder,
    Peer,
    assert_prefix,
    check_file_truncated_while_sent,
    check_receiver_gone_mid_file,
    check_socket_shut_down_by_another_thread,
    file_bytes,
    later,
    random_bytes,
    set_nonblocking,
    stop_point,
)
from faultkit.signals import (
    check_count_and_position_are_exact,
    check_handler_that_raises,
    check_handler_that_returns,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A fresh 1 MiB tmpfs mounted in a temporary directory, unmounted afterwards."""
    if os.geteuid() != 0:  # pragma: no cover - these runs are as root
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE tests cover the non-root case")
    where = Path(tempfile.mkdtemp(prefix="zc-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


# --- disk full --------------------------------------------------------------------


FULL_SIZE = 3 * MiB  # more than the 1 MiB tmpfs takes


def _fill_from(kind: str, data: bytes, tmp_path: Path, tmpfs: Path) -> Any:
    """Open a source of *kind* holding *data*; returns (object, cleanup)."""
    if kind in ("file", "raw-file"):
        path = tmp_path / "src"
        path.write_bytes(data)
        return open(path, "rb", buffering=0 if kind == "raw-file" else -1), None
    if kind == "file-same-fs":
        # On the tmpfs itself, so copy_file_range has no EXDEV to give.
        path = tmpfs / "src"
        path.write_bytes(data)
        return open(path, "rb"), None
    if kind == "socket":
        a, b = socket.socketpair()
        feeder = Feeder(b, data, end="close")
        feeder.start()
        return a.makefile("rb"), (a, feeder)
    r, w = os.pipe()
    feeder = Feeder(w, data, end="close")
    feeder.start()
    return open(r, "rb"), (None, feeder)


class TestDiskFull:
    @pytest.mark.parametrize("kind", ["file", "raw-file", "file-same-fs", "socket", "pipe"])
    def test_copyfileobj_stops_with_enospc(
        self, backend: ModuleType, tmp_path: Path, tmpfs: Path, kind: str
    ) -> None:
        """ENOSPC ends copyfileobj with bytes_transferred equal to the bytes on disk."""
        # The same-fs source takes 640 KiB of the tmpfs itself: 384 KiB are left.
        data = random_bytes(640 * KiB if kind == "file-same-fs" else FULL_SIZE)
        src, extra = _fill_from(kind, data, tmp_path, tmpfs)
        dst_path = tmpfs / "dst"
        try:
            with src, open(dst_path, "wb") as dst:
                with pytest.raises(OSError, match="No space left") as info:
                    zerocopy.copyfileobj(src, dst)
                exc = info.value
                landed = os.path.getsize(dst_path)
                assert dst.tell() == landed
                if kind.endswith("file") or kind == "file-same-fs":
                    assert src.tell() == landed
        finally:
            if extra is not None:
                sock, feeder = extra
                if sock is not None:
                    sock.close()
                feeder.finish()
        assert exc.errno == errno.ENOSPC
        assert exc.bytes_transferred == landed > 0  # type: ignore[attr-defined]
        assert_prefix(file_bytes(dst_path), data)

    def test_copyfile_stops_with_enospc(
        self, backend: ModuleType, tmp_path: Path, tmpfs: Path
    ) -> None:
        """copyfile onto a full disk raises ENOSPC with the partial file's exact size."""
        data = random_bytes(FULL_SIZE)
        src = tmp_path / "src"
        src.write_bytes(data)
        with pytest.raises(OSError, match="No space left") as info:
            zerocopy.copyfile(src, tmpfs / "dst")
        landed = file_bytes(tmpfs / "dst")
        assert info.value.errno == errno.ENOSPC
        assert info.value.bytes_transferred == len(landed) > 0  # type: ignore[attr-defined]
        assert_prefix(landed, data)

    def test_buffered_bytes_ahead_of_the_copy(
        self, backend: ModuleType, tmp_path: Path, tmpfs: Path
    ) -> None:
        """Bytes a BufferedWriter held before the copy are on disk ahead of the copied prefix."""
        head = b"H" * 1000
        data = random_bytes(FULL_SIZE)
        (tmp_path / "src").write_bytes(data)
        with open(tmp_path / "src", "rb") as src, open(tmpfs / "dst", "wb") as dst:
            dst.write(head)
            with pytest.raises(OSError, match="No space left") as info:
                zerocopy.copyfileobj(src, dst)
        landed = file_bytes(tmpfs / "dst")
        assert landed[: len(head)] == head
        assert info.value.bytes_transferred == len(landed) - len(head)  # type: ignore[attr-defined]
        assert_prefix(landed[len(head) :], data)


# --- file size limit (EFBIG), in a subprocess -------------------------------------

_EFBIG_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, socket, sys, threading
    import zerocopy

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    LIMIT = int(sys.argv[2])
    where = sys.argv[1]
    data = os.urandom(3 * LIMIT)
    src = os.path.join(where, "src")
    with open(src, "wb") as f:
        f.write(data)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))

    def feed(write, close):
        try:
            write(data)
        except OSError:
            pass
        close()

    results = []
    for mode in ["file", "raw-file", "socket", "pipe", "copyfile"]:
        dst = os.path.join(where, "dst-" + mode)
        exc = None
        thread = None
        try:
            if mode == "copyfile":
                zerocopy.copyfile(src, dst)
            elif mode in ("file", "raw-file"):
                b = 0 if mode == "raw-file" else -1
                with open(src, "rb", buffering=b) as f, open(dst, "wb", buffering=b) as o:
                    zerocopy.copyfileobj(f, o)
            elif mode == "socket":
                a, peer = socket.socketpair()
                thread = threading.Thread(target=feed, args=(peer.sendall, peer.close))
                thread.start()
                with a, a.makefile("rb") as r, open(dst, "wb") as o:
                    zerocopy.copyfileobj(r, o)
            else:
                r, w = os.pipe()
                def write_all(d, w=w):
                    view = memoryview(d)
                    while view:
                        view = view[os.write(w, view):]
                thread = threading.Thread(target=feed, args=(write_all, lambda: os.close(w)))
                thread.start()
                with open(r, "rb") as rf, open(dst, "wb") as o:
                    zerocopy.copyfileobj(rf, o)
        except OSError as e:
            exc = e
        if thread is not None:
            thread.join()
        with open(dst, "rb") as f:
            landed = f.read()
        results.append({
            "mode": mode,
            "errno": getattr(exc, "errno", None),
            "bytes_transferred": getattr(exc, "bytes_transferred", None),
            "size": len(landed),
            "prefix": landed == data[:len(landed)],
            "method": zerocopy.last_method(),
        })
    print(json.dumps({"backend": zerocopy.BACKEND, "results": results}))
    """
)


class TestFileTooBig:
    def test_rlimit_fsize_gives_efbig_with_exact_counts(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """Under RLIMIT_FSIZE every copy path raises EFBIG with bytes_transferred == file size."""
        limit = 256 * KiB
        env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
        proc = subprocess.run(
            [sys.executable, "-c", _EFBIG_CHILD, str(tmp_path), str(limit)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["backend"] == backend.NAME
        assert [r["mode"] for r in report["results"]] == [
            "file",
            "raw-file",
            "socket",
            "pipe",
            "copyfile",
        ]
        for r in report["results"]:
            assert r["errno"] == errno.EFBIG, r
            assert r["bytes_transferred"] == r["size"] == limit, r
            assert r["prefix"], r


# --- peers that go away -------------------------------------------------------------


class TestPeerGone:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("how", ["reset", "close"])
    @pytest.mark.parametrize("api", ["copyfileobj"])
    def test_receiver_gone_mid_file(
        self, backend: ModuleType, tmp_path: Path, api: str, how: str, seed: int
    ) -> None:
        """A receiver that resets or closes at a random point ends the send with an OSError."""
        check_receiver_gone_mid_file(tmp_path, api, how, seed)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_sender_resets_mid_stream(self, backend: ModuleType, tmp_path: Path, seed: int) -> None:
        """A TCP source that resets mid-stream: the file holds exactly bytes_transferred bytes."""
        data = random_bytes(PEER_SIZE, seed)
        cut = stop_point(seed)
        a, b = tcp_pair()
        feeder = Feeder(b, data[:cut], end="reset")
        feeder.start()
        dst = tmp_path / "dst"
        outcome: Any
        with a, a.makefile("rb") as src, open(dst, "wb") as out:
            try:
                outcome = zerocopy.copyfileobj(src, out)
            except ConnectionResetError as exc:
                outcome = exc
            position = out.tell()
        feeder.finish()
        landed = file_bytes(dst)
        assert_prefix(landed, data)
        count = outcome if isinstance(outcome, int) else outcome.bytes_transferred
        assert count == len(landed) == position <= cut

    @pytest.mark.parametrize("seed", SEEDS)
    def test_sender_closes_mid_stream(self, backend: ModuleType, tmp_path: Path, seed: int) -> None:
        """An AF_UNIX source that closes at a random point: a clean end with the exact count."""
        data = random_bytes(PEER_SIZE, seed)
        cut = stop_point(seed)
        a, b = socket.socketpair()
        feeder = Feeder(b, data[:cut], end="close")
        feeder.start()
        with a, a.makefile("rb") as src, open(tmp_path / "dst", "wb") as out:
            count = zerocopy.copyfileobj(src, out)
        feeder.finish()
        assert count == cut
        assert file_bytes(tmp_path / "dst") == data[:cut]


# --- a signal every millisecond -----------------------------------------------------


class TestSignals:
    @pytest.mark.parametrize(
        "api",
        [
            "copyfileobj:file->file",
            "copyfileobj:file->socket",
            "copyfileobj:file->pipe",
            "copyfileobj:socket->file",
            "copyfileobj:pipe->file",
            "copyfile",
        ],
    )
    def test_handler_that_returns(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """With SIGALRM every millisecond and a quiet handler, the transfer is byte-exact."""
        check_handler_that_returns(tmp_path, api)

    @pytest.mark.parametrize(
        "api",
        [
            "copyfileobj:file->file",
            "copyfileobj:file->socket",
            "copyfileobj:file->pipe",
            "copyfileobj:socket->file",
            "copyfileobj:pipe->file",
            "copyfile",
        ],
    )
    def test_handler_that_raises(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A handler's exception ends the transfer, with bytes_transferred == bytes delivered."""
        check_handler_that_raises(tmp_path, api)


class TestRaiseRightAfterACall:
    """The signal race made certain: an exception just as a delivering call returns."""

    @pytest.mark.parametrize("nth", [1, 3])
    @pytest.mark.parametrize(
        "api",
        [
            "copyfileobj:file->file",
            "copyfileobj:file->socket",
            "copyfileobj:file->pipe",
            "copyfileobj:socket->file",
            "copyfileobj:pipe->file",
            "copyfile",
        ],
    )
    def test_count_and_position_are_exact(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        api: str,
        nth: int,
    ) -> None:
        """Stop raised as the nth delivering call returns: its bytes are counted, none repeated."""
        check_count_and_position_are_exact(backend, tmp_path, monkeypatch, api, nth)


# --- non-blocking fds where blocking ones were expected ---------------------------


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def _nb_case(case: str, impl: Callable[..., Any], tmp_path: Path) -> dict[str, Any]:
    """Run one non-blocking scenario with *impl*; report what a caller can observe."""
    data = random_bytes(200 * KiB, 3)
    out_path = tmp_path / "out"
    result: dict[str, Any] = {}
    r, w = os.pipe()
    try:
        if case.startswith("source"):
            # 200 KiB queued and the writer still open: reads would block after them.
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 256 * KiB)
            os.write(w, data)
            set_nonblocking(r)
            # Both closed below, after the outcome is recorded.
            src: Any = open(r, "rb", buffering=0 if case.endswith("raw") else -1, closefd=False)  # noqa: SIM115
            dst: Any = open(out_path, "wb")  # noqa: SIM115
        else:
            # A 64 KiB pipe nobody reads: the destination fills up.
            set_nonblocking(w)
            (tmp_path / "src").write_bytes(data)
            src = open(tmp_path / "src", "rb")  # noqa: SIM115
            dst = open(w, "wb", buffering=0 if case.endswith("raw") else -1, closefd=False)  # noqa: SIM115
        try:
            returned = impl(src, dst)
            result["returned"] = "normally"
            if impl is zerocopy.copyfileobj:
                result["count"] = returned
        except OSError as exc:
            result["raised"] = type(exc).__name__
            result["written"] = getattr(exc, "characters_written", None)
        result["src_pos"] = src.tell() if src.seekable() else None
        if case.startswith("source"):
            dst.close()
            result["landed"] = file_bytes(out_path)
        else:
            # What reached the pipe, before closing the writer flushes any more.
            result["landed"] = _drain(r)
            with contextlib.suppress(OSError):
                dst.close()
        src.close()
    finally:
        os.close(r)
        os.close(w)
        with contextlib.suppress(FileNotFoundError):
            out_path.unlink()
    return result


class TestNonBlocking:
    @pytest.mark.parametrize("case", ["source-raw", "source-buffered", "dest-raw", "dest-buffered"])
    def test_copyfileobj_behaves_like_shutil(
        self, backend: ModuleType, tmp_path: Path, case: str
    ) -> None:
        """On non-blocking pipes copyfileobj does exactly what shutil.copyfileobj does."""
        ours = _nb_case(case, zerocopy.copyfileobj, tmp_path)
        theirs = _nb_case(case, shutil.copyfileobj, tmp_path)
        count = ours.pop("count", None)
        assert ours == theirs
        if count is not None and case.startswith("source"):
            assert count == len(ours["landed"])  # shutil returns None; we return the count


# --- an fd replaced or shut down by another thread -------------------------------


class TestFdGoneMidTransfer:
    @pytest.mark.parametrize("kind", ["tcp", "unix"])
    @pytest.mark.parametrize("api", ["copyfileobj"])
    def test_socket_shut_down_by_another_thread(
        self, backend: ModuleType, tmp_path: Path, kind: str, api: str
    ) -> None:
        """shutdown() from another thread ends a blocked send: BrokenPipeError, exact counts."""
        check_socket_shut_down_by_another_thread(tmp_path, kind, api)

    def test_pipe_destination_replaced_by_a_read_only_fd(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """dup2 of a read-only fd over the destination mid-copy gives an OSError, exact counts."""
        data = random_bytes(PEER_SIZE)
        (tmp_path / "src").write_bytes(data)
        r, w = os.pipe()
        peer = Peer(r, pause=SLOW)
        peer.start()

        def replace() -> None:
            ro = os.open(tmp_path / "src", os.O_RDONLY)
            os.dup2(ro, w)  # closes the pipe's write end, atomically
            os.close(ro)

        killer = later(0.05, replace)
        try:
            with (
                open(tmp_path / "src", "rb") as f,
                open(w, "wb") as out,
                pytest.raises(OSError, match="Bad file descriptor") as info,
            ):
                zerocopy.copyfileobj(f, out)
            killer.join()
            got = peer.finish()
        finally:
            os.close(r)
        assert info.value.errno == errno.EBADF
        assert info.value.bytes_transferred == len(got)  # type: ignore[attr-defined]
        assert_prefix(got, data)

    def test_pipe_source_replaced_by_dev_null(self, backend: ModuleType, tmp_path: Path) -> None:
        """dup2 of /dev/null over a pipe source mid-copy ends it (EOF or EINVAL), counts exact."""
        data = random_bytes(4 * MiB)
        r, w = os.pipe()
        feeder = Feeder(w, data, chunk=64 * KiB, pace=0.002, end="close")
        feeder.start()

        def replace() -> None:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, r)
            os.close(null)

        killer = later(0.05, replace)
        with open(r, "rb") as src, open(tmp_path / "dst", "wb") as out:
            failed: int | None = None
            try:
                count = zerocopy.copyfileobj(src, out)
            except OSError as exc:  # splice from /dev/null: EINVAL, after bytes moved
                failed = exc.errno
                count = exc.bytes_transferred  # type: ignore[attr-defined]
        assert failed in (None, errno.EINVAL)
        killer.join()
        feeder.finish()  # its write end saw EPIPE once the reader was gone
        landed = file_bytes(tmp_path / "dst")
        assert count == len(landed) < len(data)
        assert_prefix(landed, data)

    @pytest.mark.parametrize("what", ["devnull", "directory", "read-only file", "eventfd"])
    @pytest.mark.parametrize("side", ["source", "destination"])
    def test_file_fd_replaced_between_chunks(
        self, backend: ModuleType, tmp_path: Path, side: str, what: str
    ) -> None:
        """An fd dup2'd over mid-copy (file->file): an OSError or the end, counts exact."""
        data = random_bytes(20 * MiB)  # two chunks of 16 MiB: the swap comes between them
        (tmp_path / "src").write_bytes(data)
        swapped = []
        with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:

            def swap(done: int) -> None:
                if swapped or done <= 2 * 64 * 1024:
                    return  # shutil's loop's two chunks: swap between the kernel's
                if what == "devnull":
                    fd = os.open(os.devnull, os.O_RDWR)
                elif what == "directory":
                    fd = os.open(tmp_path, os.O_RDONLY)
                elif what == "read-only file":
                    fd = os.open(tmp_path / "src", os.O_RDONLY)
                else:
                    fd = os.eventfd(0, os.EFD_NONBLOCK)
                os.dup2(fd, (f if side == "source" else g).fileno())
                os.close(fd)
                swapped.append(done)

            try:
                count = zerocopy.copyfileobj(f, g, progress=swap)
                failed = None
            except OSError as exc:
                count = exc.bytes_transferred  # type: ignore[attr-defined]
                failed = exc.errno
        landed = file_bytes(tmp_path / "dst")
        assert count == len(landed)
        assert_prefix(landed, data)
        if side == "source" and what == "read-only file":
            assert failed is None  # the same bytes, through another fd: the copy goes on
            assert landed == data
        else:
            assert failed in (errno.EINVAL, errno.EISDIR, errno.EBADF)
            assert count == swapped[0]


# --- source files that change under the copy --------------------------------------


class TestSourceChanges:
    @pytest.mark.parametrize("new_size", [1 * MiB, 18 * MiB, 0])
    def test_file_truncated_during_copyfileobj(
        self, backend: ModuleType, tmp_path: Path, new_size: int
    ) -> None:
        """A source truncated after the first chunk: the copy ends at the new end, count exact."""
        data = random_bytes(24 * MiB)
        (tmp_path / "src").write_bytes(data)
        calls = []

        def progress(done: int) -> None:
            if not calls:
                os.truncate(tmp_path / "src", new_size)
            calls.append(done)

        with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
            count = zerocopy.copyfileobj(src, dst, progress=progress)
            assert src.tell() == dst.tell() == count
        first = calls[0]
        assert count == max(first, new_size)
        assert file_bytes(tmp_path / "dst") == data[:count]

    def test_file_grown_during_copyfileobj(self, backend: ModuleType, tmp_path: Path) -> None:
        """A source grown during the copy is copied to its new end (never sized from st_size)."""
        data = random_bytes(20 * MiB)
        more = random_bytes(3 * MiB, 9)
        (tmp_path / "src").write_bytes(data)
        grown = []

        def progress(done: int) -> None:
            if not grown:
                with open(tmp_path / "src", "ab") as f:
                    f.write(more)
                grown.append(done)

        with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
            count = zerocopy.copyfileobj(src, dst, progress=progress)
        assert count == len(data) + len(more)
        assert file_bytes(tmp_path / "dst") == data + more

    @pytest.mark.parametrize("api", ["copyfileobj"])
    def test_file_truncated_while_sent(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A file truncated while it goes to a slow socket ends the send early with exact counts."""
        check_file_truncated_while_sent(tmp_path, api)


# --- full pipes and stalled peers -------------------------------------------------


class TestFullPipes:
    @pytest.mark.parametrize("source", ["file", "pipe", "socket"])
    def test_destination_pipe_full_until_reader_starts(
        self, backend: ModuleType, tmp_path: Path, source: str
    ) -> None:
        """A destination pipe that stays full for 200 ms: the copy waits, then is byte-exact."""
        data = random_bytes(4 * MiB)
        r, w = os.pipe()
        gate = threading.Event()
        peer = Peer(r, gate=gate)
        peer.start()
        opener = later(0.2, gate.set)
        feeder = None
        extra: list[Any] = []
        try:
            if source == "file":
                (tmp_path / "src").write_bytes(data)
                src: Any = open(tmp_path / "src", "rb")  # noqa: SIM115 - the with below
            elif source == "pipe":
                r2, w2 = os.pipe()
                feeder = Feeder(w2, data, end="close")
                src = open(r2, "rb")  # noqa: SIM115 - the with below
            else:
                x, y = socket.socketpair()
                feeder = Feeder(y, data, end="close")
                src = x.makefile("rb")
                extra.append(x)
            if feeder is not None:
                feeder.start()
            with src, open(w, "wb") as out:
                count = zerocopy.copyfileobj(src, out)
            got = peer.finish()
        finally:
            os.close(r)
            for sock in extra:
                sock.close()
            opener.join()
            if feeder is not None:
                feeder.finish()
        assert count == len(data)
        assert got == data


# --- an io object in the way --------------------------------------------------------


class TestClosedObjects:
    def test_destination_closed_by_another_thread(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """Closing the destination object mid-copy raises (ValueError or OSError), never hangs."""
        data = random_bytes(4 * MiB)
        r, w = os.pipe()
        feeder = Feeder(w, data, chunk=64 * KiB, pace=0.002, end="close")
        feeder.start()
        out = open(tmp_path / "dst", "wb")  # noqa: SIM115 - closed after the copy
        # Replacing the fd first keeps its number from being reused by anyone.
        null = os.open(os.devnull, os.O_WRONLY)

        def close_it() -> None:
            os.dup2(null, out.fileno())

        killer = later(0.05, close_it)
        with open(r, "rb") as src:
            try:
                count: Any = zerocopy.copyfileobj(src, out)
            except (OSError, ValueError) as exc:
                count = exc
        killer.join()
        os.close(null)
        out.close()
        feeder.finish()
        landed = file_bytes(tmp_path / "dst")
        assert_prefix(landed, data)
        n = count if isinstance(count, int) else count.bytes_transferred
        # Bytes after the swap went to /dev/null: the file holds at most the count.
        assert len(landed) <= n <= len(data)

    def test_io_wrappers_with_bad_state(self, backend: ModuleType, tmp_path: Path) -> None:
        """A closed source or destination object raises ValueError as shutil does."""
        (tmp_path / "src").write_bytes(b"abc" * 50_000)
        with open(tmp_path / "src", "rb") as src:
            pass  # closed: that is the point
        with open(tmp_path / "dst", "wb") as dst:
            with pytest.raises(ValueError, match="closed file"):
                shutil.copyfileobj(src, dst)
            with pytest.raises(ValueError, match="closed file"):
                zerocopy.copyfileobj(src, dst)
        dst2 = io.BytesIO()
        dst2.close()
        with open(tmp_path / "src", "rb") as s, pytest.raises(ValueError, match="closed file"):
            zerocopy.copyfileobj(s, dst2)

"""copyfileobj conforms to shutil.copyfileobj: every scenario is played twice,
once with shutil and once with zerocopy, on fresh objects, and every
observation is compared.

Observations: the exception type (if any), the return value (zerocopy's must
equal the bytes shutil moved), the source's position and what a later read of
it returns, the destination's position, where a later write to it lands, and
the bytes at the destination after it is closed.  Each scenario runs on both
backends (the ``backend`` fixture), and, where the fd carries the bytes, the
method that moved them is checked too.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import io
import itertools
import os
import random
import shutil
import socket
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import zerocopy
from conftest import hang_guard, tcp_pair

# --- Shared data ---------------------------------------------------------------

KiB = 1024
MiB = 1024 * KiB
BIG = 3 * MiB + 5
#: (size, length) pairs: every length for small sizes, the big size only
#: with the two lengths that change nothing but the chunking (0 and -1).
SIZE_LENGTHS = [
    (0, 0),
    (0, -1),
    (1, 0),
    (1, 1),
    (1, 4096),
    (1, -1),
    (4095, 0),
    (4095, 1),
    (4095, 4096),
    (4095, -1),
    (64 * KiB + 17, 0),
    (64 * KiB + 17, 4096),
    (64 * KiB + 17, -1),
    (BIG, 0),
    (BIG, -1),
]
#: Written to the destination after the copy: shows where a later write lands.
TAIL = b"<<tail-after-copy:9f2c>>"
PRE_READ = 7
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_counter = itertools.count()


@functools.cache
def payload(size: int) -> bytes:
    """Deterministic random bytes: any reordering or loss shows."""
    return random.Random(size).randbytes(size)


@functools.cache
def gzipped(size: int) -> bytes:
    return gzip.compress(payload(size), compresslevel=1, mtime=0)


@functools.cache
def zipped(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("member", payload(size))
    return buf.getvalue()


@functools.cache
def tarred(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("member")
        info.size = size
        tf.addfile(info, io.BytesIO(payload(size)))
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no scenario here may take 60 s."""
    with hang_guard(60):
        yield


# --- One run's objects, peers and clean-up ------------------------------------


class Run:
    """The objects, files and peer threads of one play of a scenario."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.closers: list[Callable[[], object]] = []
        self.threads: list[threading.Thread] = []
        self.paths: list[Path] = []

    def path(self, stem: str, content: bytes | None = None) -> Path:
        p = self.tmp / f"{stem}-{next(_counter)}"
        self.paths.append(p)
        if content is not None:
            p.write_bytes(content)
        return p

    def closing(self, obj: Any) -> Any:
        self.closers.append(obj.close)
        return obj

    def fd(self, fd: int) -> int:
        self.closers.append(lambda: os.close(fd))
        return fd

    def thread(self, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append(t)

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


def _send_all_then_close(sock: socket.socket, data: bytes) -> Callable[[], None]:
    def run() -> None:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reading side went away: the copy failed, which is observed there
        finally:
            sock.close()

    return run


def _write_all_then_close(fd: int, data: bytes) -> Callable[[], None]:
    def run() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            pass
        finally:
            os.close(fd)

    return run


def _collect(read: Callable[[int], bytes], sink: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        while True:
            try:
                chunk = read(256 * KiB)
            except OSError:
                return
            if not chunk:
                return
            sink.append(chunk)

    return run


# --- Sources ------------------------------------------------------------------

FILE, PREREAD, PIPE, SOCK, PLAIN, OTHER = "file", "preread", "pipe", "sock", "plain", "other"


@dataclass(frozen=True)
class SourceKind:
    id: str
    make: Callable[[Run, bytes], Any]
    category: str


def _file(run: Run, data: bytes, mode: str = "rb", **kw: Any) -> Any:
    return run.closing(open(run.path("src", data), mode, **kw))


def _src_rb(run: Run, data: bytes) -> Any:
    return _file(run, data)


def _src_fileio(run: Run, data: bytes) -> Any:
    return _file(run, data, buffering=0)


def _src_rb_preread(run: Run, data: bytes) -> Any:
    f = _file(run, data)
    f.read(PRE_READ)
    return f


def _src_rb_seek(run: Run, data: bytes) -> Any:
    f = _file(run, data)
    f.seek(len(data) // 3)
    return f


def _src_fileio_lseek(run: Run, data: bytes) -> Any:
    f = _file(run, data, buffering=0)
    os.lseek(f.fileno(), len(data) // 3, os.SEEK_SET)
    return f


def _src_rb_lseek(run: Run, data: bytes) -> Any:
    f = _file(run, data)
    os.lseek(f.fileno(), len(data) // 3, os.SEEK_SET)
    return f


def _src_rb_preread_lseek(run: Run, data: bytes) -> Any:
    # The object and its fd disagree: shutil reads the object's view (its
    # read-ahead first, then the fd from where lseek put it).
    f = _file(run, data)
    f.read(PRE_READ)
    os.lseek(f.fileno(), len(data) // 3, os.SEEK_SET)
    return f


def _src_rplusb_preread(run: Run, data: bytes) -> Any:
    f = _file(run, data, "r+b")
    f.read(5)
    return f


def _src_rplusb_dirty(run: Run, data: bytes) -> Any:
    f = _file(run, data, "r+b")
    f.write(b"WXYZ")  # unflushed: a plain copy reads on after these bytes
    return f


def _src_gzip(run: Run, data: bytes) -> Any:
    return run.closing(gzip.GzipFile(run.path("src.gz", gzipped(len(data))), "rb"))


def _src_zip(run: Run, data: bytes) -> Any:
    zf = run.closing(zipfile.ZipFile(run.path("src.zip", zipped(len(data)))))
    return run.closing(zf.open("member"))


def _src_tar(run: Run, data: bytes) -> Any:
    tf = run.closing(tarfile.open(run.path("src.tar", tarred(len(data)))))  # noqa: SIM115
    return run.closing(tf.extractfile("member"))


def _src_spooled(run: Run, data: bytes) -> Any:
    f = run.closing(tempfile.SpooledTemporaryFile(max_size=16 * MiB))  # noqa: SIM115
    f.write(data)
    f.seek(0)
    return f


def _src_spooled_rolled(run: Run, data: bytes) -> Any:
    f = _src_spooled(run, data)
    f.rollover()  # now backed by a real file whose fd holds the bytes
    return f


def _pipe_source(run: Run, data: bytes, buffering: int = -1, prefill: int = 0) -> Any:
    r, w = os.pipe()
    if prefill:
        fcntl.fcntl(w, _F_SETPIPE_SZ, 1 * MiB)
        head = data[:prefill]
        view = memoryview(head)
        while view:
            view = view[os.write(w, view) :]
        data = data[prefill:]
    run.thread(_write_all_then_close(w, data))
    return run.closing(open(r, "rb", buffering=buffering))


def _src_pipe(run: Run, data: bytes) -> Any:
    return _pipe_source(run, data)


def _src_pipe_preread(run: Run, data: bytes) -> Any:
    f = _pipe_source(run, data)
    f.read(PRE_READ)
    return f


def _src_pipe_bigbuf_preread(run: Run, data: bytes) -> Any:
    # A reader with a 1 MiB buffer over a 1 MiB pipe that already holds up to
    # 1 MiB: the pre-read pulls all of it into the buffer.
    f = _pipe_source(run, data, buffering=1 * MiB, prefill=min(len(data), 1 * MiB))
    f.read(PRE_READ)
    return f


def _socketpair_source(run: Run, data: bytes) -> Any:
    a, b = socket.socketpair()
    run.closing(a)
    run.thread(_send_all_then_close(b, data))
    return run.closing(a.makefile("rb"))


def _src_socketpair(run: Run, data: bytes) -> Any:
    return _socketpair_source(run, data)


def _src_socketpair_preread(run: Run, data: bytes) -> Any:
    f = _socketpair_source(run, data)
    f.read(PRE_READ)
    return f


def _src_tcp(run: Run, data: bytes) -> Any:
    client, server = tcp_pair()
    run.closing(client)
    run.thread(_send_all_then_close(server, data))
    return run.closing(client.makefile("rb"))


def _src_fileio_on_socket(run: Run, data: bytes) -> Any:
    # A FileIO over a socket fd: its fd carries the bytes, but it is no
    # SocketIO, so it must not be mistaken for one.
    a, b = socket.socketpair()
    run.closing(a)
    run.thread(_send_all_then_close(b, data))
    return run.closing(open(a.fileno(), "rb", buffering=0, closefd=False))


def _src_bytesio(run: Run, data: bytes) -> Any:
    return io.BytesIO(data)


class ReadOnlySource:
    """A user class with nothing but read()."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


class DecoySource(ReadOnlySource):
    """read() returns the payload; fileno() belongs to a file holding other bytes."""

    def __init__(self, data: bytes, decoy_fd: int) -> None:
        super().__init__(data)
        self._fd = decoy_fd

    def fileno(self) -> int:
        return self._fd


def _src_user(run: Run, data: bytes) -> Any:
    return ReadOnlySource(data)


def _src_decoy(run: Run, data: bytes) -> Any:
    decoy = run.closing(open(run.path("decoy", b"DECOY!" * 1000), "rb"))  # noqa: SIM115
    return DecoySource(data, decoy.fileno())


SOURCES = [
    SourceKind("rb", _src_rb, FILE),
    SourceKind("fileio", _src_fileio, FILE),
    SourceKind("rb-preread", _src_rb_preread, PREREAD),
    SourceKind("rb-seek", _src_rb_seek, FILE),
    SourceKind("fileio-lseek", _src_fileio_lseek, FILE),
    SourceKind("rb-lseek", _src_rb_lseek, FILE),
    SourceKind("rb-preread-lseek", _src_rb_preread_lseek, PREREAD),
    SourceKind("rplusb-preread", _src_rplusb_preread, FILE),
    SourceKind("rplusb-dirty", _src_rplusb_dirty, FILE),
    SourceKind("gzip", _src_gzip, PLAIN),
    SourceKind("zip-member", _src_zip, PLAIN),
    SourceKind("tar-member", _src_tar, PLAIN),
    SourceKind("spooled", _src_spooled, PLAIN),
    SourceKind("spooled-rolled", _src_spooled_rolled, PLAIN),
    SourceKind("pipe", _src_pipe, PIPE),
    SourceKind("pipe-preread", _src_pipe_preread, PIPE),
    SourceKind("pipe-bigbuf-preread", _src_pipe_bigbuf_preread, PIPE),
    SourceKind("socketpair", _src_socketpair, SOCK),
    SourceKind("socketpair-preread", _src_socketpair_preread, SOCK),
    SourceKind("tcp", _src_tcp, SOCK),
    SourceKind("fileio-on-socket", _src_fileio_on_socket, OTHER),
    SourceKind("bytesio", _src_bytesio, PLAIN),
    SourceKind("user-readonly", _src_user, PLAIN),
    SourceKind("decoy-fileno", _src_decoy, PLAIN),
]


# --- Destinations -------------------------------------------------------------

APPEND, CHAR = "append", "char"


@dataclass
class Dest:
    """A destination object, how to close it and read what reached it."""

    obj: Any
    finish: Callable[[], bytes]
    #: Where the copied bytes start in the content (None: unobservable).
    start: int | None = 0


@dataclass(frozen=True)
class DestKind:
    id: str
    make: Callable[[Run], Dest]
    category: str


def _dst_file(run: Run, mode: str = "wb", prefix: bytes = b"", **kw: Any) -> tuple[Any, Path]:
    p = run.path("dst", prefix)
    return run.closing(open(p, mode, **kw)), p


def _closed_then(obj: Any, p: Path) -> Callable[[], bytes]:
    def finish() -> bytes:
        obj.close()
        return p.read_bytes()

    return finish


def _dst_wb(run: Run) -> Dest:
    f, p = _dst_file(run)
    return Dest(f, _closed_then(f, p))


def _dst_fileio(run: Run) -> Dest:
    f, p = _dst_file(run, buffering=0)
    return Dest(f, _closed_then(f, p))


def _dst_wb_dirty(run: Run) -> Dest:
    f, p = _dst_file(run)
    f.write(b"HEAD:")  # unflushed: must come before the copied bytes
    return Dest(f, _closed_then(f, p), start=5)


def _dst_ab(run: Run) -> Dest:
    f, p = _dst_file(run, "ab", prefix=b"A" * 100)
    return Dest(f, _closed_then(f, p), start=100)


def _dst_rplusb_offset(run: Run) -> Dest:
    f, p = _dst_file(run, "r+b", prefix=b"B" * 100)
    f.seek(37)
    return Dest(f, _closed_then(f, p), start=37)


def _dst_gzip(run: Run) -> Dest:
    # The destination's bytes are compared decompressed: stored-block
    # boundaries follow the write sizes, which for a socket source depend on
    # timing, not on the copy.
    raw, p = _dst_file(run)
    f = run.closing(gzip.GzipFile("", "wb", compresslevel=0, fileobj=raw, mtime=0))

    def finish() -> bytes:
        f.close()
        raw.close()
        return p.read_bytes()

    return Dest(f, lambda: gzip.decompress(finish()))


def _dst_pipe(run: Run) -> Dest:
    r, w = os.pipe()
    run.fd(r)
    sink: list[bytes] = []
    run.thread(_collect(functools.partial(os.read, r), sink))
    f = run.closing(open(w, "wb"))  # noqa: SIM115
    threads = list(run.threads)

    def finish() -> bytes:
        f.close()
        for t in threads:
            t.join(20)
        return b"".join(sink)

    return Dest(f, finish)


def _socket_dest(run: Run, mine: socket.socket, peer: socket.socket) -> Dest:
    run.closing(mine)
    run.closing(peer)
    sink: list[bytes] = []
    run.thread(_collect(peer.recv, sink))
    f = run.closing(mine.makefile("wb"))
    threads = list(run.threads)

    def finish() -> bytes:
        f.close()
        mine.close()
        for t in threads:
            t.join(20)
        return b"".join(sink)

    return Dest(f, finish)


def _dst_socketpair(run: Run) -> Dest:
    a, b = socket.socketpair()
    return _socket_dest(run, a, b)


def _dst_tcp(run: Run) -> Dest:
    client, server = tcp_pair()
    return _socket_dest(run, client, server)


def _dst_devnull(run: Run) -> Dest:
    f = run.closing(open(os.devnull, "wb"))  # noqa: SIM115

    def finish() -> bytes:
        f.close()
        return b""

    return Dest(f, finish, start=None)


def _dst_bytesio(run: Run) -> Dest:
    f = io.BytesIO()
    return Dest(f, f.getvalue)


class WriteOnlySink:
    """A user class with nothing but write()."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, b: Any) -> int:
        self.chunks.append(bytes(b))
        return len(b)


class DecoySink(WriteOnlySink):
    """write() collects; fileno() belongs to another file, which must stay empty."""

    def __init__(self, decoy_fd: int) -> None:
        super().__init__()
        self._fd = decoy_fd

    def fileno(self) -> int:
        return self._fd


def _dst_user(run: Run) -> Dest:
    sink = WriteOnlySink()
    return Dest(sink, lambda: b"".join(sink.chunks))


def _dst_decoy(run: Run) -> Dest:
    decoy, p = _dst_file(run)
    sink = DecoySink(decoy.fileno())

    def finish() -> bytes:
        decoy.close()
        assert p.read_bytes() == b"", "bytes went to the decoy's fd"
        return b"".join(sink.chunks)

    return Dest(sink, finish)


DESTS = [
    DestKind("wb", _dst_wb, FILE),
    DestKind("fileio-wb", _dst_fileio, FILE),
    DestKind("wb-dirty", _dst_wb_dirty, FILE),
    DestKind("ab", _dst_ab, APPEND),
    DestKind("rplusb-offset", _dst_rplusb_offset, FILE),
    DestKind("gzip", _dst_gzip, PLAIN),
    DestKind("pipe", _dst_pipe, PIPE),
    DestKind("socketpair", _dst_socketpair, SOCK),
    DestKind("tcp", _dst_tcp, SOCK),
    DestKind("devnull", _dst_devnull, CHAR),
    DestKind("bytesio", _dst_bytesio, PLAIN),
    DestKind("user-writeonly", _dst_user, PLAIN),
    DestKind("decoy-fileno", _dst_decoy, PLAIN),
]


# --- Playing a scenario ---------------------------------------------------------


def attempt(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives: its value, or the type (and errno) of what it raised."""
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raises", type(exc).__name__, getattr(exc, "errno", None))


@dataclass
class Observed:
    exc: type[BaseException] | None
    returned: Any
    src_tell: tuple[str, Any]
    src_rest: tuple[str, Any]
    dst_tell: tuple[str, Any]
    dst_write: tuple[str, Any]
    content: bytes
    copied: bytes | None
    method: str | None


def play(
    copy: Callable[..., Any],
    src: SourceKind,
    dst: DestKind,
    data: bytes,
    length: int,
    tmp: Path,
) -> Observed:
    """Build fresh objects, copy with *copy*, and observe everything."""
    run = Run(tmp)
    try:
        fsrc = src.make(run, data)
        dest = dst.make(run)
        fdst = dest.obj
        exc: type[BaseException] | None = None
        returned = None
        try:
            returned = copy(fsrc, fdst, length)
        except Exception as e:
            exc = type(e)
        method = zerocopy.last_method()
        src_tell = attempt(lambda: fsrc.tell())
        src_rest = attempt(lambda: fsrc.read())
        if dst.category == CHAR:
            # /dev/null reports position 0 after any flushed write; shutil's
            # writer may still hold bytes in its buffer, zerocopy flushed
            # first: compare where both stand once flushed.
            fdst.flush()
        dst_tell = attempt(lambda: fdst.tell())
        dst_write = attempt(lambda: fdst.write(TAIL))
        content = dest.finish()
        copied = None
        if dest.start is not None and exc is None:
            end = content.find(TAIL, dest.start)
            assert end >= 0, "the later write did not reach the destination"
            copied = content[dest.start : end]
        return Observed(
            exc, returned, src_tell, src_rest, dst_tell, dst_write, content, copied, method
        )
    finally:
        run.close()


def _shutil_count(src: SourceKind, data: bytes, length: int, tmp: Path) -> int:
    """Bytes shutil moves from a fresh *src*, where the destination cannot show them."""
    counted = WriteOnlySink()
    run = Run(tmp)
    try:
        shutil.copyfileobj(src.make(run, data), counted, length)
    finally:
        run.close()
    return sum(map(len, counted.chunks))


def expected_method(src: SourceKind, dst: DestKind, size: int) -> str | None:
    """The method that must move the bulk of a copy of *size* bytes, or None to skip."""
    features = zerocopy.FEATURES
    if src.category == PLAIN or dst.category == PLAIN:
        return "read"  # the plain path: shutil's own loop
    if size < 1024 * KiB:
        # Read-ahead may hold everything, and a file copy of under 64 KiB from
        # the source's position goes through the objects: no bulk claim here.
        return None
    if features.isdisjoint({"copy_file_range", "sendfile", "splice"}):
        return "read"  # no kernel copy on this platform (macOS, Windows): shutil's loop
    if src.category == OTHER or dst.category == APPEND:
        return "readinto"
    if src.category in (FILE, PREREAD):
        want = "copy_file_range" if dst.category == FILE else "sendfile"
        if want not in features and dst.category == FILE and "sendfile" in features:
            want = "sendfile"
        return want if want in features else "readinto"
    return "splice" if "splice" in features else "readinto"


def _zerocopy(fsrc: Any, fdst: Any, length: int) -> int:
    return zerocopy.copyfileobj(fsrc, fdst, length)


def _pair_id(src: SourceKind, dst: DestKind) -> str:
    return f"{src.id}->{dst.id}"


@pytest.mark.parametrize(
    ("size", "length"),
    SIZE_LENGTHS,
    ids=[f"size{s}-len{n}" for s, n in SIZE_LENGTHS],
)
@pytest.mark.parametrize(
    ("src", "dst"),
    [(s, d) for s in SOURCES for d in DESTS],
    ids=[_pair_id(s, d) for s in SOURCES for d in DESTS],
)
class TestMatrix:
    """Every source kind x destination kind x size x length, against shutil."""

    def test_same_as_shutil(
        self,
        backend: Any,
        tmp_path: Path,
        src: SourceKind,
        dst: DestKind,
        size: int,
        length: int,
    ) -> None:
        """Bytes, positions, later reads and writes, return value and method match shutil."""
        data = payload(size)
        ref = play(shutil.copyfileobj, src, dst, data, length, tmp_path)
        got = play(_zerocopy, src, dst, data, length, tmp_path)
        assert got.exc is ref.exc
        assert got.content == ref.content, (
            f"destination differs: {len(got.content)} bytes vs shutil's {len(ref.content)}"
        )
        assert got.src_tell == ref.src_tell, "source position differs"
        assert got.src_rest == ref.src_rest, "a later read of the source differs"
        assert got.dst_tell == ref.dst_tell, "destination position differs"
        assert got.dst_write == ref.dst_write, "a later write to the destination differs"
        if ref.exc is None:
            moved = (
                len(ref.copied)
                if ref.copied is not None
                else _shutil_count(src, data, length, tmp_path)
            )
            assert got.returned == moved
        want = expected_method(src, dst, size)
        if want is not None and got.exc is None:
            assert got.method == want


# --- Failing copies ------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    id: str
    #: Builds (fsrc, fdst, finish) where finish() closes and returns what arrived.
    make: Callable[[Run, bytes], tuple[Any, Any, Callable[[], bytes]]]


def _fail_closed_source(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_rb(run, data)
    f.close()
    d = _dst_wb(run)
    return f, d.obj, d.finish


def _fail_writeonly_source(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = run.closing(open(run.path("src", data), "ab"))  # noqa: SIM115
    d = _dst_wb(run)
    return f, d.obj, d.finish


def _fail_readonly_dest(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_rb(run, data)
    p = run.path("dst", b"")
    g = run.closing(open(p, "rb"))  # noqa: SIM115
    return f, g, lambda: (g.close(), p.read_bytes())[1]


def _fail_closed_dest(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_fileio(run, data)
    d = _dst_wb(run)
    d.obj.close()
    return f, d.obj, d.finish


def _fail_text_source(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = run.closing(open(run.path("src", b"text\n" * 100), encoding="ascii"))  # noqa: SIM115
    d = _dst_wb(run)
    return f, d.obj, d.finish


def _fail_text_dest(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_rb(run, data)
    p = run.path("dst")
    g = run.closing(open(p, "w", encoding="ascii"))  # noqa: SIM115
    return f, g, lambda: (g.close(), p.read_bytes())[1]


def _fail_broken_pipe(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_rb(run, data)
    r, w = os.pipe()
    os.close(r)
    g = run.closing(open(w, "wb"))  # noqa: SIM115
    return f, g, lambda: b""


def _fail_dev_full(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_rb(run, data)
    g = run.closing(open("/dev/full", "wb"))  # noqa: SIM115
    return f, g, lambda: b""


def _fail_socket_source_closed_dest(run: Run, data: bytes) -> tuple[Any, Any, Callable[[], bytes]]:
    f = _src_socketpair(run, data)
    d = _dst_wb(run)
    d.obj.close()
    return f, d.obj, d.finish


FAILURES = [
    Failure("closed-source", _fail_closed_source),
    Failure("writeonly-source", _fail_writeonly_source),
    Failure("readonly-dest", _fail_readonly_dest),
    Failure("closed-dest", _fail_closed_dest),
    Failure("text-source", _fail_text_source),
    Failure("text-dest", _fail_text_dest),
    # Large enough that shutil's buffered writer writes (and fails) during the copy.
    Failure("broken-pipe", _fail_broken_pipe),
    Failure("dev-full", _fail_dev_full),
    Failure("socket-to-closed-dest", _fail_socket_source_closed_dest),
]


def play_failure(copy: Callable[..., Any], failure: Failure, data: bytes, tmp: Path) -> Observed:
    run = Run(tmp)
    try:
        fsrc, fdst, finish = failure.make(run, data)
        exc: type[BaseException] | None = None
        returned = None
        try:
            returned = copy(fsrc, fdst, 0)
        except Exception as e:
            exc = type(e)
        src_tell = attempt(lambda: fsrc.tell())
        dst_tell = attempt(lambda: fdst.tell())
        content = b""
        with contextlib.suppress(Exception):
            content = finish()
        return Observed(
            exc,
            returned,
            src_tell,
            ("-",),
            dst_tell,
            ("-",),
            content,
            None,
            zerocopy.last_method(),
        )
    finally:
        run.close()


@pytest.mark.parametrize("failure", FAILURES, ids=[f.id for f in FAILURES])
class TestFailures:
    """Copies that fail raise what shutil raises, leaving the source where shutil leaves it."""

    def test_same_exception_as_shutil(self, backend: Any, tmp_path: Path, failure: Failure) -> None:
        """The exception type, source position and destination bytes match shutil's."""
        data = payload(BIG)
        ref = play_failure(shutil.copyfileobj, failure, data, tmp_path)
        got = play_failure(_zerocopy, failure, data, tmp_path)
        assert ref.exc is not None, "the scenario must fail under shutil"
        assert got.exc is ref.exc
        if failure.id not in ("broken-pipe", "dev-full"):
            # Where the kernel fails, shutil has read a chunk the kernel never
            # took; elsewhere both stop at the same place.
            assert got.src_tell == ref.src_tell
        assert got.content == ref.content

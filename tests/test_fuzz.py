"""Bad input, fuzzed with hypothesis, on every public function and both backends.

Wrong types, negative and huge counts and offsets, closed and invalid fds,
and fds of the wrong kind (a directory, an eventfd, an epoll fd, both ends
of a pty, /dev/zero and /dev/null, a procfs file, a sealed memfd, UDP and
listening sockets) go to every public call.  The only acceptable outcomes are
a return value or one of the documented exceptions: :class:`TypeError`,
:class:`ValueError`, :class:`OSError` and its subclasses (``shutil``'s
errors, :class:`io.UnsupportedOperation`), :class:`NotImplementedError`
(:class:`zerocopy.UnsupportedOperation`).  Never a crash, never a hang: every
example runs under a SIGALRM watchdog, every fd that could block is
non-blocking, and files live on a small tmpfs so that no call can fill the
disk.  After every example the fixture checks that no fd of the zoo was
closed or replaced behind the test's back.

The inputs that found bugs have their own tests (:class:`TestFoundByFuzzing`)
and are left out of the strategies, so each finding shows in exactly one
test, which keeps it fixed.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import functools
import io
import math
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
import zerocopy.aio
from conftest import open_fds

KiB = 1 << 10
MiB = 1 << 20

#: What a public call may raise for bad input.
ALLOWED = (TypeError, ValueError, OSError, NotImplementedError)

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hang(BaseException):
    """Raised by the watchdog: a BaseException, so no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _late_reader(a: socket.socket, b: socket.socket) -> Iterator[bytearray]:
    """Read *b* to its end in a thread that starts 50 ms late (the sender finds it full).

    Yields the bytes read so far; on exit half-closes *a*, waits for the
    reader and closes both sockets.
    """
    got = bytearray()

    def read() -> None:
        time.sleep(0.05)
        while chunk := b.recv(1 << 20):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        yield got
    finally:
        a.shutdown(socket.SHUT_WR)
        reader.join()
        a.close()
        b.close()


@contextlib.contextmanager
def watchdog(seconds: float = 5.0) -> Iterator[None]:
    """Turn a call that blocks for *seconds* into a :class:`Hang`.

    The alarm repeats every second until the block ends, so that cleanup code
    which blocks too (asyncio.run cancelling a task that never finishes) is
    interrupted as well, rather than hanging the run.
    """
    armed = [True]

    def fire(signum: int, frame: Any) -> None:
        if armed[0]:
            raise Hang(f"no return within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        # A repeat can strike inside this very block: retry until the alarm is
        # off, or it would go on raising Hang in pytest itself.
        while True:
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                break
            except Hang:
                continue


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fn* under the watchdog; return its value or an allowed exception, else fail."""
    try:
        with watchdog():
            return fn(*args, **kwargs)
    except Hang:
        pass  # failed below, outside the handler: see _hung()
    except (*ALLOWED, zerocopy.PoolExhausted) as exc:  # PoolExhausted: BufferPool's own
        # Without its traceback: frames kept alive in a reference cycle would
        # reach the garbage collector, which crashes on cffi buffers today
        # (see TestFoundByFuzzing.test_buffer_error_in_a_reference_cycle).
        exc.__traceback__ = None
        return exc
    except BaseException as exc:
        pytest.fail(
            f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__}: {exc} "
            f"(args={args!r} kwargs={kwargs!r})"
        )
    _hung(f"{getattr(fn, '__name__', fn)} hung with args={args!r} kwargs={kwargs!r}")
    raise AssertionError("unreachable")


def _hung(message: str) -> None:
    """Fail a test whose call hung, without the Hang's traceback.

    Hang strikes wherever the interpreter is (inside asyncio, say); pytest
    cannot always render such a traceback (an entry without a line number
    makes it fail internally), and the message says all there is to say.
    """
    pytest.fail(message, pytrace=False)


# --- the zoo: fds of every kind -----------------------------------------------------

FILE_SIZE = 64 * KiB
PATTERN = bytes(range(256)) * (FILE_SIZE // 256)


def _closed_fd() -> int:
    """An fd number that is, and will stay, closed: just under the fd limit."""
    soft, _ = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    fd = min(soft, 1 << 16) - 1
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    return fd


class Zoo:
    """Open fds of every kind, under stable names, restored between examples."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.fds: dict[str, int] = {}
        self.objects: list[Any] = []  # kept alive: sockets own their fds
        self.drains: list[int] = []  # read ends emptied between examples
        (where / "data").write_bytes(PATTERN)
        (where / "rw").write_bytes(PATTERN)
        (where / "append").write_bytes(b"")
        (where / "empty").write_bytes(b"")
        (where / "dir").mkdir()
        os.mkfifo(where / "fifo")
        os.symlink(where / "data", where / "link")
        os.symlink(where / "nowhere", where / "dangling")
        self.fds["file_ro"] = os.open(where / "data", os.O_RDONLY)
        self.fds["file_rw"] = os.open(where / "rw", os.O_RDWR)
        self.fds["file_append"] = os.open(where / "append", os.O_WRONLY | os.O_APPEND)
        self.fds["file_empty"] = os.open(where / "empty", os.O_RDWR)
        self.fds["dir"] = os.open(where / "dir", os.O_RDONLY | os.O_DIRECTORY)
        for i in (1, 2):
            r, w = os.pipe()
            self.fds[f"pipe{i}_r"], self.fds[f"pipe{i}_w"] = r, w
            self.drains.append(r)
        a, b = socket.socketpair()
        self._keep(a, b)
        self.fds["unix"] = a.fileno()
        self.drains.append(b.fileno())
        with socket.create_server(("127.0.0.1", 0)) as listener:
            c = socket.create_connection(listener.getsockname())
            d, _ = listener.accept()
        self._keep(c, d)
        self.fds["tcp"] = c.fileno()
        self.drains.append(d.fileno())
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listening = socket.create_server(("127.0.0.1", 0))
        self._keep(udp, listening)
        self.fds["udp"] = udp.fileno()
        self.fds["listening"] = listening.fileno()
        self.fds["eventfd"] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        epoll = select.epoll()
        self.objects.append(epoll)
        self.fds["epoll"] = epoll.fileno()
        master, slave = pty.openpty()
        self.fds["tty_master"], self.fds["tty_slave"] = master, slave
        self.drains += [master, slave]
        self.fds["dev_null"] = os.open(os.devnull, os.O_RDWR)
        self.fds["dev_zero"] = os.open("/dev/zero", os.O_RDWR)
        self.fds["proc"] = os.open("/proc/self/stat", os.O_RDONLY)
        memfd = os.memfd_create("zoo", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        os.write(memfd, PATTERN)
        # Sealed against growth: a call copying a memfd into itself stays bounded.
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        self.fds["memfd"] = memfd
        for name, fd in self.fds.items():
            if name not in ("dir", "proc") and not name.startswith("file"):
                os.set_blocking(fd, False)
        for fd in self.drains:
            os.set_blocking(fd, False)
        self.identity = {name: self._ident(fd) for name, fd in self.fds.items()}
        self.closed = _closed_fd()

    def _keep(self, *socks: socket.socket) -> None:
        self.objects.extend(socks)

    @staticmethod
    def _ident(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)

    def reset(self) -> None:
        """Check the last example left the zoo whole; empty pipes and sockets, restore files."""
        self.check()
        for fd in self.drains:
            with contextlib.suppress(OSError):
                while os.read(fd, 1 << 20):
                    pass
        for name in ("data", "rw"):  # copyfile may have written over them
            with open(self.where / name, "r+b") as f:
                f.truncate(0)
                f.write(PATTERN)
        os.ftruncate(self.fds["file_append"], 0)
        os.ftruncate(self.fds["file_empty"], 0)
        for name in ("file_ro", "file_rw", "file_empty", "memfd", "proc", "dev_null"):
            os.lseek(self.fds[name], 0, os.SEEK_SET)

    def check(self) -> None:
        """Every fd is still open and still the same file: nothing closed or replaced it."""
        for name, fd in self.fds.items():
            assert self._ident(fd) == self.identity[name], f"zoo fd {name} ({fd}) changed"
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(self.closed)

    def close(self) -> None:
        for obj in self.objects:
            obj.close()
        for name, fd in self.fds.items():
            if name not in ("unix", "tcp", "udp", "listening", "epoll"):
                os.close(fd)


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    """The zoo, on an 8 MiB tmpfs (mounted here, unmounted after the module)."""
    where = Path(tempfile.mkdtemp(prefix="zc-zoo-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        z = Zoo(where)
        try:
            yield z
        finally:
            z.close()
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


@pytest.fixture
def fresh(zoo: Zoo) -> Iterator[Zoo]:
    """The zoo, checked after the test."""
    zoo.reset()
    yield zoo
    zoo.check()


@pytest.fixture(autouse=True)
def no_fd_leak(zoo: Zoo) -> Iterator[None]:
    """Fail a test that leaves fds behind (the zoo and idle pooled pipes aside)."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


class FakeFileno:
    """An object whose fileno() returns (or raises) whatever it was given."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def fileno(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self) -> str:
        return f"FakeFileno({self.value!r})"


ZOO_NAMES = [
    "file_ro",
    "file_rw",
    "file_append",
    "file_empty",
    "dir",
    "pipe1_r",
    "pipe1_w",
    "pipe2_r",
    "pipe2_w",
    "unix",
    "tcp",
    "udp",
    "listening",
    "eventfd",
    "epoll",
    "tty_master",
    "tty_slave",
    "dev_null",
    "dev_zero",
    "proc",
    "memfd",
    "closed",
    "huge",
]
#: /dev/zero never ends: as a source it would make any count real work.
SOURCE_NAMES = [n for n in ZOO_NAMES if n != "dev_zero"]

NOT_FDS = st.sampled_from(
    [
        None,
        -1,
        -(2**40),
        2**31,
        2**64,
        True,
        False,
        3.0,
        "3",
        b"3",
        [],
        object(),
        FakeFileno(-1),
        FakeFileno(2**40),
        FakeFileno("3"),
        FakeFileno(None),
        FakeFileno(True),
        FakeFileno(ValueError("closed file")),
        FakeFileno(io.UnsupportedOperation("fileno")),
        io.BytesIO(b"abc"),
    ]
)


def fd_arg(names: list[str]) -> st.SearchStrategy[Any]:
    """A zoo fd by name (resolved in the test), or something that is not an fd."""
    return st.one_of(st.sampled_from(names).map(lambda n: ("zoo", n)), NOT_FDS)


def resolve(zoo: Zoo, value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "zoo":
        name = value[1]
        if name == "closed":
            return zoo.closed
        if name == "huge":
            return 2**31 - 1
        return zoo.fds[name]
    return value


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [0, 1, 4095, 4096, 65536, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -1]
    ),
    st.sampled_from([1.5, "10", b"10", None, True, False, [], math.nan]),
)
OFFSETS = st.one_of(st.none(), NUMBERS)


def _not_past_int64(value: Any) -> bool:
    return not (isinstance(value, int) and value >= 2**63)


FLAGS = st.one_of(
    st.integers(-(2**33), 2**33),
    st.sampled_from(
        [
            0,
            zerocopy.SPLICE_F_MOVE,
            zerocopy.SPLICE_F_NONBLOCK,
            zerocopy.SPLICE_F_MORE,
            zerocopy.SPLICE_F_GIFT,
            zerocopy.SPLICE_F_NONBLOCK | zerocopy.SPLICE_F_MORE,
            0xFF,
        ]
    ),
    st.sampled_from([None, 1.0, "1", True]),
)


# --- the low-level calls -------------------------------------------------------------


class TestLowLevel:
    @FUZZ
    @given(out=fd_arg(ZOO_NAMES), src=fd_arg(SOURCE_NAMES), offset=OFFSETS, count=NUMBERS)
    def test_sendfile(
        self, backend: ModuleType, fresh: Zoo, out: Any, src: Any, offset: Any, count: Any
    ) -> None:
        """sendfile returns a count or raises a documented exception, whatever the input."""
        fresh.reset()
        result = outcome(zerocopy.sendfile, resolve(fresh, out), resolve(fresh, src), offset, count)
        if isinstance(result, int):
            assert 0 <= result <= FILE_SIZE * 128  # bounded by the 8 MiB tmpfs

    @FUZZ
    @given(
        src=fd_arg(SOURCE_NAMES),
        dst=fd_arg(ZOO_NAMES),
        count=NUMBERS,
        off_src=OFFSETS,
        off_dst=OFFSETS,
        flags=FLAGS,
    )
    def test_splice(
        self,
        backend: ModuleType,
        fresh: Zoo,
        src: Any,
        dst: Any,
        count: Any,
        off_src: Any,
        off_dst: Any,
        flags: Any,
    ) -> None:
        """splice returns a count or raises a documented exception, whatever the input."""
        fresh.reset()
        result = outcome(
            zerocopy.splice,
            resolve(fresh, src),
            resolve(fresh, dst),
            count,
            off_src,
            off_dst,
            flags,
        )
        if isinstance(result, int):
            assert result >= 0

    @FUZZ
    @given(src=fd_arg(SOURCE_NAMES), dst=fd_arg(ZOO_NAMES), count=NUMBERS, flags=FLAGS)
    def test_tee(
        self, backend: ModuleType, fresh: Zoo, src: Any, dst: Any, count: Any, flags: Any
    ) -> None:
        """tee returns a count or raises a documented exception (UnsupportedOperation on os)."""
        fresh.reset()
        result = outcome(zerocopy.tee, resolve(fresh, src), resolve(fresh, dst), count, flags)
        if isinstance(result, int):
            assert backend.NAME == "cffi"
            assert result >= 0

    @FUZZ
    @given(
        src=fd_arg(SOURCE_NAMES),
        dst=fd_arg(ZOO_NAMES),
        count=NUMBERS,
        off_src=OFFSETS,
        off_dst=OFFSETS,
    )
    def test_copy_file_range(
        self,
        backend: ModuleType,
        fresh: Zoo,
        src: Any,
        dst: Any,
        count: Any,
        off_src: Any,
        off_dst: Any,
    ) -> None:
        """copy_file_range returns a count or raises a documented exception."""
        fresh.reset()
        result = outcome(
            zerocopy.copy_file_range,
            resolve(fresh, src),
            resolve(fresh, dst),
            count,
            off_src,
            off_dst,
        )
        if isinstance(result, int):
            assert result >= 0

    BUFFERS = st.one_of(
        st.lists(
            st.one_of(
                st.binary(max_size=2 * KiB),
                st.binary(max_size=2 * KiB).map(bytearray),
                st.binary(max_size=2 * KiB).map(memoryview),
                st.binary(min_size=2, max_size=2 * KiB).map(lambda b: memoryview(b)[::2]),
                st.sampled_from(["text", 5, None, array.array("d", [1.0, 2.0]), object()]),
            ),
            max_size=8,
        ),
        st.sampled_from(
            [
                b"single",
                bytearray(b"single"),
                memoryview(b"single"),
                "text",
                None,
                5,
                [b""] * 2000,  # more than IOV_MAX
                (b"a", b"b"),
                iter([b"x"]),
                {b"x": 1},
            ]
        ),
    )

    @FUZZ
    @given(fd=fd_arg(ZOO_NAMES), buffers=BUFFERS, flags=FLAGS)
    def test_vmsplice(
        self, backend: ModuleType, fresh: Zoo, fd: Any, buffers: Any, flags: Any
    ) -> None:
        """vmsplice returns a count or raises a documented exception (buffers stay small)."""
        fresh.reset()  # pipes start empty: 16 KiB of buffers always fit
        if isinstance(buffers, list) and len(buffers) < 100:
            total = sum(len(memoryview(b).cast("B")) for b in buffers if _contiguous(b))
            assert total <= 16 * KiB
        result = outcome(zerocopy.vmsplice, resolve(fresh, fd), buffers, flags)
        if isinstance(result, int):
            assert result >= 0


def _contiguous(obj: Any) -> bool:
    try:
        return memoryview(obj).c_contiguous
    except TypeError:
        return False


# --- copyfileobj and copyfile ---------------------------------------------------------


FILE_OBJECTS = [
    "file_ro",
    "file_rw",
    "file_append",
    "file_empty",
    "pipe1_r",
    "pipe1_w",
    "unix",
    "tcp",
    "tty_master",
    "tty_slave",
    "eventfd",
    "epoll",
    "dev_null",
    "dev_zero",
    "proc",
    "memfd",
]


def _wrap(zoo: Zoo, spec: Any, stack: contextlib.ExitStack) -> Any:
    """Turn a strategy value into a file object over a zoo fd (never owning it)."""
    if not (isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "obj"):
        return spec
    _, name, how = spec
    if name == "bytesio":
        return io.BytesIO(PATTERN[:1000])
    if name == "stringio":
        return io.StringIO("text" * 100)
    if how.startswith("makefile") and name not in ("unix", "tcp"):
        how = "buf-r" if how == "makefile-r" else "buf-w"
    if name in ("unix", "tcp") and how.startswith("makefile"):
        sock = socket.socket(fileno=os.dup(zoo.fds[name]))
        stack.callback(sock.close)
        sock.setblocking(False)
        return stack.enter_context(sock.makefile("rb" if how == "makefile-r" else "wb"))
    if name == "closed":
        with open(zoo.fds["file_ro"], "rb", closefd=False) as f:
            return f  # closed on the way out: a closed file object
    mode = {"raw-r": "rb", "raw-w": "wb", "buf-r": "rb", "buf-w": "wb", "rand": "r+b"}[how]
    try:
        buffering = 0 if how.startswith("raw") else -1
        f = open(zoo.fds[name], mode, buffering=buffering, closefd=False)  # noqa: SIM115 - the stack
    except OSError as exc:  # r+b on a write-only fd and the like: not the code under test
        return exc
    stack.callback(_close_quietly, f)
    return f


def _close_quietly(f: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        f.close()


HOW = st.sampled_from(["raw-r", "raw-w", "buf-r", "buf-w", "rand", "makefile-r", "makefile-w"])
OTHERS = st.tuples(st.just("obj"), st.sampled_from(["bytesio", "stringio", "closed"]), st.just(""))
# Objects without read/write raise AttributeError, as in shutil: compared
# with shutil in TestFoundByFuzzing rather than fuzzed here.  /dev/zero is a
# destination only: as a source it never ends.
OBJ_SRC = st.one_of(
    st.tuples(st.just("obj"), st.sampled_from([n for n in FILE_OBJECTS if n != "dev_zero"]), HOW),
    OTHERS,
)
OBJ_DST = st.one_of(st.tuples(st.just("obj"), st.sampled_from(FILE_OBJECTS), HOW), OTHERS)
# Lengths that allocate gigabytes (as shutil's read(n) does too) are left out;
# TestFoundByFuzzing compares the extremes with shutil.
LENGTHS = st.one_of(st.integers(-(2**20), 2**20), st.sampled_from([None, True, 1.5, "1"]))
PROGRESS = st.sampled_from([None, print, lambda n: None, "not callable", 5])


def _progress(p: Any) -> Any:
    return (lambda n: None) if p is print else p


class TestCopy:
    @FUZZ
    @given(
        src=OBJ_SRC,
        dst=OBJ_DST,
        length=LENGTHS,
        # Counts beyond memory (2**40, 2**63...) with a negative length have
        # their own test: TestFoundByFuzzing.test_copyfileobj_huge_count.
        count=st.one_of(st.none(), NUMBERS.filter(lambda c: not isinstance(c, int) or c <= 2**32)),
        progress=PROGRESS,
    )
    def test_copyfileobj(
        self,
        backend: ModuleType,
        fresh: Zoo,
        src: Any,
        dst: Any,
        length: Any,
        count: Any,
        progress: Any,
    ) -> None:
        """copyfileobj returns a count or raises a documented exception, whatever it is given."""
        fresh.reset()
        with contextlib.ExitStack() as stack:
            fsrc, fdst = _wrap(fresh, src, stack), _wrap(fresh, dst, stack)
            if isinstance(fsrc, OSError) or isinstance(fdst, OSError):
                return
            result = outcome(
                zerocopy.copyfileobj, fsrc, fdst, length, count=count, progress=_progress(progress)
            )
        if isinstance(result, int):
            assert result >= 0

    PATHS = st.sampled_from(
        [
            "data",
            "rw",
            "empty",
            "dir",
            "fifo",
            "link",
            "dangling",
            "missing",
            "missing-dir/x",
            "new",
            "/dev/null",
            "/proc/self/status",
            "",
            "nul\0byte",
            None,
            3.5,
            b"data",
            object(),
        ]
    )

    @FUZZ
    @given(src=PATHS, dst=PATHS, follow=st.sampled_from([True, False, None, "yes"]))
    def test_copyfile(
        self, backend: ModuleType, fresh: Zoo, src: Any, dst: Any, follow: Any
    ) -> None:
        """copyfile returns dst or raises a documented exception (shutil's errors included)."""
        fresh.reset()

        def path(p: Any) -> Any:
            if isinstance(p, str) and p and not p.startswith("/") and "\0" not in p:
                return str(fresh.where / p)
            if isinstance(p, bytes) and p:
                return bytes(fresh.where) + b"/" + p
            return p

        s, d = path(src), path(dst)
        if d in ("/dev/null",) and s in ("/dev/null",):
            return
        result = outcome(zerocopy.copyfile, s, d, follow_symlinks=follow)
        if not isinstance(result, BaseException):
            assert result == d
        for extra in ("new", "missing-dir"):
            with contextlib.suppress(OSError):
                os.unlink(fresh.where / extra)
        with contextlib.suppress(OSError):
            os.unlink(fresh.where / "missing")

    @FUZZ
    @given(args=st.lists(st.sampled_from([None, 1, "x", object()]), max_size=2))
    def test_patch_shutil(self, backend: ModuleType, args: list[Any]) -> None:
        """patch_shutil takes no arguments; with none it patches and undoes cleanly."""
        original = shutil.copyfileobj
        result = outcome(zerocopy.patch_shutil, *args)
        if args:
            assert isinstance(result, TypeError)
        else:
            assert shutil.copyfileobj is zerocopy.copyfileobj
            result.undo()
            result.undo()
        assert shutil.copyfileobj is original


# --- send_file, relay, ZeroCopySender, BufferPool ----------------------------------------


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        while sock.recv(1 << 20):
            pass


# Offsets of 2**63 and more have their own test (TestFoundByFuzzing).
SEND_OFFSETS = NUMBERS.filter(_not_past_int64)

SOCK_KINDS = st.sampled_from(
    ["unix", "tcp", "unix-timeout", "nonblocking", "udp", "listening", "closed", "not-a-socket"]
)


@contextlib.contextmanager
def a_socket(kind: str) -> Iterator[tuple[Any, socket.socket | None]]:
    """(socket under test, its drained peer or None)."""
    if kind in ("unix", "unix-timeout", "nonblocking"):
        a, b = socket.socketpair()
        a.settimeout({"unix": 2.0, "unix-timeout": 0.05, "nonblocking": 0.0}[kind])
    elif kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        a.settimeout(2.0)
    elif kind == "udp":
        a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), None
    elif kind == "listening":
        a, b = socket.create_server(("127.0.0.1", 0)), None
        a.settimeout(0.05)
    elif kind == "closed":
        a, b = socket.socketpair()
        a.close()
    else:
        yield io.BytesIO(b"not a socket"), None
        return
    try:
        yield a, b
    finally:
        if b is not None:
            _drain(b)
            b.close()
        a.close()


class DirLike:
    """A file-like object over a directory fd: fileno() works, reading fails (EISDIR)."""

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def read(self, n: int = -1) -> bytes:
        return os.read(self.fd, max(n, 0))

    def readinto(self, buf: Any) -> int:
        return os.readv(self.fd, [buf])


SEND_FILES = st.sampled_from(
    ["regular", "regular-raw", "text", "bytesio", "closed", "pipe", "dir-like", "empty", "gzip"]
)


@contextlib.contextmanager
def a_file(kind: str, zoo: Zoo) -> Iterator[Any]:
    if kind == "bytesio":
        yield io.BytesIO(PATTERN)
        return
    if kind == "pipe":
        r, w = os.pipe()
        os.write(w, PATTERN[:1000])
        os.set_blocking(r, False)
        with open(r, "rb") as f:
            yield f
        os.close(w)
        return
    if kind == "gzip":
        import gzip

        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb") as g:
            g.write(PATTERN)
        buf.seek(0)
        with gzip.GzipFile(fileobj=buf, mode="rb") as g:
            yield g
        return
    if kind == "dir-like":
        yield DirLike(zoo.fds["dir"])
        return
    path = zoo.where / ("empty" if kind == "empty" else "data")
    mode = "r" if kind == "text" else "rb"
    f = open(path, mode, buffering=0 if kind == "regular-raw" else -1)  # noqa: SIM115 - below
    if kind == "closed":
        f.close()
    try:
        yield f
    finally:
        f.close()


class TestNet:
    @FUZZ
    @given(
        sock=SOCK_KINDS, file=SEND_FILES, offset=SEND_OFFSETS, count=st.one_of(st.none(), NUMBERS)
    )
    def test_send_file(
        self, backend: ModuleType, fresh: Zoo, sock: str, file: str, offset: Any, count: Any
    ) -> None:
        """send_file returns a count or raises a documented exception."""
        with a_socket(sock) as (s, _), a_file(file, fresh) as f:
            result = outcome(zerocopy.send_file, s, f, offset, count)
        if isinstance(result, int):
            assert 0 <= result <= FILE_SIZE

    # Short or invalid only: None would wait for peers that never end, and
    # huge or infinite ones have their own tests (TestFoundByFuzzing).
    TIMEOUTS = st.sampled_from([0, 0.01, 0.03, -1, -0.5, math.nan, "1", b"x", []])

    @FUZZ
    @given(a=SOCK_KINDS, b=SOCK_KINDS, timeout=TIMEOUTS, same=st.booleans())
    def test_relay(self, backend: ModuleType, a: str, b: str, timeout: Any, same: bool) -> None:
        """relay returns counts or raises a documented exception; the sockets keep their mode."""
        with a_socket(a) as (sa, pa), a_socket(b) as (sb, _):
            if pa is not None:
                with contextlib.suppress(OSError):  # the peer of a closed socket
                    pa.sendall(b"to b")
            sb2 = sa if same else sb
            modes = [_mode(x) for x in (sa, sb2)]
            result = outcome(zerocopy.relay, sa, sb2, timeout=timeout)
            assert [_mode(x) for x in (sa, sb2)] == modes
        if isinstance(result, tuple):
            assert all(isinstance(n, int) and n >= 0 for n in result)

    DATA = st.one_of(
        st.binary(max_size=64 * KiB),
        st.binary(max_size=4 * KiB).map(bytearray),
        st.binary(min_size=2, max_size=4 * KiB).map(lambda b: memoryview(b)[::2]),
        st.sampled_from(
            [
                "text",
                5,
                None,
                array.array("d", [1.0] * 300),
                memoryview(bytes(64)).cast("B", (8, 8)),
                object(),
            ]
        ),
    )

    @FUZZ
    @given(
        sock=SOCK_KINDS,
        threshold=st.one_of(NUMBERS, st.just(0)),
        stop=st.sampled_from([True, False, None, "x"]),
        fallback=st.sampled_from([True, False]),
        data=st.lists(DATA, max_size=3),
        flush=st.sampled_from([0, 0.05, -1, math.nan, "x", None]),
    )
    def test_zerocopy_sender(
        self,
        backend: ModuleType,
        sock: str,
        threshold: Any,
        stop: Any,
        fallback: bool,
        data: list[Any],
        flush: Any,
    ) -> None:
        """ZeroCopySender construction, send, sendall, poll and flush: documented errors only."""
        with a_socket(sock) as (s, peer):
            zc = outcome(
                zerocopy.ZeroCopySender,
                s,
                threshold=threshold,
                fallback=fallback,
                stop_on_copied=stop,
            )
            if isinstance(zc, BaseException):
                return
            for item in data:
                outcome(zc.send, item)
                outcome(zc.sendall, item)
                outcome(zc.poll)
                if peer is not None:
                    _drain(peer)
            if flush is None:
                # Wait for the completions that can come: the socket is still open.
                outcome(zc.flush, 5)
                assert zc.pending == 0
            else:
                outcome(zc.flush, flush)

    @FUZZ
    @given(
        size=st.one_of(st.integers(-10, 1 << 20), st.sampled_from([None, 1.5, "4096", True])),
        count=st.one_of(st.integers(-10, 64), st.sampled_from([None, 2.0, "2", False])),
        blocking=st.sampled_from([True, False, None, "x"]),
        timeout=st.sampled_from([None, 0, 0.01, -1, "x"]),
        # Memoryviews not from the pool; other objects: TestFoundByFuzzing.
        foreign=st.one_of(
            st.builds(lambda: memoryview(bytearray(4096))),
            st.builds(lambda: memoryview(b"x")),
            st.builds(lambda: memoryview(bytearray(10))[2:]),
        ),
    )
    def test_buffer_pool(
        self, backend: ModuleType, size: Any, count: Any, blocking: Any, timeout: Any, foreign: Any
    ) -> None:
        """BufferPool: construction, acquire until exhausted, bad releases: documented errors."""
        pool = outcome(zerocopy.BufferPool, size, count)
        if isinstance(pool, BaseException):
            return
        views = []
        for _ in range(pool.count + 1):
            v = outcome(pool.acquire, blocking=False)
            if isinstance(v, zerocopy.PoolExhausted):
                break
            views.append(v)
        assert len(views) == pool.count
        # Every buffer out: a timed acquire gives up, an untimed blocking one would wait.
        if blocking is False or (timeout is not None and not isinstance(timeout, str)):
            r = outcome(pool.acquire, blocking=blocking, timeout=timeout)
            assert isinstance(r, (zerocopy.PoolExhausted, TimeoutError, *ALLOWED)), r
        result = outcome(pool.release, foreign)
        assert isinstance(result, (TypeError, ValueError)), result
        for v in views:
            assert outcome(pool.release, v) is None
        if views:
            assert isinstance(outcome(pool.release, views[0]), ValueError)  # twice


def _mode(obj: Any) -> Any:
    with contextlib.suppress(Exception):
        return obj.gettimeout()
    return None


# --- zerocopy.aio ------------------------------------------------------------------------


def _arun(coro_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        return await coro_fn(*args, **kwargs)

    return asyncio.run(main())


class TestAio:
    @FUZZ
    @given(
        sock=SOCK_KINDS, file=SEND_FILES, offset=SEND_OFFSETS, count=st.one_of(st.none(), NUMBERS)
    )
    def test_send_file(
        self, backend: ModuleType, fresh: Zoo, sock: str, file: str, offset: Any, count: Any
    ) -> None:
        """aio.send_file returns a count or raises a documented exception."""
        with a_socket(sock) as (s, _), a_file(file, fresh) as f:
            result = outcome(_arun, zerocopy.aio.send_file, s, f, offset, count)
        if isinstance(result, int):
            assert 0 <= result <= FILE_SIZE

    @FUZZ
    @given(a=SOCK_KINDS, b=SOCK_KINDS, timeout=TestNet.TIMEOUTS.filter(lambda t: t == t))
    def test_relay(self, backend: ModuleType, a: str, b: str, timeout: Any) -> None:
        """aio.relay returns counts or raises a documented exception."""
        with a_socket(a) as (sa, pa), a_socket(b) as (sb, _):
            if pa is not None:
                with contextlib.suppress(OSError):
                    pa.sendall(b"to b")
            result = outcome(_arun, zerocopy.aio.relay, sa, sb, timeout=timeout)
        if isinstance(result, tuple):
            assert all(n >= 0 for n in result)


# --- inputs that found bugs, one test each -----------------------------------------------


_CYCLE_CHILD = textwrap.dedent(
    """
    import gc, os, socket, struct, sys
    import zerocopy

    gc.disable()  # collect only where the loop says, so every cycle is collected
    call = sys.argv[1]
    if call == "vmsplice":
        r, w = os.pipe()
        os.close(r)  # no reader: vmsplice fails with EPIPE

        def attempt():
            zerocopy.vmsplice(w, [bytearray(b"x" * 100), b"y" * 100])
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()  # a reset: every send fails
        sender = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)

        def attempt():
            sender.send(bytearray(64 * 1024))

    failures = 0
    for _ in range(200):
        try:
            attempt()
        except OSError as exc:
            failures += 1
            exc.cycle = exc  # what logging, futures or a saved last_error do
        gc.collect()
    print("survived", failures)
    """
)


def _child(code: str, backend: ModuleType) -> str:
    """Run *code* in a child python on *backend*; return its output (it must exit 0)."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            ZEROCOPY_BACKEND=backend.NAME,
            # Under scripts/sanitize: a huge malloc returns NULL (MemoryError), as
            # without AddressSanitizer, instead of aborting the child.
            ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1",
        ),
        timeout=60,
    )
    assert proc.returncode == 0, f"child: {_signal_name(proc.returncode)}: {proc.stderr[-600:]}"
    return proc.stdout.strip()


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        return signal.Signals(-returncode).name
    return f"exit status {returncode}"


LONG = 30 * 24 * 3600.0  # 30 days: more milliseconds than poll(2)'s int takes


class TestFoundByFuzzing:
    def test_relay_accepts_a_long_idle_timeout(self, backend: ModuleType) -> None:
        """relay(timeout=30 days) waits like any other timeout instead of raising OverflowError."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        timer = threading.Timer(
            0.05, lambda: (c.sendall(b"x"), c.shutdown(socket.SHUT_WR), s.shutdown(socket.SHUT_WR))
        )
        timer.start()
        try:
            with watchdog(10):
                assert zerocopy.relay(a, b, timeout=LONG) == (1, 0)
        finally:
            timer.join()
            for x in (a, b, c, s):
                x.close()

    def test_relay_infinite_timeout(self, backend: ModuleType) -> None:
        """relay(timeout=inf) means no timeout (or is a ValueError), not OverflowError."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        timer = threading.Timer(
            0.05, lambda: (c.shutdown(socket.SHUT_WR), s.shutdown(socket.SHUT_WR))
        )
        timer.start()
        try:
            with watchdog(10):
                try:
                    assert zerocopy.relay(a, b, timeout=math.inf) == (0, 0)
                except ValueError:
                    pass
        finally:
            timer.join()
            for x in (a, b, c, s):
                x.close()

    def test_send_file_on_a_socket_with_a_long_timeout(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """send_file on a socket with a 30-day timeout waits for a slow reader, no OverflowError."""
        data = os.urandom(4 * MiB)
        (tmp_path / "src").write_bytes(data)
        a, b = socket.socketpair()
        a.settimeout(LONG)
        with _late_reader(a, b) as got, watchdog(20), open(tmp_path / "src", "rb") as f:
            assert zerocopy.send_file(a, f) == len(data)
        assert bytes(got) == data

    def test_zerocopy_sender_on_a_socket_with_a_long_timeout(self, backend: ModuleType) -> None:
        """ZeroCopySender.sendall, 30-day socket timeout, slow reader: no OverflowError."""
        data = os.urandom(16 * MiB)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        a.settimeout(LONG)
        with _late_reader(a, b) as got, watchdog(20):
            zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)
            zc.sendall(data)
            zc.flush(timeout=10)
        assert bytes(got) == data

    @pytest.mark.parametrize("call", ["vmsplice", "ZeroCopySender.send"])
    def test_buffer_error_in_a_reference_cycle(
        self, request: pytest.FixtureRequest, backend: ModuleType, call: str
    ) -> None:
        """A failed call whose exception ends up in a reference cycle does not crash the GC."""
        # Found by test_vmsplice: on the cffi backend the frames of a failed
        # vmsplice or send hold a memoryview and a cffi from_buffer() export of
        # it; when a cycle (exc.cycle = exc here; contextlib, asyncio futures and
        # pytest.raises make them too) takes them to the collector, memoryview's
        # tp_clear drops its buffer while the export is live, and its dealloc
        # then dereferences NULL (SIGSEGV).  Run in a child: it kills the process.
        env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
        proc = subprocess.run(
            [sys.executable, "-c", _CYCLE_CHILD, call],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, (
            f"child died with {_signal_name(proc.returncode)}: {proc.stderr[-600:]}"
        )
        assert proc.stdout.split() == ["survived", "200"]

    def test_buffer_pool_too_big(self, backend: ModuleType) -> None:
        """A BufferPool too big to map raises ValueError or OSError (ENOMEM), not OverflowError."""
        with pytest.raises((ValueError, OSError)):
            zerocopy.BufferPool(2**62, 2)  # 2**63 bytes: mmap's length overflows

    @pytest.mark.parametrize(
        ("source", "count"),
        [("raw", 2**40), ("bytesio", 2**63)],
        ids=["MemoryError", "OverflowError"],
    )
    def test_copyfileobj_huge_count(self, backend: ModuleType, source: str, count: int) -> None:
        """A count larger than memory (or 2**63) copies everything, whatever the length."""
        # On the plain path with length < 0, the whole remaining count was
        # once passed to read(): FileIO allocates it up front (MemoryError),
        # and 2**63 does not fit a Py_ssize_t (OverflowError).  In a child: under
        # AddressSanitizer (scripts/sanitize) a 1 TiB malloc aborts the process.
        code = f"""
import io, tempfile, zerocopy
with tempfile.TemporaryFile() as f:
    f.write(b"abc" * 1000)
    f.seek(0)
    src = io.BytesIO(b"abc" * 1000) if {source!r} == "bytesio" else open(
        f.fileno(), "rb", buffering=0 if {source!r} == "raw" else -1, closefd=False)
    dst = io.BytesIO()
    try:
        print(zerocopy.copyfileobj(src, dst, -1, count={count}), dst.getvalue() == b"abc" * 1000)
    except (MemoryError, OverflowError) as exc:
        print(type(exc).__name__)
"""
        assert _child(code, backend) == "3000 True"

    def test_buffer_pool_release_of_a_non_buffer(self, backend: ModuleType) -> None:
        """BufferPool.release of something that is no memoryview raises TypeError or ValueError."""
        pool = zerocopy.BufferPool(4096, 1)
        for foreign in (bytearray(10), b"x", None, 5):  # once AttributeError ('obj')
            with pytest.raises((TypeError, ValueError)):
                pool.release(foreign)

    @pytest.mark.parametrize("length", [2**62, 2**70])
    def test_copyfileobj_absurd_length_like_shutil(self, backend: ModuleType, length: int) -> None:
        """An absurd length fails with shutil's own exception type (MemoryError, OverflowError)."""
        code = f"""
import shutil, tempfile, zerocopy
kinds = []
for impl in (shutil.copyfileobj, zerocopy.copyfileobj):
    with tempfile.TemporaryFile() as fsrc, tempfile.TemporaryFile() as fdst:
        fsrc.write(b"abc")
        fsrc.seek(0)
        try:
            impl(fsrc, fdst, {length})
            kinds.append("ok")
        except (MemoryError, OverflowError) as exc:
            kinds.append(type(exc).__name__)
print(*kinds)
"""
        shutil_kind, ours = _child(code, backend).split()  # in a child: see above
        assert ours == shutil_kind

    def test_copyfileobj_non_files_like_shutil(self, backend: ModuleType, tmp_path: Path) -> None:
        """Objects without read/write fail as in shutil (AttributeError), both ways round."""
        (tmp_path / "src").write_bytes(b"abc" * 30_000)
        for junk in (None, 3, "path", b"", object()):
            for side in ("src", "dst"):
                kinds = []
                for impl in (shutil.copyfileobj, zerocopy.copyfileobj):
                    with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:
                        args = (junk, g) if side == "src" else (f, junk)
                        try:
                            impl(*args)
                            kinds.append(None)
                        except Exception as exc:
                            kinds.append(type(exc))
                assert kinds[0] is kinds[1], (junk, side, kinds)

    def test_buffer_pool_acquire_nan_timeout(self, backend: ModuleType) -> None:
        """BufferPool.acquire(timeout=nan) on an exhausted pool returns or raises, never hangs."""
        pool = zerocopy.BufferPool(4096, 1)
        view = pool.acquire()
        hung = False
        try:
            with watchdog(3), pytest.raises((ValueError, TimeoutError)):
                pool.acquire(timeout=math.nan)
        except Hang:
            hung = True
        finally:
            pool.release(view)
        if hung:
            _hung("BufferPool.acquire(timeout=nan) never returned")

    @pytest.mark.parametrize("api", ["send_file", "aio.send_file"])
    def test_send_file_offset_past_int64(self, backend: ModuleType, api: str) -> None:
        """An offset of 2**63 or more is a ValueError for every kind of file, not OverflowError."""
        a, b = socket.socketpair()
        if api == "aio.send_file":
            a.setblocking(False)
        with a, b, open(__file__, "rb") as regular:
            for file in (io.BytesIO(b"abc"), regular):
                send: Callable[..., Any] = (
                    zerocopy.send_file
                    if api == "send_file"
                    else functools.partial(_arun, zerocopy.aio.send_file)
                )
                with pytest.raises(ValueError, match="offset"):
                    send(a, file, 2**63)

    def test_aio_relay_nan_timeout(self, backend: ModuleType) -> None:
        """aio.relay(timeout=nan) is refused (ValueError) as relay does, not waited on forever."""
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        with a, b, c, s:
            a.setblocking(False)
            b.setblocking(False)
            hung = False
            try:
                with watchdog(3), pytest.raises(ValueError, match=r"nan|NaN"):
                    _arun(zerocopy.aio.relay, a, b, timeout=math.nan)
            except Hang:
                hung = True
        if hung:
            _hung("aio.relay(timeout=nan) waited forever")

    def test_send_file_without_read_like_socket_sendfile(self, backend: ModuleType) -> None:
        """send_file(sock, object()) fails as socket.sendfile does (AttributeError in both)."""
        a, b = socket.socketpair()
        with a, b:
            kinds = []
            for impl in (socket.socket.sendfile, zerocopy.send_file):
                try:
                    impl(a, object())
                except Exception as exc:
                    kinds.append(type(exc))
            assert kinds[0] is kinds[1]

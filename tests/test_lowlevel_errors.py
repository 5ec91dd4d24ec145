"""The low-level calls' errors: what the kernel reports, arguments refused
before any call, and EINTR during a blocking splice.

Every test that takes ``backend`` runs once per backend.  References are the
payload itself (slices of it), file contents read back, and fd positions read
with ``lseek(fd, 0, SEEK_CUR)``; no kernel call is mocked.
"""

from __future__ import annotations

import errno
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

import zerocopy
from copykit import (
    appending_fixture,  # noqa: F401 - a fixture, found by pytest as appending
    closed_fd,
    dst_fixture,  # noqa: F401 - a fixture, found by pytest as dst
    fionread,
    pipe2_fixture,  # noqa: F401 - a fixture, found by pytest as pipe2
    pipe_fixture,  # noqa: F401 - a fixture, found by pytest as pipe
    pos,
    sockpair_fixture,  # noqa: F401 - a fixture, found by pytest as sockpair
    src_fd_fixture,  # noqa: F401 - a fixture, found by pytest as src_fd
    src_fixture,  # noqa: F401 - a fixture, found by pytest as src
)

pytestmark = pytest.mark.usefixtures("no_leaks")

# --- errors the kernel reports ----------------------------------------------


class TestKernelErrors:
    def test_sendfile_to_append_is_einval(
        self, backend: ModuleType, src_fd: int, appending: int, tmp_path: Path
    ) -> None:
        """sendfile into an O_APPEND file fails with EINVAL naming sendfile."""
        with pytest.raises(OSError, match="sendfile: ") as info:
            zerocopy.sendfile(appending, src_fd, None, 10)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("sendfile: ")
        assert pos(src_fd) == 0
        assert (tmp_path / "append.bin").read_bytes() == b"old"

    def test_splice_to_append_is_einval(
        self, backend: ModuleType, pipe: Any, appending: int
    ) -> None:
        """splice into an O_APPEND file fails with EINVAL; the pipe keeps its bytes."""
        r, w = pipe
        os.write(w, b"data")
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(r, appending, 4)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("splice: ")
        assert fionread(r) == 4

    def test_splice_two_files_is_einval(self, backend: ModuleType, src_fd: int, dst: Any) -> None:
        """splice between two regular files (no pipe) fails with EINVAL."""
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(src_fd, dst[1], 10)
        assert info.value.errno == errno.EINVAL
        assert info.value.strerror.startswith("splice: ")

    def test_splice_offset_on_pipe_is_espipe(
        self, backend: ModuleType, pipe: Any, dst: Any
    ) -> None:
        """An offset for a pipe end fails with ESPIPE."""
        r, w = pipe
        os.write(w, b"data")
        with pytest.raises(OSError, match="splice: ") as info:
            zerocopy.splice(r, dst[1], 4, offset_src=0)
        assert info.value.errno == errno.ESPIPE

    def test_splice_broken_pipe(self, backend: ModuleType, src_fd: int, pipe: Any) -> None:
        """Into a pipe whose reader is closed: BrokenPipeError (EPIPE) naming splice."""
        r, w = pipe
        os.close(r)
        with pytest.raises(BrokenPipeError) as info:
            zerocopy.splice(src_fd, w, 10)
        assert info.value.errno == errno.EPIPE
        assert info.value.strerror.startswith("splice: ")

    def test_sendfile_to_closed_peer(self, backend: ModuleType, src_fd: int, sockpair: Any) -> None:
        """sendfile to a socket whose peer is gone raises BrokenPipeError."""
        a, b = sockpair
        b.close()
        with pytest.raises(BrokenPipeError, match="sendfile: "):
            zerocopy.sendfile(a, src_fd, 0, 10)

    def test_sendfile_from_directory(self, backend: ModuleType, tmp_path: Path, dst: Any) -> None:
        """Reading a directory gives the matching subclass (IsADirectoryError) or EINVAL."""
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with pytest.raises(OSError, match="sendfile: ") as info:
                zerocopy.sendfile(dst[1], fd, 0, 10)
        finally:
            os.close(fd)
        assert info.value.errno in (errno.EISDIR, errno.EINVAL)
        assert type(info.value) is (
            IsADirectoryError if info.value.errno == errno.EISDIR else OSError
        )

    CALLS: ClassVar[dict[str, Callable[[int, int], Any]]] = {
        "sendfile": lambda a, b: zerocopy.sendfile(a, b, None, 1),
        "splice": lambda a, b: zerocopy.splice(a, b, 1),
        "copy_file_range": lambda a, b: zerocopy.copy_file_range(a, b, 1),
        "vmsplice": lambda a, b: zerocopy.vmsplice(a, [b"x"]),
    }

    @pytest.mark.parametrize("call", list(CALLS))
    def test_closed_fd_is_ebadf(self, backend: ModuleType, call: str) -> None:
        """A closed int fd gives OSError EBADF whose message starts with the syscall name."""
        bad = closed_fd()
        with pytest.raises(OSError, match=f"{call}: ") as info:
            self.CALLS[call](bad, bad)
        assert type(info.value) is OSError
        assert info.value.errno == errno.EBADF
        assert info.value.strerror == f"{call}: {os.strerror(errno.EBADF)}"
        assert str(info.value).startswith(f"[Errno {errno.EBADF}] {call}: ")

    def test_closed_file_object(
        self, backend: ModuleType, src: tuple[Path, bytes], pipe: Any
    ) -> None:
        """A closed file object raises its own ValueError from fileno()."""
        f = open(src[0], "rb")  # noqa: SIM115 - closed on purpose before use
        f.close()
        with pytest.raises(ValueError, match="closed file"):
            zerocopy.splice(f, pipe[1], 10)

    def test_closed_socket_object(self, backend: ModuleType, src_fd: int) -> None:
        """A closed socket (fileno() == -1) is a ValueError."""
        s = socket.socket()
        s.close()
        with pytest.raises(ValueError, match="non-negative"):
            zerocopy.sendfile(s, src_fd, 0, 10)


# --- argument checking -------------------------------------------------------


class _FakeFile:
    def __init__(self, value: Any) -> None:
        self.value = value

    def fileno(self) -> Any:
        return self.value


def _calls(a: Any, b: Any) -> dict[str, Callable[..., Any]]:
    """Each call with fd arguments a and b, and an overridable count/offset/flags."""
    return {
        "sendfile": lambda count=1, offset=None: zerocopy.sendfile(b, a, offset, count),
        "splice": lambda count=1, offset=None, flags=0: zerocopy.splice(
            a, b, count, offset, None, flags
        ),
        "splice_dst": lambda count=1, offset=None: zerocopy.splice(a, b, count, None, offset),
        "tee": lambda count=1, flags=0: zerocopy.tee(a, b, count, flags),
        "copy_file_range": lambda count=1, offset=None: zerocopy.copy_file_range(
            a, b, count, offset
        ),
        "copy_file_range_dst": lambda count=1, offset=None: zerocopy.copy_file_range(
            a, b, count, None, offset
        ),
        "vmsplice": lambda flags=0: zerocopy.vmsplice(b, [b"x"], flags),
    }


FD_CALLS = ["sendfile", "splice", "tee", "copy_file_range", "vmsplice"]
COUNT_CALLS = ["sendfile", "splice", "tee", "copy_file_range"]
OFFSET_CALLS = ["sendfile", "splice", "splice_dst", "copy_file_range", "copy_file_range_dst"]
FLAG_CALLS = ["splice", "tee", "vmsplice"]


class TestBadArguments:
    """Validation happens before any backend call, so every backend answers alike."""

    @pytest.fixture
    def fds(self, src_fd: int, pipe: Any) -> tuple[int, int, int]:
        """A readable file with data, a pipe holding data, and the pipe's write end."""
        os.write(pipe[1], b"queued")
        return src_fd, pipe[0], pipe[1]

    def _untouched(self, fds: tuple[int, int, int]) -> None:
        assert pos(fds[0]) == 0
        assert fionread(fds[1]) == 6

    @pytest.mark.parametrize("call", FD_CALLS)
    @pytest.mark.parametrize(
        "bad",
        ["3", 3.0, None, True, False, b"3", object(), _FakeFile("3"), _FakeFile(True)],
        ids=[
            "str",
            "float",
            "None",
            "True",
            "False",
            "bytes",
            "object",
            "fileno-str",
            "fileno-bool",
        ],
    )
    @pytest.mark.parametrize("which", ["first", "second"])
    def test_fd_wrong_type(
        self, backend: ModuleType, fds: Any, call: str, bad: Any, which: str
    ) -> None:
        """An fd that is not an int (bools included) nor has an int fileno() is a TypeError."""
        if call == "vmsplice" and which == "first":
            args = (fds[0], bad)  # vmsplice has one fd: the "b" slot
        else:
            args = (bad, fds[2]) if which == "first" else (fds[1], bad)
        with pytest.raises(TypeError):
            _calls(*args)[call]()
        self._untouched(fds)

    @pytest.mark.parametrize("call", FD_CALLS)
    @pytest.mark.parametrize("bad", [-1, -100, 2**31, 2**64, _FakeFile(-1)])
    def test_fd_bad_value(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """A negative or impossibly large fd is a ValueError."""
        with pytest.raises(ValueError, match="file descriptor"):
            _calls(fds[1], bad)[call]()
        if call != "vmsplice":  # vmsplice has one fd: the "b" slot
            with pytest.raises(ValueError, match="file descriptor"):
                _calls(bad, fds[2])[call]()
        self._untouched(fds)

    @pytest.mark.parametrize("call", COUNT_CALLS)
    @pytest.mark.parametrize("bad", ["1", 1.0, None, True, b"1"], ids=repr)
    def test_count_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """A count that is not an int is a TypeError."""
        with pytest.raises(TypeError, match="count"):
            _calls(fds[1], fds[2])[call](count=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", COUNT_CALLS)
    def test_count_negative(self, backend: ModuleType, fds: Any, call: str) -> None:
        """A negative count is a ValueError."""
        with pytest.raises(ValueError, match="count"):
            _calls(fds[1], fds[2])[call](count=-1)
        self._untouched(fds)

    @pytest.mark.parametrize("call", OFFSET_CALLS)
    @pytest.mark.parametrize("bad", ["0", 0.0, True, b"0", [0]], ids=repr)
    def test_offset_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """An offset that is neither None nor an int is a TypeError."""
        with pytest.raises(TypeError, match="offset"):
            _calls(fds[0], fds[2])[call](offset=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", OFFSET_CALLS)
    @pytest.mark.parametrize("bad", [-1, -(2**63), 2**63, 2**64])
    def test_offset_out_of_range(self, backend: ModuleType, fds: Any, call: str, bad: int) -> None:
        """A negative offset, or one of 2**63 and more, is a ValueError."""
        with pytest.raises(ValueError, match="offset"):
            _calls(fds[0], fds[2])[call](offset=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", FLAG_CALLS)
    @pytest.mark.parametrize("bad", [0x10, 0x100, -1, 2**40])
    def test_unknown_flags(self, backend: ModuleType, fds: Any, call: str, bad: int) -> None:
        """Flag bits outside SPLICE_F_MOVE|NONBLOCK|MORE are a ValueError."""
        # vmsplice names SPLICE_F_GIFT when that bit is among them (-1).
        with pytest.raises(ValueError, match=r"flags|GIFT"):
            _calls(fds[1], fds[2])[call](flags=bad)
        self._untouched(fds)

    @pytest.mark.parametrize("call", FLAG_CALLS)
    @pytest.mark.parametrize("bad", ["0", 0.0, None, True], ids=repr)
    def test_flags_wrong_type(self, backend: ModuleType, fds: Any, call: str, bad: Any) -> None:
        """Flags that are not an int are a TypeError."""
        with pytest.raises(TypeError, match="flags"):
            _calls(fds[1], fds[2])[call](flags=bad)
        self._untouched(fds)

    def test_index_types_accepted(
        self, backend: ModuleType, src: tuple[Path, bytes], src_fd: int, pipe: Any
    ) -> None:
        """Integer-like counts and offsets (operator.index) are accepted."""

        class Index:
            def __init__(self, n: int) -> None:
                self.n = n

            def __index__(self) -> int:
                return self.n

        r, w = pipe
        assert zerocopy.splice(src_fd, w, Index(5), offset_src=Index(10)) == 5  # type: ignore[arg-type]
        assert os.read(r, 10) == src[1][10:15]


# --- EINTR -------------------------------------------------------------------

# splice(2)'s number, to see the main thread sitting in it through /proc.
_SPLICE_NR = {"x86_64": 275, "aarch64": 76, "riscv64": 76, "ppc64le": 283, "s390x": 306}.get(
    platform.machine()
)


class _Interrupted(Exception):
    pass


def _in_splice(tid: int, stop: threading.Event, timeout: float = 10.0) -> bool:
    """Wait until thread *tid* is blocked in splice(2); False on timeout or *stop*."""
    if _SPLICE_NR is None:  # unknown arch: fall back to giving it time
        return not stop.wait(0.3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        with open(f"/proc/self/task/{tid}/syscall") as f:
            if f.read().split()[0] == str(_SPLICE_NR):
                return True
        time.sleep(0.002)
    return False


class _Signaller(threading.Thread):
    """Interrupts the main thread's splice with SIGALRM, then delivers the data.

    With ``wait_for_retry`` it waits for the handler to have run and the main
    thread to be back in splice before delivering; otherwise it delivers only
    if the main thread has not finished within a few seconds (so a failure
    does not hang).  It never signals or delivers once ``finished`` is set:
    the fds may be closed and the handler gone by then.
    """

    def __init__(self, deliver: Callable[[], None], hits: list[float], wait_for_retry: bool):
        super().__init__(daemon=True)
        self.deliver = deliver
        self.hits = hits
        self.wait_for_retry = wait_for_retry
        self.ident_main = threading.get_ident()
        self.native_main = threading.get_native_id()
        self.finished = threading.Event()
        self.problems: list[str] = []

    def run(self) -> None:
        if not _in_splice(self.native_main, self.finished):
            self.problems.append("main thread never blocked in splice")
            return
        signal.pthread_kill(self.ident_main, signal.SIGALRM)
        if self.wait_for_retry:
            deadline = time.monotonic() + 10
            while not self.hits and time.monotonic() < deadline and not self.finished.is_set():
                time.sleep(0.002)
            if not self.hits:
                self.problems.append("signal handler never ran")
            if not _in_splice(self.native_main, self.finished):
                self.problems.append("main thread did not go back into splice")
                return
            self.deliver()
        elif not self.finished.wait(5):
            self.problems.append("splice did not return after the handler raised")
            self.deliver()

    def __enter__(self) -> _Signaller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.set()
        self.join(15)
        assert not self.is_alive()


@pytest.fixture
def sigalrm() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    """Install a SIGALRM handler for the test; the old one comes back after."""
    old = signal.getsignal(signal.SIGALRM)

    def install(handler: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGALRM, handler)

    yield install
    signal.signal(signal.SIGALRM, old)


class TestEINTR:
    """A signal during a blocking splice: retried, or the handler's exception propagates."""

    DATA = b"arrived after the signal"

    def _source(self, kind: str, pipe: Any, sockpair: Any) -> tuple[int, Callable[[], None]]:
        if kind == "pipe":
            return pipe[0], lambda: os.write(pipe[1], self.DATA)  # type: ignore[return-value]
        return sockpair[1].fileno(), lambda: sockpair[0].sendall(self.DATA)

    @pytest.mark.parametrize("kind", ["pipe", "socket"])
    def test_retried_after_quiet_handler(
        self,
        backend: ModuleType,
        sigalrm: Any,
        kind: str,
        pipe: Any,
        pipe2: Any,
        sockpair: Any,
        dst: Any,
    ) -> None:
        """A handler that returns: the splice keeps waiting and completes when data comes."""
        hits: list[float] = []
        sigalrm(lambda signum, frame: hits.append(time.monotonic()))
        source, deliver = self._source(kind, pipe, sockpair)
        # pipe -> file, or socket -> pipe: one end must be a pipe.
        target = dst[1] if kind == "pipe" else pipe2[1]
        with _Signaller(deliver, hits, wait_for_retry=True) as helper:
            n = zerocopy.splice(source, target, 1000)
        assert helper.problems == []
        assert len(hits) == 1
        assert n == len(self.DATA)
        if kind == "pipe":
            assert dst[0].read_bytes() == self.DATA
        else:
            assert os.read(pipe2[0], 1000) == self.DATA

    @pytest.mark.parametrize("kind", ["pipe", "socket"])
    def test_handler_exception_propagates(
        self,
        backend: ModuleType,
        sigalrm: Any,
        kind: str,
        pipe: Any,
        pipe2: Any,
        sockpair: Any,
        dst: Any,
    ) -> None:
        """A handler that raises: its exception comes out of zerocopy.splice."""

        def handler(signum: int, frame: Any) -> None:
            raise _Interrupted

        sigalrm(handler)
        source, deliver = self._source(kind, pipe, sockpair)
        target = dst[1] if kind == "pipe" else pipe2[1]
        with _Signaller(deliver, [], wait_for_retry=False) as helper, pytest.raises(_Interrupted):
            zerocopy.splice(source, target, 1000)
        assert helper.problems == []
        assert dst[0].read_bytes() == b""

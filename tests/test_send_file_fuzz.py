"""Bad input, fuzzed with hypothesis, on send_file and aio.send_file, both backends.

Sockets of every kind (timeouts, non-blocking, UDP, listening, closed, no
socket at all), files of every kind (text, BytesIO, closed, a pipe, a
directory, gzip) and bad offsets and counts.

The only acceptable outcomes are a return value or one of the documented
exceptions: :class:`TypeError`, :class:`ValueError`, :class:`OSError` and
its subclasses (``shutil``'s errors, :class:`io.UnsupportedOperation`),
:class:`NotImplementedError` (:class:`zerocopy.UnsupportedOperation`).
After every example the fixture checks that no fd of the zoo was closed or
replaced behind the test's back.

Never a crash, never a hang: every example runs under a SIGALRM watchdog,
every fd that could block is non-blocking, and files live on a small tmpfs
so that no call can fill the disk.  The inputs that found bugs have their
own tests (:class:`TestFoundByFuzzing`) and are left out of the strategies,
so each finding shows in exactly one test, which keeps it fixed.  The
watchdog, the strategies and the zoo of fds are in ``tests/faultkit``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import zerocopy
import zerocopy.aio
from faultkit import MiB
from faultkit.fuzz import (
    FUZZ,
    LONG,
    NUMBERS,
    SEND_OFFSETS,
    SOCK_KINDS,
    a_socket,
    arun,
    late_reader,
    outcome,
    watchdog,
)
from faultkit.zoo import (
    FILE_SIZE,
    PATTERN,
    Zoo,
    mounted_zoo,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    """The zoo, on an 8 MiB tmpfs (mounted here, unmounted after the module)."""
    with mounted_zoo() as z:
        yield z


@pytest.fixture
def fresh(zoo: Zoo) -> Iterator[Zoo]:
    """The zoo, checked after the test."""
    zoo.reset()
    yield zoo
    zoo.check()


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
            result = outcome(arun, zerocopy.aio.send_file, s, f, offset, count)
        if isinstance(result, int):
            assert 0 <= result <= FILE_SIZE


class TestAnyio:
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    @FUZZ
    @given(
        sock=SOCK_KINDS, file=SEND_FILES, offset=SEND_OFFSETS, count=st.one_of(st.none(), NUMBERS)
    )
    def test_send_file(
        self,
        backend: ModuleType,
        fresh: Zoo,
        anyio_backend: str,
        sock: str,
        file: str,
        offset: Any,
        count: Any,
    ) -> None:
        """zerocopy.anyio.send_file returns a count or raises a documented exception."""
        # A pipe is read in a worker thread, and trio keeps its worker threads
        # 10 s after their job, which no_leaks counts as a leak; the pipe path on
        # trio is covered by test_send_file_anyio.py's TestNotRegular.test_pipe.
        assume(not (anyio_backend == "trio" and file == "pipe"))
        import anyio

        import zerocopy.anyio

        def run(*args: Any) -> Any:
            return anyio.run(zerocopy.anyio.send_file, *args, backend=anyio_backend)

        with a_socket(sock) as (s, _), a_file(file, fresh) as f:
            result = outcome(run, s, f, offset, count)
        if isinstance(result, int):
            assert 0 <= result <= FILE_SIZE


# --- inputs that found bugs, one test each -----------------------------------------------


class TestFoundByFuzzing:
    def test_send_file_on_a_socket_with_a_long_timeout(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """send_file on a socket with a 30-day timeout waits for a slow reader, no OverflowError."""
        data = os.urandom(4 * MiB)
        (tmp_path / "src").write_bytes(data)
        a, b = socket.socketpair()
        a.settimeout(LONG)
        with late_reader(a, b) as got, watchdog(20), open(tmp_path / "src", "rb") as f:
            assert zerocopy.send_file(a, f) == len(data)
        assert bytes(got) == data

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
                    else functools.partial(arun, zerocopy.aio.send_file)
                )
                with pytest.raises(ValueError, match="offset"):
                    send(a, file, 2**63)

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

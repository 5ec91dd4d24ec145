"""The backends' relay_step: one relay direction's step (src -> pipe -> dst) in one call.

Every test runs on both backends (the ``backend`` fixture): the cffi backend's
C pump and the os backend's loop over os.splice keep one contract.  Bytes are
compared with what was sent, counts with what arrived.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from types import ModuleType

import pytest

from copykit import payload
from zerocopy._constants import (
    STEP_DST_FULL,
    STEP_ERROR,
    STEP_SPENT,
    STEP_SRC_EMPTY,
    STEP_SRC_END,
)
from zerocopy._pipes import PipePool

pytestmark = pytest.mark.usefixtures("no_leaks")

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def pipe() -> Iterator[tuple[int, int, int]]:
    """(read fd, write fd, capacity) of a fresh 1 MiB pipe."""
    pool = PipePool(maxsize=0)
    p = pool.acquire()
    try:
        yield p.r, p.w, p.size
    finally:
        p.close()


@pytest.fixture
def pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(feeder, src, dst, reader): feeder -> src and dst -> reader, src and dst non-blocking."""
    feeder, src = socket.socketpair()
    dst, reader = socket.socketpair()
    src.setblocking(False)
    dst.setblocking(False)
    try:
        yield feeder, src, dst, reader
    finally:
        for s in (feeder, src, dst, reader):
            s.close()


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = bytearray()
    try:
        while chunk := sock.recv(MiB):
            out += chunk
    except BlockingIOError:
        pass
    return bytes(out)


def _step(
    backend: ModuleType,
    src: socket.socket,
    pipe: tuple[int, int, int],
    dst: socket.socket,
    state: object,
    budget: int = 64 * MiB,
) -> int:
    r, w, size = pipe
    return int(backend.relay_step(src.fileno(), r, w, dst.fileno(), size, budget, state))


class TestRelayStep:
    def test_moves_what_is_there_then_src_empty(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """Everything the source holds reaches dst; then the source would block."""
        feeder, src, dst, reader = pairs
        data = payload(100_000)
        feeder.sendall(data)
        state = backend.relay_state()
        assert _step(backend, src, pipe, dst, state) == STEP_SRC_EMPTY
        assert state.delivered == len(data)
        assert state.in_pipe == 0
        assert _drain(reader) == data

    def test_end_of_stream(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """A half-closed source ends the step with SRC_END once every byte is delivered."""
        feeder, src, dst, reader = pairs
        feeder.sendall(b"last words")
        feeder.shutdown(socket.SHUT_WR)
        state = backend.relay_state()
        assert _step(backend, src, pipe, dst, state) == STEP_SRC_END
        assert state.delivered == 10
        assert _drain(reader) == b"last words"

    def test_counts_accumulate_across_calls(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """The state carries the running count from call to call."""
        feeder, src, dst, reader = pairs
        state = backend.relay_state()
        sent = b""
        for i in range(5):
            chunk = payload(3_000 + i)
            feeder.sendall(chunk)
            sent += chunk
            assert _step(backend, src, pipe, dst, state) == STEP_SRC_EMPTY
            assert state.delivered == len(sent)
        assert _drain(reader) == sent

    def test_full_destination_keeps_the_rest_in_the_pipe(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """dst would block: DST_FULL, delivered + in_pipe is what was read, nothing lost."""
        feeder, src, dst, reader = pairs
        dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * KiB)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        data = payload(2 * MiB)
        feeder.setblocking(False)
        view = memoryview(data)
        got = bytearray()
        state = backend.relay_state()
        fulls = 0
        while view or state.in_pipe:
            try:
                view = view[feeder.send(view) :]
            except BlockingIOError:
                pass
            status = _step(backend, src, pipe, dst, state)
            assert status in (STEP_SRC_EMPTY, STEP_DST_FULL)
            if status == STEP_DST_FULL:
                fulls += 1
                assert state.in_pipe > 0
            got += _drain(reader)
            assert state.delivered == len(got)
        assert fulls > 0, "the destination never filled up"
        assert bytes(got) == data

    def test_budget(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """A step returns BUDGET_SPENT once it delivered its budget, and goes on next time."""
        feeder, src, dst, reader = pairs
        data = payload(200_000)
        feeder.sendall(data)
        state = backend.relay_state()
        assert _step(backend, src, pipe, dst, state, budget=1) == STEP_SPENT
        first = state.delivered
        assert 0 < first <= len(data)
        status = _step(backend, src, pipe, dst, state)
        assert status == STEP_SRC_EMPTY
        assert state.delivered == len(data)
        assert _drain(reader) == data

    @pytest.mark.parametrize("budget", [1, 1000, 64 * KiB + 3])
    def test_never_past_the_budget(
        self,
        backend: ModuleType,
        pairs: tuple[socket.socket, ...],
        pipe: tuple[int, int, int],
        budget: int,
    ) -> None:
        """One step delivers exactly its budget, never more, and reads no more than that either."""
        feeder, src, dst, reader = pairs
        # Fits the socket pair's buffer (sendall returns), and a few thousand
        # steps at most (valgrind runs this file too).
        data = payload(min(150_000, 3000 * budget))
        feeder.sendall(data)
        state = backend.relay_state()
        got = bytearray()
        while len(got) < len(data):
            before = state.delivered
            status = _step(backend, src, pipe, dst, state, budget=budget)
            moved = state.delivered - before
            assert moved <= budget
            assert state.in_pipe <= budget
            if status == STEP_SPENT:
                assert moved == budget
            got += _drain(reader)
        assert bytes(got) == data

    def test_error_from_the_destination(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """A peer gone away: ERROR with the errno in the state, nothing raised."""
        feeder, src, dst, reader = pairs
        reader.close()
        feeder.sendall(b"x" * 1000)
        state = backend.relay_state()
        assert _step(backend, src, pipe, dst, state) == STEP_ERROR
        assert state.err in (errno.EPIPE, errno.ECONNRESET)
        assert state.delivered == 0
        assert state.in_pipe == 1000

    def test_error_from_the_source(self, backend: ModuleType, pipe: tuple[int, int, int]) -> None:
        """A bad source fd: ERROR, EBADF."""
        r, w, size = pipe
        state = backend.relay_state()
        dst, peer = socket.socketpair()
        with dst, peer:
            assert backend.relay_step(-1, r, w, dst.fileno(), size, MiB, state) == STEP_ERROR
        assert state.err == errno.EBADF

    def test_regular_file_source(
        self,
        backend: ModuleType,
        pairs: tuple[socket.socket, ...],
        pipe: tuple[int, int, int],
        tmp_path: object,
    ) -> None:
        """Any fd splice reads works as the source: a file's bytes, then SRC_END."""
        _, _, dst, reader = pairs
        data = payload(50_000)
        path = os.path.join(str(tmp_path), "f")
        with open(path, "wb") as f:
            f.write(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            state = backend.relay_state()
            r, w, size = pipe
            assert backend.relay_step(fd, r, w, dst.fileno(), size, MiB, state) == STEP_SRC_END
        finally:
            os.close(fd)
        assert state.delivered == len(data)
        assert _drain(reader) == data


class TestRefused:
    """Arguments that cannot make a step: EINVAL before any splice, on both backends."""

    @pytest.mark.parametrize(("pipe_size", "budget"), [(0, MiB), (None, 0), (None, -1)])
    def test_einval_in_the_state(
        self,
        backend: ModuleType,
        pairs: tuple[socket.socket, ...],
        pipe: tuple[int, int, int],
        pipe_size: int | None,
        budget: int,
    ) -> None:
        """pipe_size 0 or budget < 1: STEP_ERROR, state.err EINVAL, nothing read or sent."""
        feeder, src, dst, reader = pairs
        feeder.sendall(b"still here")
        r, w, size = pipe
        state = backend.relay_state()
        status = backend.relay_step(
            src.fileno(),
            r,
            w,
            dst.fileno(),
            size if pipe_size is None else pipe_size,
            budget,
            state,
        )
        assert status == STEP_ERROR
        assert state.err == errno.EINVAL
        assert (state.delivered, state.in_pipe) == (0, 0)
        assert _drain(reader) == b""
        assert src.recv(100) == b"still here"  # not even read into the pipe

    def test_no_state(
        self, backend: ModuleType, pairs: tuple[socket.socket, ...], pipe: tuple[int, int, int]
    ) -> None:
        """No state (None) has no err to read: OSError EINVAL, nothing read or sent."""
        feeder, src, dst, reader = pairs
        feeder.sendall(b"still here")
        r, w, size = pipe
        with pytest.raises(OSError, match="relay_step") as info:
            backend.relay_step(src.fileno(), r, w, dst.fileno(), size, MiB, None)
        assert info.value.errno == errno.EINVAL
        assert _drain(reader) == b""
        assert src.recv(100) == b"still here"

"""The pipe pool behind splice: reuse, bounds, dirty pipes, sizes, threads, fork.

Real pipes throughout; sizes are read back from the kernel with
``F_GETPIPE_SZ`` and closed fds are recognised by ``os.fstat`` failing with
EBADF.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Iterator

import pytest

from conftest import open_fds
from zerocopy import _pipes
from zerocopy._pipes import PipePool, default_pool

MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Fail a test that leaves fds open, not counting the default pool's idle pipes."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


def _max_size() -> int:
    with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as f:
        return int(f.read())


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
        return True
    return False


@pytest.fixture
def pool() -> Iterator[PipePool]:
    """A private pool, cleared at the end so its pipes do not count as leaks."""
    p = PipePool(maxsize=4)
    yield p
    p.clear()


class TestReuse:
    def test_released_pipe_comes_back(self, pool: PipePool) -> None:
        """An empty pipe given back is handed out again, same fds."""
        pipe = pool.acquire()
        fds = (pipe.r, pipe.w)
        pool.release(pipe)
        assert len(pool) == 1
        again = pool.acquire()
        assert again is pipe
        assert (again.r, again.w) == fds
        assert len(pool) == 0
        pool.release(again)

    def test_new_pipe_when_idle_list_is_empty(self, pool: PipePool) -> None:
        """Two acquires without a release give two distinct, working pipes."""
        one, two = pool.acquire(), pool.acquire()
        try:
            assert {one.r, one.w}.isdisjoint({two.r, two.w})
            for p in (one, two):
                os.write(p.w, b"abc")
                assert os.read(p.r, 3) == b"abc"
        finally:
            pool.release(one)
            pool.release(two)
        assert len(pool) == 2

    def test_lease_returns_an_empty_pipe(self, pool: PipePool) -> None:
        """lease() lends a pipe for a with block and takes it back when empty."""
        with pool.lease() as pipe:
            os.write(pipe.w, b"x")
            assert os.read(pipe.r, 1) == b"x"
        assert len(pool) == 1
        assert pool.acquire() is pipe
        pool.release(pipe)

    def test_lease_gives_back_on_exception(self, pool: PipePool) -> None:
        """An exception inside lease() still gives the (empty) pipe back."""
        with pytest.raises(KeyError), pool.lease() as pipe:
            raise KeyError("boom")
        assert len(pool) == 1
        assert pool.acquire() is pipe
        pool.release(pipe)

    def test_queued_counts_bytes(self, pool: PipePool) -> None:
        """Pipe.queued() reports the bytes waiting in the pipe."""
        with pool.lease() as pipe:
            assert pipe.queued() == 0
            os.write(pipe.w, b"12345")
            assert pipe.queued() == 5
            os.read(pipe.r, 5)
            assert pipe.queued() == 0


class TestBound:
    def test_idle_pipes_never_exceed_maxsize(self) -> None:
        """Releasing more pipes than maxsize keeps maxsize and closes the rest."""
        p = PipePool(maxsize=3)
        try:
            pipes = [p.acquire() for _ in range(7)]
            fds = [(x.r, x.w) for x in pipes]
            for x in pipes:
                p.release(x)
                assert len(p) <= 3
            assert len(p) == 3
            kept = {(x.r, x.w) for x in p._idle}
            assert kept == set(fds[:3])
            for r, w in fds[3:]:
                assert _closed(r)
                assert _closed(w)
        finally:
            p.clear()

    def test_maxsize_zero_keeps_nothing(self) -> None:
        """maxsize=0 closes every released pipe."""
        p = PipePool(maxsize=0)
        pipe = p.acquire()
        r, w = pipe.r, pipe.w
        p.release(pipe)
        assert len(p) == 0
        assert _closed(r)
        assert _closed(w)

    def test_default_pool_is_bounded(self) -> None:
        """The process-wide pool is one object with a finite bound."""
        assert default_pool() is default_pool()
        assert 0 < default_pool().maxsize < 1000


class TestDirtyPipes:
    def test_pipe_with_data_is_closed_not_reused(self, pool: PipePool) -> None:
        """A pipe given back holding bytes is closed (both fds), never handed out again."""
        pipe = pool.acquire()
        r, w = pipe.r, pipe.w
        os.write(pipe.w, b"left over")
        pool.release(pipe)
        assert len(pool) == 0
        assert _closed(r)
        assert _closed(w)
        assert (pipe.r, pipe.w) == (-1, -1)
        fresh = pool.acquire()
        assert fresh is not pipe
        assert fresh.queued() == 0
        pool.release(fresh)

    def test_dirty_lease_is_closed(self, pool: PipePool) -> None:
        """A lease() that leaves data in the pipe closes it."""
        with pool.lease() as pipe:
            r, w = pipe.r, pipe.w
            os.write(pipe.w, b"x" * 100)
        assert len(pool) == 0
        assert _closed(r)
        assert _closed(w)

    def test_closed_pipe_is_not_taken_back(self, pool: PipePool) -> None:
        """A pipe the caller closed already is dropped quietly."""
        pipe = pool.acquire()
        pipe.close()
        pool.release(pipe)
        assert len(pool) == 0

    def test_pipe_with_broken_fd_is_not_taken_back(self, pool: PipePool) -> None:
        """A pipe whose read fd is gone (queued() fails) is not pooled."""
        pipe = pool.acquire()
        os.close(pipe.r)
        pool.release(pipe)
        assert len(pool) == 0
        assert _closed(pipe.w) or pipe.w == -1


class TestPipeProperties:
    def test_not_inheritable(self, pool: PipePool) -> None:
        """Both ends are O_CLOEXEC (non-inheritable)."""
        with pool.lease() as pipe:
            assert not os.get_inheritable(pipe.r)
            assert not os.get_inheritable(pipe.w)
            assert fcntl.fcntl(pipe.r, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert fcntl.fcntl(pipe.w, fcntl.F_GETFD) & fcntl.FD_CLOEXEC

    def test_size_is_one_mib_within_max(self, pool: PipePool) -> None:
        """Capacity is min(1 MiB, pipe-max-size), as the kernel reports it."""
        want = min(MiB, _max_size())
        with pool.lease() as pipe:
            assert fcntl.fcntl(pipe.w, fcntl.F_GETPIPE_SZ) == want
            assert pipe.size == want

    def test_default_pool_pipes_are_sized(self) -> None:
        """The process-wide pool hands out 1 MiB (or pipe-max-size) pipes too."""
        with default_pool().lease() as pipe:
            assert fcntl.fcntl(pipe.r, fcntl.F_GETPIPE_SZ) == min(MiB, _max_size())
            assert not os.get_inheritable(pipe.r)

    def test_pipe_size_above_max_is_capped(self) -> None:
        """A pipe_size above pipe-max-size is capped, not an error."""
        p = PipePool(maxsize=1, pipe_size=_max_size() * 4)
        try:
            assert p.pipe_size == _max_size()
            with p.lease() as pipe:
                assert fcntl.fcntl(pipe.w, fcntl.F_GETPIPE_SZ) == _max_size()
        finally:
            p.clear()

    def test_small_pipe_size(self) -> None:
        """A smaller pipe_size gives that capacity (rounded to pages by the kernel)."""
        p = PipePool(maxsize=1, pipe_size=64 * 1024)
        try:
            with p.lease() as pipe:
                assert pipe.size == fcntl.fcntl(pipe.w, fcntl.F_GETPIPE_SZ) == 64 * 1024
        finally:
            p.clear()

    def test_small_pipe_is_used_but_not_kept(
        self, pool: PipePool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """F_SETPIPE_SZ refused (the per-user pipe budget): the small pipe works, then is closed."""
        monkeypatch.setattr(_pipes, "_F_SETPIPE_SZ", -1)  # every F_SETPIPE_SZ fails (EINVAL)
        with pool.lease() as pipe:
            assert pipe.size == fcntl.fcntl(pipe.w, fcntl.F_GETPIPE_SZ) < pool.pipe_size
            assert os.write(pipe.w, b"x") == 1
            assert os.read(pipe.r, 1) == b"x"
            small = (pipe.r, pipe.w)
        assert len(pool) == 0
        assert all(_closed(fd) for fd in small)
        pipe = pool.acquire()
        small = (pipe.r, pipe.w)
        pool.give_back(pipe)
        assert len(pool) == 0
        assert all(_closed(fd) for fd in small)
        monkeypatch.undo()
        with pool.lease() as pipe:  # the budget has room again: full-sized, and kept
            assert pipe.size == pool.pipe_size
        assert len(pool) == 1

    def test_give_back_keeps_up_to_maxsize(self) -> None:
        """give_back pools an empty pipe while there is room and closes it after that."""
        p = PipePool(maxsize=1)
        try:
            a, b = p.acquire(), p.acquire()
            p.give_back(a)
            kept = (b.r, b.w)
            p.give_back(b)
            assert len(p) == 1
            assert p.acquire() is a
            assert all(_closed(fd) for fd in kept)
            p.give_back(a)
        finally:
            p.clear()

    def test_pipe_is_blocking(self, pool: PipePool) -> None:
        """Pool pipes are in blocking mode (SPLICE_F_NONBLOCK is per call)."""
        with pool.lease() as pipe:
            assert not fcntl.fcntl(pipe.r, fcntl.F_GETFL) & os.O_NONBLOCK
            assert not fcntl.fcntl(pipe.w, fcntl.F_GETFL) & os.O_NONBLOCK


class TestThreads:
    def test_sixteen_threads(self) -> None:
        """16 threads acquiring and releasing never share a pipe; the bound holds."""
        p = PipePool(maxsize=5)
        held: set[int] = set()
        lock = threading.Lock()
        errors: list[BaseException] = []
        barrier = threading.Barrier(16)

        def work(i: int) -> None:
            try:
                barrier.wait()
                for k in range(300):
                    pipe = p.acquire()
                    with lock:
                        assert pipe.r not in held, "a pipe was handed out twice"
                        held.add(pipe.r)
                    payload = bytes([i]) * (1 + k % 7)
                    os.write(pipe.w, payload)
                    assert os.read(pipe.r, 64) == payload
                    with lock:
                        held.discard(pipe.r)
                    p.release(pipe)
                    assert len(p) <= 5
            except BaseException as exc:  # reported below, from the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert not any(t.is_alive() for t in threads)
            assert not errors, errors[0]
            assert len(p) <= 5
            idle = p._idle
            assert len({x.r for x in idle}) == len(idle)
            assert all(x.queued() == 0 for x in idle)
        finally:
            p.clear()


class TestClear:
    def test_clear_closes_every_idle_pipe(self) -> None:
        """clear() empties the pool and closes both fds of every idle pipe."""
        p = PipePool(maxsize=4)
        pipes = [p.acquire() for _ in range(4)]
        fds = [(x.r, x.w) for x in pipes]
        for x in pipes:
            p.release(x)
        assert len(p) == 4
        p.clear()
        assert len(p) == 0
        for r, w in fds:
            assert _closed(r)
            assert _closed(w)

    def test_clear_leaves_leased_pipes_alone(self) -> None:
        """clear() does not close a pipe that is out on lease."""
        p = PipePool(maxsize=4)
        out = p.acquire()
        try:
            p.clear()
            os.write(out.w, b"ok")
            assert os.read(out.r, 2) == b"ok"
        finally:
            out.close()

    def test_pool_works_after_clear(self) -> None:
        """A cleared pool makes new pipes on demand."""
        p = PipePool(maxsize=2)
        p.release(p.acquire())
        p.clear()
        with p.lease() as pipe:
            assert pipe.queued() == 0
        p.clear()


class TestArguments:
    @pytest.mark.parametrize("maxsize", [-1, -100])
    def test_negative_maxsize(self, maxsize: int) -> None:
        """A negative maxsize is a ValueError."""
        with pytest.raises(ValueError, match="maxsize"):
            PipePool(maxsize=maxsize)

    @pytest.mark.parametrize("size", [0, -1, -(1 << 20)])
    def test_bad_pipe_size(self, size: int) -> None:
        """A pipe_size of zero or less is a ValueError."""
        with pytest.raises(ValueError, match="pipe_size"):
            PipePool(pipe_size=size)


class TestFork:
    def test_child_does_not_share_parent_pipes(self) -> None:
        """After fork the child's default pool is new and the inherited idle pipes are closed."""
        parent_pool = default_pool()
        with parent_pool.lease() as pipe:
            pass
        assert len(parent_pool) >= 1
        inherited = [(x.r, x.w) for x in parent_pool._idle]
        pid = os.fork()
        if pid == 0:  # child: report by exit status only
            code = 0
            try:
                if _pipes.default_pool() is parent_pool:
                    code = 1
                elif not all(_closed(r) and _closed(w) for r, w in inherited):
                    code = 2
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's pipes are untouched.
        assert parent_pool.acquire() is pipe
        parent_pool.release(pipe)

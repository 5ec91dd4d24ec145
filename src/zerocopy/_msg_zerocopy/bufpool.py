"""BufferPool: page-aligned buffers that return only when the kernel is done with them.

This is the "buffer sharing" of the design: a fixed set of buffers, reused
instead of allocated per send.  A buffer handed to
:class:`~zerocopy.ZeroCopySender` stays out of the pool until its completion
arrived, even if the caller gave it back before, so the kernel never reads a
buffer that was handed out again and overwritten.
"""

from __future__ import annotations

import mmap
import select
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any

import _cffi_backend

from .._args import check_timeout, poll_ms

__all__ = ["BufferPool", "PoolExhausted", "pool_slot"]

# The runtime's bare FFI (no cdef, so no C parser: ``cffi.FFI()`` would import
# pycparser, a third of ``import zerocopy``).  It takes any buffer, read-only
# views of a pool buffer included, which ctypes' from_buffer refuses.
_ffi = _cffi_backend.FFI()
#: id of a live pool's map -> (the pool, the address of its first byte).
_pools: dict[int, tuple[weakref.ReferenceType[BufferPool], int]] = {}


class PoolExhausted(Exception):
    """``BufferPool.acquire(blocking=False)`` found every buffer in use or in flight."""


def _address(view: memoryview) -> int:
    return int(_ffi.cast("uintptr_t", _ffi.from_buffer(view)))


def pool_slot(view: memoryview) -> tuple[BufferPool, int] | None:
    """Return ``(pool, index)`` if *view* lies in a live pool's buffer, else None."""
    entry = _pools.get(id(view.obj))
    pool = entry[0]() if entry is not None else None
    if entry is None or pool is None or not len(view):
        return None
    offset = _address(view) - entry[1]
    if not 0 <= offset < pool.stride * pool.count:
        return None
    return pool, offset // pool.stride


class BufferPool:
    """*count* page-aligned buffers of *buffer_size* bytes, in one anonymous mmap.

    :meth:`acquire` hands out a writable :class:`memoryview`; :meth:`release`
    gives it back.  A buffer with zero-copy sends in flight returns to the
    pool only when their completions have arrived.
    """

    def __init__(self, buffer_size: int, count: int) -> None:
        for name, value in (("buffer_size", buffer_size), ("count", count)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be > 0, not {value}")
        self.buffer_size = buffer_size
        self.count = count
        self.stride = -(-buffer_size // mmap.PAGESIZE) * mmap.PAGESIZE
        if self.stride * count > sys.maxsize:
            # mmap() would raise OverflowError: say which arguments are wrong.
            raise ValueError(
                f"a pool of {count} buffers of {buffer_size} bytes is too large to map"
            )
        self._map = mmap.mmap(-1, self.stride * count)
        self._whole = memoryview(self._map)
        self._free: deque[int] = deque(range(count))
        self._returned = [True] * count  # given back by the caller
        self._inflight = [0] * count  # zero-copy sends not yet completed
        self._cond = threading.Condition()
        self._senders: weakref.WeakSet[Any] = weakref.WeakSet()
        _pools[id(self._map)] = (weakref.ref(self), _address(memoryview(self._map)))
        weakref.finalize(self, _pools.pop, id(self._map), None)

    @property
    def available(self) -> int:
        """Buffers ready to be acquired now."""
        with self._cond:
            return len(self._free)

    def _index(self, view: memoryview) -> int:
        if not isinstance(view, memoryview):
            raise TypeError(
                f"release() takes a memoryview from acquire(), not {type(view).__name__}"
            )
        slot = pool_slot(view)
        if slot is None or slot[0] is not self:
            raise ValueError("this memoryview was not handed out by this pool")
        return slot[1]

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> memoryview:
        """Return a free buffer.

        When none is free: with *blocking* false raise :class:`PoolExhausted`;
        else wait (polling the senders that hold buffers for completions) up
        to *timeout* seconds (None or ``inf``: as long as it takes; NaN is a
        :class:`ValueError`), then raise :class:`TimeoutError`.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._free:
                    index = self._free.popleft()
                    self._returned[index] = False
                    # A fresh view each time: the caller may release() its own.
                    start = index * self.stride
                    return self._whole[start : start + self.buffer_size]
            if not blocking:
                raise PoolExhausted(f"all {self.count} buffers are in use or in flight")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no buffer came free within {timeout} s")
            self._wait_for_completions(deadline)

    def _wait_for_completions(self, deadline: float | None) -> None:
        # Buffers come back when a sender reads its completions, or when
        # another thread releases one: wait for POLLERR on the senders'
        # sockets, in short slices so a release() is seen promptly too.
        senders = list(self._senders)
        for sender in senders:
            sender.poll()
        with self._cond:
            if self._free:
                return
        left = 0.01 if deadline is None else max(0.0, min(0.01, deadline - time.monotonic()))
        ready = []
        if senders:
            poller = select.poll()
            for sender in senders:
                poller.register(sender.sock.fileno(), 0)
            ready = poller.poll(poll_ms(left))
        if not senders or any(not ev & select.POLLERR for _, ev in ready):
            # No sender to wake us, or one whose socket hung up (POLLHUP is
            # reported at once, every time): wait out the slice instead.
            with self._cond:
                self._cond.wait(left)

    def release(self, view: memoryview) -> None:
        """Give *view* back; it is reused once no zero-copy send still holds it."""
        index = self._index(view)
        with self._cond:
            if self._returned[index]:
                raise ValueError("buffer released twice")
            self._returned[index] = True
            self._settle(index)

    def _settle(self, index: int) -> None:
        if self._returned[index] and self._inflight[index] == 0:
            self._free.append(index)
            self._cond.notify()

    def hold(self, index: int, sender: Any) -> None:
        """A zero-copy send from buffer *index* is in flight (called by the sender)."""
        with self._cond:
            self._inflight[index] += 1
            self._senders.add(sender)

    def unhold(self, index: int) -> None:
        """That send's completion arrived (called by the sender)."""
        with self._cond:
            self._inflight[index] -= 1
            self._settle(index)

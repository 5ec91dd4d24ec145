"""Bad input, fuzzed with hypothesis, on the low-level calls and both backends.

Wrong types, negative and huge counts and offsets, closed and invalid fds,
and fds of the wrong kind (a directory, an eventfd, an epoll fd, both ends
of a pty, /dev/zero and /dev/null, a procfs file, a sealed memfd, UDP and
listening sockets) go to sendfile, splice, tee, copy_file_range and
vmsplice.

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

import array
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zerocopy
from faultkit import KiB
from faultkit.children import check_buffer_error_in_a_reference_cycle
from faultkit.fuzz import (
    FLAGS,
    FUZZ,
    NUMBERS,
    OFFSETS,
    outcome,
)
from faultkit.zoo import (
    FILE_SIZE,
    SOURCE_NAMES,
    ZOO_NAMES,
    Zoo,
    fd_arg,
    mounted_zoo,
    resolve,
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


# --- inputs that found bugs, one test each -----------------------------------------------


class TestFoundByFuzzing:
    @pytest.mark.parametrize("call", ["vmsplice"])
    def test_buffer_error_in_a_reference_cycle(
        self, request: pytest.FixtureRequest, backend: ModuleType, call: str
    ) -> None:
        """A failed call whose exception ends up in a reference cycle does not crash the GC."""
        check_buffer_error_in_a_reference_cycle(backend, call)

"""ZeroCopySender's completion path fed crafted completions: the C parser and the bookkeeping."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zerocopy

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import cffi_backend as cffi_backend
from zerocopy._constants import SO_EE_CODE_ZEROCOPY_COPIED, SO_EE_ORIGIN_ZEROCOPY
from zerocopy._msg_zerocopy.tracker import CompletionTracker

# --- the parser and the bookkeeping, fed crafted completions -------------------

SOL_IP, IP_RECVERR = 0, 11
SOL_IPV6, IPV6_RECVERR = 41, 25
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP = 1, 2


def cmsg(level: int, type_: int, data: bytes) -> bytes:
    """One control message as CMSG_SPACE lays it out on x86_64 (16-byte header, 8-byte pad)."""
    length = 16 + len(data)
    return struct.pack("=QiI", length, level, type_) + data + b"\0" * (-length % 8)


def ee(
    first: int,
    last: int,
    *,
    code: int = 0,
    origin: int = SO_EE_ORIGIN_ZEROCOPY,
    err: int = 0,
    offender: bytes = b"\0" * 16,
) -> bytes:
    """struct sock_extended_err (plus the offender address the kernel appends)."""
    return struct.pack("=IBBBBII", err, origin, 0, code, 0, first, last) + offender


def v4(first: int, last: int, **kw: Any) -> bytes:
    return cmsg(SOL_IP, IP_RECVERR, ee(first, last, **kw))


def v6(first: int, last: int, **kw: Any) -> bytes:
    return cmsg(SOL_IPV6, IPV6_RECVERR, ee(first, last, offender=b"\0" * 28, **kw))


class TestParser:
    def test_ipv4_and_ipv6(self, cffi_backend: ModuleType) -> None:
        """IP_RECVERR and IPV6_RECVERR records come out as (first, last, code, origin, errno)."""
        parse = cffi_backend.parse_completions
        assert parse(v4(3, 7)) == [(3, 7, 0, SO_EE_ORIGIN_ZEROCOPY, 0)]
        assert parse(v6(0, 0, code=1)) == [(0, 0, 1, SO_EE_ORIGIN_ZEROCOPY, 0)]
        assert parse(v4(1, 2) + v6(5, 9) + v4(2**32 - 1, 4)) == [
            (1, 2, 0, 5, 0),
            (5, 9, 0, 5, 0),
            (2**32 - 1, 4, 0, 5, 0),
        ]

    def test_other_messages_skipped_and_origin_reported(self, cffi_backend: ModuleType) -> None:
        """Other levels/types are skipped; non-zerocopy origins and errnos are passed on."""
        parse = cffi_backend.parse_completions
        timestamp = cmsg(1, 37, b"\1" * 48)  # SOL_SOCKET / SCM_TIMESTAMPING
        data = timestamp + v4(1, 1, origin=SO_EE_ORIGIN_LOCAL, err=errno.EMSGSIZE) + v4(2, 2)
        assert parse(data) == [
            (1, 1, 0, SO_EE_ORIGIN_LOCAL, errno.EMSGSIZE),
            (2, 2, 0, SO_EE_ORIGIN_ZEROCOPY, 0),
        ]

    def test_short_cmsg_len_ignored(self, cffi_backend: ModuleType) -> None:
        """A message whose cmsg_len cannot hold a sock_extended_err is skipped."""
        bogus = struct.pack("=QiI", 16 + 8, SOL_IP, IP_RECVERR) + b"\0" * 8
        assert cffi_backend.parse_completions(bogus + v4(4, 4)) == [(4, 4, 0, 5, 0)]

    def test_max_records(self, cffi_backend: ModuleType) -> None:
        """No more than max_records records are written."""
        data = b"".join(v4(i, i) for i in range(10))
        assert len(cffi_backend.parse_completions(data, 3)) == 3
        assert len(cffi_backend.parse_completions(data, 16)) == 10

    def test_every_truncation(self, cffi_backend: ModuleType) -> None:
        """Cut anywhere, only records wholly inside the control data are read."""
        data = v4(1, 1) + v6(2, 3) + v4(4, 9)
        ends = [16 + 16, len(v4(1, 1)) + 16 + 16, len(v4(1, 1) + v6(2, 3)) + 16 + 16]
        for cut in range(len(data) + 1):
            got = cffi_backend.parse_completions(data[:cut])
            assert len(got) == sum(cut >= e for e in ends), cut

    def test_never_reads_past_the_end(self, cffi_backend: ModuleType) -> None:
        """Control data ending at an unmapped page: no truncation or lying length faults."""
        script = textwrap.dedent(
            """
            import ctypes, mmap, struct
            from zerocopy import _cffi
            P = mmap.PAGESIZE
            m = mmap.mmap(-1, 2 * P)
            libc = ctypes.CDLL(None, use_errno=True)
            base = ctypes.addressof(ctypes.c_char.from_buffer(m))
            assert libc.mprotect(ctypes.c_void_p(base + P), P, 0) == 0
            view = memoryview(m)
            def at_end(data):
                view[P - len(data):P] = data
                return view[P - len(data):P]
            def cm(level, typ, payload, length=None):
                n = 16 + len(payload) if length is None else length
                return struct.pack("=QiI", n, level, typ) + payload
            ee = struct.pack("=IBBBBII", 0, 5, 0, 1, 0, 7, 9)
            full = cm(0, 11, ee + bytes(16))
            records = 0
            for cut in range(len(full) + 1):
                records += len(_cffi.parse_completions(at_end(full[:cut])))
            for lie in (16 + 17, 1 << 20, (1 << 63) + 24, (1 << 64) - 8):
                for cut in (16, 24, 31, 32):
                    _cffi.parse_completions(at_end(cm(0, 11, ee, lie)[:cut]))
            print(records)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"parser faulted ({proc.returncode}): {proc.stderr}"
        # Cuts from 32 bytes (header + sock_extended_err) to 48 hold one record.
        assert int(proc.stdout) == 17


def tracker_sender(first_seq: int = 0, **kw: Any) -> tuple[zerocopy.ZeroCopySender, list[int]]:
    """A sender whose tracker starts at *first_seq*; returns it and the release log."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s = zerocopy.ZeroCopySender(sock, **kw)
    s._tracker = CompletionTracker(first_seq=first_seq)
    s.zerocopy = True  # as if SO_ZEROCOPY was on, whatever the backend
    s._test_sock = sock  # type: ignore[attr-defined]
    return s, []


def hold(s: zerocopy.ZeroCopySender, log: list[int], n: int) -> list[int]:
    """Pretend *n* zero-copy sends went out; return their sequence numbers."""
    seqs = []
    for _ in range(n):
        seq = s._tracker.next_seq
        seqs.append(s._tracker.add((memoryview(b"x"), lambda seq=seq: log.append(seq))))
    return seqs


@pytest.fixture
def crafted() -> Iterator[Callable[..., tuple[zerocopy.ZeroCopySender, list[int]]]]:
    made: list[zerocopy.ZeroCopySender] = []

    def make(first_seq: int = 0, **kw: Any) -> tuple[zerocopy.ZeroCopySender, list[int]]:
        s, log = tracker_sender(first_seq, **kw)
        made.append(s)
        return s, log

    yield make
    for s in made:
        s._test_sock.close()  # type: ignore[attr-defined]


class TestBookkeeping:
    def test_tracker_wraps_at_2_32(self) -> None:
        """Numbers wrap from 2**32-1 to 0; a range across the wrap releases both sides."""
        t = CompletionTracker(first_seq=2**32 - 3)
        seqs = [t.add(i) for i in range(6)]
        assert seqs == [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 1, 2]
        assert t.complete(2**32 - 2, 0) == [1, 2, 3]
        assert t.complete(2**32 - 3, 2**32 - 3) == [0]
        assert t.complete(1, 2) == [4, 5]
        assert len(t) == 0

    def test_tracker_span_larger_than_held(self) -> None:
        """A huge range (or one covering all 2**32 numbers) releases only what is held."""
        t = CompletionTracker(first_seq=5)
        for i in range(3):
            t.add(i)
        assert t.complete(0, 2**32 - 1) == [0, 1, 2]
        t.add("x")
        assert t.complete(9, 8) == ["x"]  # first = last + 1: the whole circle

    def test_coalesced_out_of_order_duplicates(self, crafted: Any) -> None:
        """Coalesced, reordered and repeated ranges release each send exactly once."""
        s, log = crafted(stop_on_copied=False)
        seqs = hold(s, log, 10)
        recs = [(5, 9, 0, 5, 0), (0, 4, 0, 5, 0), (3, 6, 0, 5, 0), (0, 9, 0, 5, 0)]
        assert s._handle(recs[:1]) == 5
        assert sorted(log) == seqs[5:]
        assert s._handle(recs[1:]) == 5
        assert sorted(log) == seqs
        assert s.stats.completions == 10
        assert s.stats.copied == 0
        assert s.pending == 0

    def test_wrap_through_handle(self, crafted: Any) -> None:
        """A sender whose numbering wraps releases ranges that straddle 2**32."""
        s, log = crafted(first_seq=2**32 - 3, stop_on_copied=False)
        seqs = hold(s, log, 6)
        assert s._handle([(2**32 - 1, 1, SO_EE_CODE_ZEROCOPY_COPIED, 5, 0)]) == 3
        assert log == [2**32 - 1, 0, 1]
        assert s._handle([(2, 2, 0, 5, 0), (2**32 - 3, 2**32 - 2, 0, 5, 0)]) == 3
        assert sorted(log) == sorted(seqs)
        assert s.stats.copied == 3
        assert s.stats.completions == 6

    def test_other_origin_ignored(self, crafted: Any, caplog: pytest.LogCaptureFixture) -> None:
        """An error-queue message that is not a zero-copy completion releases nothing."""
        s, log = crafted()
        hold(s, log, 3)
        with caplog.at_level(logging.DEBUG, logger="zerocopy"):
            assert s._handle([(0, 2, 0, SO_EE_ORIGIN_ICMP, 0)]) == 0
        assert log == []
        assert s.pending == 3
        assert "origin" in caplog.text

    def test_errno_raises(self, crafted: Any) -> None:
        """A completion carrying ee_errno raises that OSError."""
        s, log = crafted()
        hold(s, log, 1)
        with pytest.raises(OSError, match="MSG_ZEROCOPY completion") as info:
            s._handle([(0, 0, 0, SO_EE_ORIGIN_ZEROCOPY, errno.ENOMEM)])
        assert info.value.errno == errno.ENOMEM

    def test_copied_flag_policy(self, crafted: Any) -> None:
        """A copied range turns zero-copy off by default; a zero-copied one does not."""
        s, log = crafted()
        hold(s, log, 4)
        s._handle([(0, 1, 0, 5, 0)])
        assert s.zerocopy
        assert s.stats.copied == 0
        s._handle([(2, 3, SO_EE_CODE_ZEROCOPY_COPIED, 5, 0)])
        assert not s.zerocopy
        assert s.stats.copied == 2
        keep, log2 = crafted(stop_on_copied=False)
        hold(keep, log2, 1)
        keep._handle([(0, 0, SO_EE_CODE_ZEROCOPY_COPIED, 5, 0)])
        assert keep.zerocopy
        assert keep.stats.copied == 1

    def test_crafted_bytes_through_parser_and_sender(
        self, cffi_backend: ModuleType, crafted: Any
    ) -> None:
        """Raw control data -> the C parser -> the sender: the whole completion path."""
        s, log = crafted(first_seq=2**32 - 2, stop_on_copied=False)
        seqs = hold(s, log, 5)  # 2**32-2 .. 2
        data = v6(1, 2) + v4(2**32 - 2, 0, code=SO_EE_CODE_ZEROCOPY_COPIED) + v4(0, 1)
        data = data[:-1]  # truncated last message: must not be read
        records = cffi_backend.parse_completions(data)
        assert s._handle(records) == 5
        assert sorted(log) == sorted(seqs)
        assert s.stats.copied == 3

    @given(
        start=st.one_of(st.integers(2**32 - 64, 2**32 - 1), st.integers(0, 2**32 - 1), st.just(0)),
        n=st.integers(1, 120),
        data=st.data(),
    )
    def test_any_partition_any_order(self, start: int, n: int, data: st.DataObject) -> None:
        """Any split of the outstanding numbers into ranges, in any order, with repeats."""
        sock = socket.socket()
        try:
            s = zerocopy.ZeroCopySender(sock, stop_on_copied=False)
            s._tracker = CompletionTracker(first_seq=start)
            log: list[int] = []
            seqs = hold(s, log, n)
            cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n)) if n > 1 else [])
            bounds = [0, *cuts, n]
            ranges = [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)]
            ranges += data.draw(st.lists(st.sampled_from(ranges), max_size=5))  # duplicates
            order = data.draw(st.permutations(ranges))
            records = [
                ((start + lo) & 0xFFFFFFFF, (start + hi) & 0xFFFFFFFF, 0, 5, 0) for lo, hi in order
            ]
            assert s._handle(records) == n
            assert sorted(log) == sorted(seqs)
            assert len(log) == n
            assert s.pending == 0
            assert s.stats.completions == n
        finally:
            sock.close()

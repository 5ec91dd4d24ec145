"""The C error-queue parser (zc_parse_completions) behind the MSG_ZEROCOPY sender.

Its input is built byte by byte here; exact-size buffers let ASan see any read
past the end.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copykit import load_compiled

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def compiled() -> ModuleType:
    """The compiled cffi module (whatever the current backend)."""
    return load_compiled()


# --- the C error-queue parser ------------------------------------------------------

_SOL_IP, _IP_RECVERR, _SOL_IPV6, _IPV6_RECVERR = 0, 11, 41, 25
_ALIGN = struct.calcsize("N")  # cmsg alignment: sizeof(size_t)
_HDR = struct.calcsize("@Nii")


def _cmsg(level: int, kind: int, payload: bytes) -> bytes:
    """One control message, padded as CMSG_SPACE pads it."""
    raw = struct.pack("@Nii", _HDR + len(payload), level, kind) + payload
    return raw + b"\0" * (-len(raw) % _ALIGN)


def _ee(err: int, origin: int, code: int, info: int, data: int) -> bytes:
    """struct sock_extended_err, then a 16-byte offender address."""
    return struct.pack("=IBBBBII", err, origin, 0, code, 0, info, data) + b"\0" * 16


records = st.tuples(
    st.integers(0, 2**31 - 1),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


class TestCompletionParser:
    """zc_parse_completions on exact-size buffers, so ASan sees any read past the end."""

    def _parse(self, compiled: ModuleType, control: bytes, length: int, room: int = 16) -> list:
        ffi, lib = compiled.ffi, compiled.lib
        buf = ffi.new("char[]", max(len(control), 1))
        ffi.memmove(buf, control, len(control))
        out = ffi.new("struct zc_completion[]", room)
        n = lib.zc_parse_completions(buf, length, out, room)
        assert 0 <= n <= room
        return [(c.first, c.last, c.code, c.origin, c.err) for c in out[0:n]]

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.lists(st.tuples(st.sampled_from(["ip", "ipv6", "other"]), records), max_size=6),
        st.integers(1, 16),
    )
    def test_records_round_trip(self, compiled: ModuleType, msgs: list, room: int) -> None:
        """Each IP/IPv6 RECVERR message becomes one record, others are skipped, at most room."""
        control = b""
        expected = []
        for kind, (err, origin, code, info, data) in msgs:
            level, typ = {
                "ip": (_SOL_IP, _IP_RECVERR),
                "ipv6": (_SOL_IPV6, _IPV6_RECVERR),
                "other": (socket.SOL_SOCKET, 1),
            }[kind]
            control += _cmsg(level, typ, _ee(err, origin, code, info, data))
            if kind != "other":
                expected.append((info, data, code, origin, err))
        assert self._parse(compiled, control, len(control), room) == expected[:room]

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(records, min_size=1, max_size=3), st.data())
    def test_truncated_control(self, compiled: ModuleType, recs: list, data: Any) -> None:
        """Cut anywhere, the control data yields only the records that fit, whole."""
        control = b"".join(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*r)) for r in recs)
        cut = data.draw(st.integers(0, len(control)))
        got = self._parse(compiled, control[:cut], cut)
        whole = [(i, d, c, o, e) for (e, o, c, i, d) in recs]
        assert got == whole[: len(got)]
        size = len(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*recs[0])))
        assert len(got) >= min(cut // size, len(recs))

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200))
    def test_garbage(self, compiled: ModuleType, control: bytes) -> None:
        """Arbitrary bytes never make the parser read outside the buffer."""
        self._parse(compiled, control, len(control))

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.integers(0, 64).map(lambda k: 2**64 - 1 - k) | st.integers(2**63, 2**64 - 1),
        st.sampled_from(
            [(_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR), (socket.SOL_SOCKET, 1), (1, 1)]
        ),
        st.lists(records, max_size=2),
        records,
    )
    def test_huge_cmsg_len_ends_the_walk(
        self,
        compiled: ModuleType,
        cmsg_len: int,
        level_type: tuple[int, int],
        before: list,
        rec: tuple[int, int, int, int, int],
    ) -> None:
        """A cmsg_len near SIZE_MAX (matching level or not) ends the walk instead of looping."""
        level, kind = level_type
        control = b"".join(_cmsg(_SOL_IP, _IP_RECVERR, _ee(*r)) for r in before)
        control += struct.pack("@Nii", cmsg_len, level, kind) + _ee(*rec)
        expected = [(i, d, c, o, e) for (e, o, c, i, d) in before]
        if level_type in ((_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR)):
            err, origin, code, info, data = rec
            expected.append((info, data, code, origin, err))  # cut short, but whole
        # The C call releases the GIL: a parser that loops for ever would
        # hold its thread, not the test, which fails instead of hanging.
        result: list[list] = []
        worker = threading.Thread(
            target=lambda: result.append(self._parse(compiled, control, len(control))),
            daemon=True,
        )
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), f"zc_parse_completions did not return (cmsg_len {cmsg_len})"
        assert result == [expected]

    def test_empty_and_null(self, compiled: ModuleType) -> None:
        """No control data, a NULL buffer or no room give 0 records."""
        ffi, lib = compiled.ffi, compiled.lib
        out = ffi.new("struct zc_completion[]", 1)
        assert lib.zc_parse_completions(ffi.NULL, 100, out, 1) == 0
        assert lib.zc_parse_completions(ffi.new("char[]", 64), 64, ffi.NULL, 1) == 0
        assert lib.zc_parse_completions(ffi.new("char[]", 64), 64, out, 0) == 0
        assert self._parse(compiled, b"", 0) == []

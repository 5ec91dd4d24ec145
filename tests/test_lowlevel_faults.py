"""Fault injection for the low-level calls (splice, sendfile, vmsplice, tee), on every backend.

Non-blocking pipes where blocking ones were expected, and a full pipe: the
calls raise EAGAIN (BlockingIOError), never block, and lose no byte.  No fd
is leaked (the default pipe pool's idle pipes aside) and no thread is left
behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from types import ModuleType

import pytest

import zerocopy
from faultkit.peers import (
    set_nonblocking,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

# --- non-blocking fds where blocking ones were expected ---------------------------


class TestNonBlocking:
    def test_lowlevel_calls_raise_blockingioerror(self, backend: ModuleType) -> None:
        """splice, sendfile, vmsplice and tee on non-blocking pipes raise EAGAIN, never block."""
        r, w = os.pipe()
        r2, w2 = os.pipe()
        r3, w3 = os.pipe()
        try:
            for fd in (r, w, r2, w2, r3, w3):
                set_nonblocking(fd)
            with pytest.raises(BlockingIOError):
                zerocopy.splice(r, w2, 4096)  # empty source
            with pytest.raises(BlockingIOError):
                zerocopy.splice(r, w2, 4096, flags=zerocopy.SPLICE_F_NONBLOCK)
            # Fill w, then every call into it would block.
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(w, b"z" * 65536)
            with pytest.raises(BlockingIOError):
                zerocopy.vmsplice(w, [b"y" * 4096], zerocopy.SPLICE_F_NONBLOCK)
            with tempfile.TemporaryFile() as f:
                f.write(b"q" * 8192)
                f.flush()
                with pytest.raises(BlockingIOError):
                    zerocopy.sendfile(w, f, 0, 8192)
            if backend.NAME == "cffi":
                with pytest.raises(BlockingIOError):
                    zerocopy.tee(r2, w3, 10, zerocopy.SPLICE_F_NONBLOCK)  # r2 is empty
                with contextlib.suppress(BlockingIOError):
                    while True:
                        os.write(w3, b"t" * 65536)
                with pytest.raises(BlockingIOError):
                    zerocopy.tee(r, w3, 10, zerocopy.SPLICE_F_NONBLOCK)  # w3 is full
            else:
                with pytest.raises(zerocopy.UnsupportedOperation):
                    zerocopy.tee(r2, w3, 10, zerocopy.SPLICE_F_NONBLOCK)
            # Nothing was lost or added by the refused calls.
            total = 0
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(r, 1 << 20):
                    assert set(chunk) == {ord("z")}
                    total += len(chunk)
            assert total > 0
        finally:
            for fd in (r, w, r2, w2, r3, w3):
                os.close(fd)


# --- full pipes and stalled peers -------------------------------------------------
class TestFullPipes:
    def test_splice_into_a_full_pipe_loses_nothing(self, backend: ModuleType) -> None:
        """splice(NONBLOCK) into a full pipe raises EAGAIN; the source bytes are all still there."""
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        try:
            os.write(w1, b"a" * 4096)
            set_nonblocking(w2)
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(w2, b"b" * 4096)
            with pytest.raises(BlockingIOError):
                zerocopy.splice(r1, w2, 4096, flags=zerocopy.SPLICE_F_NONBLOCK)
            assert os.read(r1, 8192) == b"a" * 4096
        finally:
            for fd in (r1, w1, r2, w2):
                os.close(fd)

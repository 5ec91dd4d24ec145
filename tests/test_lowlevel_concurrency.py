"""The low-level calls release the GIL while they block, on both backends.

A thread blocked in a system call (splice, sendfile, vmsplice, tee) does not
hold the GIL: while it sits in the kernel (``/proc/self/task/<tid>/syscall``
names the call), another thread keeps counting.  The probe is in
``tests/faultkit/threads.py``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from faultkit.threads import GilProbe, assert_progressed

pytestmark = pytest.mark.usefixtures("no_leaks")


# --- the GIL is released while a call blocks -----------------------------------------------


class TestGilReleased:
    def test_splice_from_an_empty_pipe(self, backend: ModuleType) -> None:
        """A thread blocked in splice on an empty pipe lets another thread run at full speed."""
        r, w = os.pipe()
        r2, w2 = os.pipe()
        try:
            probe = GilProbe(
                lambda: zerocopy.splice(r, w2, 4096),
                "splice",
                lambda: os.write(w, b"wake"),
                ("write", w),
            )
            baseline, during, moved = probe.run()
            assert moved == 4
            assert os.read(r2, 10) == b"wake"
        finally:
            for fd in (r, w, r2, w2):
                os.close(fd)
        assert_progressed(baseline, during)

    def test_sendfile_into_a_full_pipe(self, backend: ModuleType, tmp_path: Path) -> None:
        """A thread blocked in sendfile on a full pipe does not hold the GIL."""
        (tmp_path / "src").write_bytes(b"s" * 4096)
        r, w = os.pipe()
        os.set_blocking(w, False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, b"f" * 65536)
        os.set_blocking(w, True)
        try:
            with open(tmp_path / "src", "rb") as f:
                probe = GilProbe(
                    lambda: zerocopy.sendfile(w, f, 0, 4096),
                    "sendfile",
                    lambda: os.read(r, 1 << 20),
                    ("read", r),
                )
                baseline, during, moved = probe.run()
            assert moved == 4096
        finally:
            os.close(r)
            os.close(w)
        assert_progressed(baseline, during)

    def test_vmsplice_into_a_full_pipe(self, backend: ModuleType) -> None:
        """A thread blocked in vmsplice (a poll on the os backend) does not hold the GIL."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, b"f" * 65536)
        os.set_blocking(w, True)
        payload = b"v" * 4096
        try:
            probe = GilProbe(
                lambda: zerocopy.vmsplice(w, [payload]),
                "vmsplice" if backend.NAME == "cffi" else "poll",
                lambda: os.read(r, 1 << 20),
                ("read", r),
            )
            baseline, during, moved = probe.run()
            assert moved == 4096
        finally:
            os.close(r)
            os.close(w)
        assert_progressed(baseline, during)

    @pytest.mark.only_backend("cffi")
    def test_tee_from_an_empty_pipe(self, backend: ModuleType) -> None:
        """A thread blocked in tee on an empty pipe does not hold the GIL (cffi: os has no tee)."""
        r, w = os.pipe()
        r2, w2 = os.pipe()
        try:
            probe = GilProbe(
                lambda: zerocopy.tee(r, w2, 4096), "tee", lambda: os.write(w, b"t"), ("write", w)
            )
            baseline, during, moved = probe.run()
            assert moved == 1
        finally:
            for fd in (r, w, r2, w2):
                os.close(fd)
        assert_progressed(baseline, during)

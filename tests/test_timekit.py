"""tests/timekit.py itself: the scale it picks, and that its CPU check fails a spin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import timekit
from timekit import Usage, assert_waited, busy

HERE = Path(__file__).parent


def scale_of(env: dict[str, str], prefix: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """timekit's (SCALE, SCALE_FROM) in a child python with *env* added, run under *prefix*."""
    code = "import timekit; print(timekit.SCALE, timekit.SCALE_FROM)"
    full = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", timekit.ENV_VAR)}
    full.update(env, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.run(
        [*prefix, sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        timeout=timekit.scaled(300),
    )
    return child.returncode, child.stdout.strip(), child.stderr


class TestScale:
    def test_env_var_sets_the_scale(self) -> None:
        """ZEROCOPY_TEST_TIME_SCALE=4.5 is the factor scaled() multiplies by."""
        assert scale_of({timekit.ENV_VAR: "4.5"})[:2] == (0, f"4.5 {timekit.ENV_VAR}")

    @pytest.mark.parametrize("bad", ["0.5", "0", "-2", "nan", "inf", "fast"])
    def test_env_var_must_be_a_number_at_least_1(self, bad: str) -> None:
        """A factor below 1 (bounds tighter than written) or not a number is refused."""
        code, _, err = scale_of({timekit.ENV_VAR: bad})
        assert code != 0
        assert timekit.ENV_VAR in err

    def test_asan_in_ld_preload(self) -> None:
        """A sanitizer named in LD_PRELOAD (here a name only) scales by ASAN_SCALE."""
        # The library need not exist: the loader warns and goes on.
        code, out, _ = scale_of({"LD_PRELOAD": "/nonexistent/libasan.so.8"})
        assert (code, out) == (0, f"{timekit.ASAN_SCALE} AddressSanitizer")

    @pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
    @pytest.mark.skipif(timekit.SCALE_FROM != "default", reason="already under a sanitizer")
    def test_valgrind_is_detected(self) -> None:
        """Under valgrind, SCALE is VALGRIND_SCALE."""
        code, out, err = scale_of({}, ("valgrind", "-q", "--error-exitcode=0"))
        assert (code, out) == (0, f"{timekit.VALGRIND_SCALE} valgrind"), err


class TestAssertWaited:
    def test_fails_a_spin(self) -> None:
        """A thread spinning beside the baseline exceeds the limit: the check can fail."""
        out: list[float] = []

        def spin() -> None:
            c0 = time.thread_time()
            busy(0.3)
            out.append(time.thread_time() - c0)

        t = threading.Thread(target=spin)
        t.start()
        baseline = busy(0.3)
        t.join()
        with pytest.raises(AssertionError, match="busy loop"):
            assert_waited(out[0], baseline, work=0.02)

    def test_passes_a_sleep(self) -> None:
        """A thread sleeping beside the baseline is well inside the limit."""
        out: list[float] = []

        def wait() -> None:
            c0 = time.thread_time()
            time.sleep(0.3)
            out.append(time.thread_time() - c0)

        t = threading.Thread(target=wait)
        t.start()
        baseline = busy(0.3)
        t.join()
        assert_waited(out[0], baseline, work=0.02)

    def test_limit_follows_the_baseline(self) -> None:
        """Half the CPU for the busy loop (a loaded machine) halves the spin allowance."""
        for share in (1.0, 0.5, 0.25):
            limit = timekit.scaled(0.02) + 0.1 * share
            assert_waited(limit - 0.001, Usage(cpu=share, wall=1.0), work=0.02)
            with pytest.raises(AssertionError):
                assert_waited(limit + 0.001, Usage(cpu=share, wall=1.0), work=0.02)

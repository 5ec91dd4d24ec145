"""Timing assertions that hold on a busy 2-core machine and under sanitizers (issue 23).

Three kinds of bound, written three ways:

- A lower bound ("waited at least the timeout") stays absolute: a slow
  machine only makes it easier to meet.
- An upper wall-clock bound ("returned within 2 s", "dropped within the
  timeout plus slack") is generous and goes through :func:`scaled`, which
  multiplies it by :data:`SCALE`.
- A CPU budget ("waited without spinning") is relative: the CPU the code used
  is compared with what a busy loop, measured in the same test over the same
  wait, was given (:func:`busy`, :class:`Spinner`, :func:`assert_waited`).  A
  loaded machine gives a spinning thread less CPU, and the busy loop just as
  little, so the comparison still tells a wait from a spin there; a fixed
  budget could not (under load it passes a spin, under a sanitizer it fails
  a correct wait).

:data:`SCALE` is ``ZEROCOPY_TEST_TIME_SCALE`` when that is set (a number,
at least 1).  Otherwise it is 1, or :data:`ASAN_SCALE` when AddressSanitizer's
runtime is in the process (``scripts/sanitize``), or :data:`VALGRIND_SCALE`
under valgrind.  Both are told from ``/proc/self/maps`` (``libasan``,
``vgpreload``) and ``LD_PRELOAD``: ``scripts/sanitize`` takes ``LD_PRELOAD``
out of the environment once python is up, so the maps are the reliable sign.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

ENV_VAR = "ZEROCOPY_TEST_TIME_SCALE"
#: The factor under AddressSanitizer + UBSan (the shims are instrumented, python is not).
ASAN_SCALE = 3.0
#: The factor under valgrind, which runs every instruction of python through its JIT.
VALGRIND_SCALE = 20.0
#: A wait may cost at most this fraction of the CPU a busy loop burnt over it.
FRACTION = 0.1


def _detect() -> tuple[float, str]:
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 1):
            raise ValueError(f"{ENV_VAR}={raw!r}: want a number, at least 1")
        return value, ENV_VAR
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    preload = os.environ.get("LD_PRELOAD", "")
    if "vgpreload" in maps or "valgrind" in preload:
        return VALGRIND_SCALE, "valgrind"
    if "libasan" in maps or "asan" in preload:
        return ASAN_SCALE, "AddressSanitizer"
    return 1.0, "default"


#: The factor upper time bounds (and CPU allowances for real work) are multiplied by.
SCALE, SCALE_FROM = _detect()


def scaled(seconds: float) -> float:
    """*seconds*, an upper bound on time, stretched by :data:`SCALE` for slow environments."""
    return seconds * SCALE


@dataclass(frozen=True)
class Usage:
    """CPU seconds a thread got over a stretch of wall time."""

    cpu: float
    wall: float

    @property
    def share(self) -> float:
        """The fraction of one core the thread got (up to about 1)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def _spin(done: Callable[[float, float], bool]) -> Usage:
    # Each turn polls nothing with a zero timeout: a system call that releases
    # the GIL, as a busy-polling wait in zerocopy (C or Python) would, so the
    # other threads of the test are not starved of the GIL by the baseline.
    p = select.poll()
    c0, w0 = time.thread_time(), time.monotonic()
    while not done(time.thread_time() - c0, time.monotonic() - w0):
        p.poll(0)
    return Usage(time.thread_time() - c0, time.monotonic() - w0)


def busy(seconds: float, *, at_most: float | None = None) -> Usage:
    """Spin in this thread (instead of sleeping) for *seconds* or more; return the CPU it got.

    Use it where a test would sleep while the code under test waits in
    another thread: the busy loop is the baseline a spinning wait would have
    matched over the same stretch.  On a loaded machine a busy loop gets a
    small share of a core (a tenth, with two CPU-bound processes beside a
    test on two cores), and a spin over a few tenths of a second would then
    burn no more than the allowance for real work: so the loop goes on past
    *seconds* until it has had half of *seconds* in CPU time, the share it
    gets on a quiet machine being about 1, for *at_most* seconds in all
    (default ten times *seconds*).  The wait under test must outlast that.
    """
    cap = 10 * seconds if at_most is None else at_most
    return _spin(lambda cpu, wall: wall >= cap or (wall >= seconds and cpu >= seconds / 2))


class Spinner:
    """A busy loop in a thread of its own for the length of a ``with`` block.

    For code under test that waits in the test's own thread.  After the
    block, :attr:`usage` is what the busy loop got and :attr:`rest` the CPU
    the rest of the process used over the same stretch (the process's CPU,
    less the busy loop's).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._out: list[Usage] = []
        self._thread = threading.Thread(
            target=lambda: self._out.append(_spin(lambda cpu, wall: self._stop.is_set()))
        )
        self._process0 = 0.0
        self.usage = Usage(0.0, 0.0)
        self.rest = 0.0

    def __enter__(self) -> Spinner:
        self._process0 = time.process_time()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        process = time.process_time() - self._process0
        self.usage = self._out[0]
        self.rest = max(0.0, process - self.usage.cpu)


def assert_waited(
    cpu: float,
    baseline: Usage,
    *,
    work: float,
    wall: float | None = None,
    fraction: float = FRACTION,
    what: str = "the wait",
) -> None:
    """Assert that *cpu* CPU seconds are those of a wait, not of a spin.

    A thread spinning through the wait would have burnt about
    ``baseline.share * wall`` (*wall* defaults to the baseline's own stretch,
    which a test arranges to be the wait); *cpu* may be at most *fraction*
    of that, plus ``scaled(work)`` for the real work done around the wait
    (moving the bytes, starting and ending).  *work* must stay well below
    what a spin would burn, or the assertion could not fail: keep it to a
    few hundredths of a second against waits of a few tenths.
    """
    spun = baseline.share * (baseline.wall if wall is None else wall)
    limit = scaled(work) + fraction * spun
    assert cpu <= limit, (
        f"{what} used {cpu:.3f} CPU s; a busy loop beside it got {spun:.3f} s over the same"
        f" {baseline.wall if wall is None else wall:.2f} s, the limit is {limit:.3f} s"
        f" ({fraction} of that, plus {scaled(work):.3f} s for the work;"
        f" time scale {SCALE} from {SCALE_FROM})"
    )

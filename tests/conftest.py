"""Shared fixtures: every test that takes ``backend`` runs once per backend.

Which backends: those ``ZEROCOPY_BACKEND`` allows (``auto`` -> cffi and os,
``os`` -> os only, ``cffi`` -> cffi only).  A backend that cannot load fails
the run when ``ZEROCOPY_REQUIRE_EXTENSION=1`` (CI) and is skipped with its
reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType, ModuleType

import hypothesis
import pytest

from zerocopy import _backend
from zerocopy._pipes import default_pool

hypothesis.settings.register_profile("ci", max_examples=60, deadline=None, print_blob=True)
hypothesis.settings.register_profile("dev", max_examples=25, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_WANTED = os.environ.get(_backend.ENV_VAR, "auto").strip().lower() or "auto"
BACKENDS = list(_backend.NAMES) if _WANTED == "auto" else [_WANTED]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The backend under test, made current for the duration of the test."""
    name = request.param
    try:
        module = _backend.load(name)
    except ImportError as exc:
        if os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail(f"backend {name} is required but does not load: {exc}")
        pytest.skip(f"backend {name} does not load here: {exc}")
    with _backend.use(name):
        yield module


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM raises TimeoutError after *seconds*."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fd_count() -> Iterator[None]:
    """Fail the test if it leaves more fds open than it found."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    after = set(os.listdir("/proc/self/fd"))
    leaked = after - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


def _fd_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def open_fds() -> set[int]:
    """The fds open in this process, less the default pipe pool's idle pipes.

    Those are kept for reuse, not leaked; every leak check compares two of
    these sets.
    """
    pooled = {fd for p in list(default_pool()._idle) for fd in (p.r, p.w)}
    # The listing's own directory fd is closed again by the time we look: drop it.
    return {int(x) for x in os.listdir("/proc/self/fd") if not _fd_closed(int(x))} - pooled


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves fds (pooled idle pipes aside) or threads behind."""
    threads = set(threading.enumerate())
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"
    extra = [t for t in threading.enumerate() if t not in threads]
    assert not extra, f"threads left running: {extra}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) backend-specific tests on the other backend.

    A test marked ``only_backend("cffi")``, or using a ``cffi_backend``
    fixture, is about that backend's behaviour: it is not generated for the
    other one, so a run on a machine where everything works skips nothing.
    """
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec is not None else None
        wanted = {m.args[0] for m in item.iter_markers("only_backend")}
        if "cffi_backend" in getattr(item, "fixturenames", ()):
            wanted.add("cffi")
        if name is not None and wanted and name not in wanted:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep

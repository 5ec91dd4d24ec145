"""Shared fixtures: every test that takes ``backend`` runs once per backend.

Which backends: those ``ZEROCOPY_BACKEND`` allows (``auto`` -> cffi and os,
``os`` -> os only, ``cffi`` -> cffi only).  A backend that cannot load fails
the run when ``ZEROCOPY_REQUIRE_EXTENSION=1`` (CI) and is skipped with its
reason otherwise.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import select
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType, ModuleType

import hypothesis
import pytest

import simplatform

if (_SIMULATED := simplatform.simulated()) is not None:
    # Before zerocopy's first import: see tests/simplatform.py.
    simplatform.apply(_SIMULATED)

from timekit import scaled
from zerocopy import _backend
from zerocopy._pipes import default_pool
from zerocopy._relay.hub import close_default_hubs

hypothesis.settings.register_profile("ci", max_examples=60, deadline=None, print_blob=True)
hypothesis.settings.register_profile("dev", max_examples=25, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_WANTED = os.environ.get(_backend.ENV_VAR, "auto").strip().lower() or "auto"
BACKENDS = list(_backend.NAMES) if _WANTED == "auto" else [_WANTED]
if _SIMULATED is not None:
    # A non-Linux platform has no compiled module: its tests are generated
    # for the os backend only (not skipped for cffi).
    BACKENDS = [name for name in BACKENDS if name == "os"] or ["os"]


def _load_or_skip(name: str) -> ModuleType:
    try:
        return _backend.load(name)
    except ImportError as exc:
        if os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail(f"backend {name} is required but does not load: {exc}")
        pytest.skip(f"backend {name} does not load here: {exc}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The backend under test, made current for the duration of the test."""
    name = request.param
    module = _load_or_skip(name)
    with _backend.use(name):
        yield module


#: The relay hub waits with epoll: off Linux (a simulated platform) there is none.
RELAY_ENGINES = ["thread", "hub"] if _SIMULATED is None and hasattr(select, "epoll") else ["thread"]


@pytest.fixture(params=RELAY_ENGINES)
def relay_engine(
    request: pytest.FixtureRequest, backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each relay test twice: ``zerocopy.relay`` in the caller's thread, and on a relay hub.

    For "thread", relays run their own rounds in the caller's thread (the
    engine off Linux).  For "hub", ``zerocopy.relay`` (and a test module's
    own ``relay`` name) runs the relay on a fresh
    :class:`~zerocopy._relay.hub.Hub`, closed (its thread joined, its
    descriptors closed) when the test ends.
    """
    if request.param == "thread":
        from zerocopy._relay import hub

        monkeypatch.setattr(hub, "ENGINE", "rounds")
        yield "thread"
        return
    import zerocopy
    from zerocopy._relay.hub import Hub, relay_on_hub

    hub = Hub()

    def on_hub(
        a: socket.socket, b: socket.socket, *, timeout: float | None = None
    ) -> tuple[int, int]:
        return relay_on_hub(hub, a, b, timeout)

    monkeypatch.setattr(zerocopy, "relay", on_hub)
    if getattr(request.module, "relay", None) is not None:
        monkeypatch.setattr(request.module, "relay", on_hub)
    try:
        yield "hub"
    finally:
        hub.close()


def only_backend(name: str) -> Iterator[ModuleType]:
    """Make backend *name* current, for behaviour that exists on one backend only.

    Skipped, with the reason, when ``ZEROCOPY_BACKEND`` excludes that backend
    (a run with ``ZEROCOPY_BACKEND=os`` has no cffi backend to test).
    """
    if _WANTED not in ("auto", name):
        pytest.skip(f"{_backend.ENV_VAR}={_WANTED} excludes the {name} backend")
    module = _load_or_skip(name)
    with _backend.use(name):
        yield module


# --- sockets --------------------------------------------------------------------


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of blocking TCP sockets on loopback: (client, server)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def stream_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    """A connected pair of stream sockets of *kind* ``"tcp"`` or ``"unix"``."""
    if kind == "tcp":
        return tcp_pair()
    if kind == "unix":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    raise ValueError(f"unknown socket kind {kind!r}")


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM raises TimeoutError after *seconds* (scaled)."""
    seconds = scaled(seconds)

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def describe_fd(fd: int) -> str:
    """What fd *fd* refers to, for a leak report."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves fds (pooled idle pipes aside) or threads behind; end a hang.

    A hang is the one failure an assertion cannot catch: after 120 s (scaled)
    every thread's stack is dumped and the run ends rather than wait for ever.
    """
    threads = set(threading.enumerate())
    before = open_fds()
    faulthandler.dump_traceback_later(scaled(120), exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        # A relay hub's thread and descriptors live as long as the process:
        # closed here, they are checked like everything else.
        close_default_hubs()
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)} -> {[describe_fd(fd) for fd in leaked]}"
    extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not extra, f"threads left running: {extra}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) backend-specific tests on the other backend.

    A test marked ``only_backend("cffi")``, or using a ``cffi_backend``
    fixture, is about that backend's behaviour: it is not generated for the
    other one, so a run on a machine where everything works skips nothing.
    """
    keep, dropped = [], []
    if _SIMULATED is not None:
        # The portable selection only (tests/simplatform.py); the rest is
        # deselected and counted, never skipped silently.
        portable = []
        for item in items:
            why = simplatform.not_here(item.nodeid, _SIMULATED)
            (dropped if why else portable).append(item)
        items[:] = portable
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


# --- support modules ------------------------------------------------------------

# faultkit's check functions hold test bodies shared by several capabilities'
# files: rewrite their asserts as pytest does a test's, so that a failure
# shows the values compared.  (Before any test module imports it.)
pytest.register_assert_rewrite("faultkit")

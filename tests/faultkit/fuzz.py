"""The fuzz tests' watchdog, outcome check, shared strategies and sockets of every kind.

The only acceptable outcomes of a fuzzed call are a return value or one of
the documented exceptions (:data:`ALLOWED`); never a crash, never a hang:
every call runs under a SIGALRM watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import zerocopy
from timekit import scaled

#: What a public call may raise for bad input.
ALLOWED = (TypeError, ValueError, OSError, NotImplementedError)

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hang(BaseException):
    """Raised by the watchdog: a BaseException, so no ``except Exception`` swallows it."""


@contextlib.contextmanager
def late_reader(a: socket.socket, b: socket.socket) -> Iterator[bytearray]:
    """Read *b* to its end in a thread that starts 50 ms late (the sender finds it full).

    Yields the bytes read so far; on exit half-closes *a*, waits for the
    reader and closes both sockets.
    """
    got = bytearray()

    def read() -> None:
        time.sleep(0.05)
        while chunk := b.recv(1 << 20):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        yield got
    finally:
        a.shutdown(socket.SHUT_WR)
        reader.join()
        a.close()
        b.close()


@contextlib.contextmanager
def watchdog(seconds: float = 5.0) -> Iterator[None]:
    """Turn a call that blocks for *seconds* (scaled) into a :class:`Hang`.

    The alarm repeats every second until the block ends, so that cleanup code
    which blocks too (asyncio.run cancelling a task that never finishes) is
    interrupted as well, rather than hanging the run.
    """
    armed = [True]
    seconds = scaled(seconds)

    def fire(signum: int, frame: Any) -> None:
        if armed[0]:
            raise Hang(f"no return within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        # A repeat can strike inside this very block: retry until the alarm is
        # off, or it would go on raising Hang in pytest itself.
        while True:
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                break
            except Hang:
                continue


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fn* under the watchdog; return its value or an allowed exception, else fail."""
    try:
        with watchdog():
            return fn(*args, **kwargs)
    except Hang:
        pass  # failed below, outside the handler: see fail_hung()
    except (*ALLOWED, zerocopy.PoolExhausted) as exc:  # PoolExhausted: BufferPool's own
        # Without its traceback: frames kept alive in a reference cycle would
        # reach the garbage collector, which crashes on cffi buffers today
        # (see faultkit.children.check_buffer_error_in_a_reference_cycle).
        exc.__traceback__ = None
        return exc
    except BaseException as exc:
        pytest.fail(
            f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__}: {exc} "
            f"(args={args!r} kwargs={kwargs!r})"
        )
    fail_hung(f"{getattr(fn, '__name__', fn)} hung with args={args!r} kwargs={kwargs!r}")
    raise AssertionError("unreachable")


def fail_hung(message: str) -> None:
    """Fail a test whose call hung, without the Hang's traceback.

    Hang strikes wherever the interpreter is (inside asyncio, say); pytest
    cannot always render such a traceback (an entry without a line number
    makes it fail internally), and the message says all there is to say.
    """
    pytest.fail(message, pytrace=False)


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [0, 1, 4095, 4096, 65536, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -1]
    ),
    st.sampled_from([1.5, "10", b"10", None, True, False, [], math.nan]),
)
OFFSETS = st.one_of(st.none(), NUMBERS)


def _not_past_int64(value: Any) -> bool:
    return not (isinstance(value, int) and value >= 2**63)


FLAGS = st.one_of(
    st.integers(-(2**33), 2**33),
    st.sampled_from(
        [
            0,
            zerocopy.SPLICE_F_MOVE,
            zerocopy.SPLICE_F_NONBLOCK,
            zerocopy.SPLICE_F_MORE,
            zerocopy.SPLICE_F_GIFT,
            zerocopy.SPLICE_F_NONBLOCK | zerocopy.SPLICE_F_MORE,
            0xFF,
        ]
    ),
    st.sampled_from([None, 1.0, "1", True]),
)


def drain_socket(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        while sock.recv(1 << 20):
            pass


# Offsets of 2**63 and more have their own test (test_send_file_fuzz.py, TestFoundByFuzzing).
SEND_OFFSETS = NUMBERS.filter(_not_past_int64)

SOCK_KINDS = st.sampled_from(
    ["unix", "tcp", "unix-timeout", "nonblocking", "udp", "listening", "closed", "not-a-socket"]
)


@contextlib.contextmanager
def a_socket(kind: str) -> Iterator[tuple[Any, socket.socket | None]]:
    """(socket under test, its drained peer or None)."""
    if kind in ("unix", "unix-timeout", "nonblocking"):
        a, b = socket.socketpair()
        a.settimeout({"unix": 2.0, "unix-timeout": 0.05, "nonblocking": 0.0}[kind])
    elif kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        a.settimeout(2.0)
    elif kind == "udp":
        a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), None
    elif kind == "listening":
        a, b = socket.create_server(("127.0.0.1", 0)), None
        a.settimeout(0.05)
    elif kind == "closed":
        a, b = socket.socketpair()
        a.close()
    else:
        yield io.BytesIO(b"not a socket"), None
        return
    try:
        yield a, b
    finally:
        if b is not None:
            drain_socket(b)
            b.close()
        a.close()


def arun(coro_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        return await coro_fn(*args, **kwargs)

    return asyncio.run(main())


LONG = 30 * 24 * 3600.0  # 30 days: more milliseconds than poll(2)'s int takes

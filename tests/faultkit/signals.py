"""A signal every millisecond, the transfers it interrupts, and the checks over them.

Each capability's ``_faults`` file runs these checks over its own scenarios.
"The GC note" is in :mod:`faultkit.peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import zerocopy
import zerocopy.aio
from conftest import stream_pair
from faultkit import KiB, MiB
from faultkit.peers import SLOW, Feeder, Peer, assert_prefix, file_bytes, random_bytes
from zerocopy._tally import Tally


class Stop(Exception):
    """What the test's signal handler raises."""


@contextlib.contextmanager
def ticking(raise_after: int | None = None) -> Iterator[SimpleNamespace]:
    """SIGALRM every millisecond; the handler counts, and raises Stop once after *raise_after*."""
    state = SimpleNamespace(ticks=0, raised=False, armed=True)

    def handler(signum: int, frame: Any) -> None:
        state.ticks += 1
        if state.armed and raise_after is not None and state.ticks >= raise_after:
            state.armed = False
            state.raised = True
            raise Stop(state.ticks)

    # A handler that runs inside a garbage-collector callback (Hypothesis
    # installs one) or a finalizer has its exception swallowed by CPython as
    # "unraisable", whatever the library: no automatic collection meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        yield state
    finally:
        state.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        if collecting:
            gc.enable()


SIG_SIZE = 8 * MiB


class Scenario:
    """One transfer the signal tests run in the main thread.

    ``run()`` makes the call and returns its count; ``count_of(exc)`` reads the
    count off an exception; ``landed()`` (after run) ends the peers and
    returns the bytes that reached the destination.
    """

    def __init__(self, api: str, data: bytes, tmp_path: Path) -> None:
        self.api, self.data, self.tmp = api, data, tmp_path
        self.src = tmp_path / "src"
        self.src.write_bytes(data)
        self.dst = tmp_path / "dst"
        self.closers: list[Callable[[], None]] = []
        self.threads: list[Any] = []
        self.fsrc: Any = None  # the source file object, where the API takes one
        self.returns: Any = len(data)  # what call() returns when it finishes
        getattr(self, "_setup_" + api.replace("->", "_").replace(".", "_"))()

    # Each setup defines self.call (the transfer) and self._landed.  call is
    # the API call and nothing after it: a handler that raised in code run
    # after the API returned (len(), say) would look like the API's exception.

    def _file_sink(self) -> None:
        self.out = open(self.dst, "wb")  # noqa: SIM115 - closed by landed() or close()
        self.closers.append(self.out.close)
        self._landed = lambda: (self.out.close(), file_bytes(self.dst))[1]

    def _socket_sink(self, kind: str = "unix") -> socket.socket:
        a, b = stream_pair(kind)
        self.peer = Peer(b, pause=SLOW)
        self.threads.append(self.peer)
        self.peer.start()
        self.closers += [b.close, a.close]

        def landed() -> bytes:
            with contextlib.suppress(OSError):
                a.shutdown(socket.SHUT_WR)
            return self.peer.finish()

        self._landed = landed
        return a

    def _pipe_sink(self) -> int:
        r, w = os.pipe()
        self.peer = Peer(r, pause=SLOW)
        self.threads.append(self.peer)
        self.peer.start()
        self.closers.append(lambda: os.close(r))
        self.wfile = open(w, "wb")  # noqa: SIM115 - closed by landed() or close()

        def landed() -> bytes:
            self.wfile.close()
            return self.peer.finish()

        self._landed = landed
        return w

    # Objects are opened here, so that call() is the API call and nothing else:
    # a handler raising anywhere else would not be the transfer's business.

    def _source_file(self) -> Any:
        f = open(self.src, "rb")  # noqa: SIM115 - closed by close()
        self.closers.insert(0, f.close)
        self.fsrc = f
        return f

    def _setup_copyfileobj_file_file(self) -> None:
        self._file_sink()
        fsrc = self._source_file()
        self.call = lambda: zerocopy.copyfileobj(fsrc, self.out)

    def _setup_copyfileobj_file_socket(self) -> None:
        a = self._socket_sink()
        wsock = a.makefile("wb")
        self.closers.insert(0, wsock.close)
        fsrc = self._source_file()
        self.call = lambda: zerocopy.copyfileobj(fsrc, wsock)

    def _setup_copyfileobj_file_pipe(self) -> None:
        self._pipe_sink()
        fsrc = self._source_file()
        self.call = lambda: zerocopy.copyfileobj(fsrc, self.wfile)

    def _setup_copyfileobj_socket_file(self) -> None:
        a, b = socket.socketpair()
        feeder = Feeder(b, self.data, chunk=64 * KiB, pace=SLOW, end="close")
        self.threads.append(feeder)
        feeder.start()
        rsock = a.makefile("rb")
        self.closers += [rsock.close, a.close]
        self._file_sink()
        self.call = lambda: zerocopy.copyfileobj(rsock, self.out)

    def _setup_copyfileobj_pipe_file(self) -> None:
        r, w = os.pipe()
        feeder = Feeder(w, self.data, chunk=64 * KiB, pace=SLOW, end="close")
        self.threads.append(feeder)
        feeder.start()
        rfile = open(r, "rb")  # noqa: SIM115 - closed by close()
        self.closers.append(rfile.close)
        self._file_sink()
        self.call = lambda: zerocopy.copyfileobj(rfile, self.out)

    def _setup_copyfile(self) -> None:
        self._landed = lambda: file_bytes(self.dst)
        self.call = lambda: zerocopy.copyfile(self.src, self.dst)
        self.returns = self.dst

    def _setup_send_file(self) -> None:
        a = self._socket_sink()
        fsrc = self._source_file()
        self.call = lambda: zerocopy.send_file(a, fsrc)

    def _setup_relay(self) -> None:
        c, a = socket.socketpair()
        b, s = socket.socketpair()
        feeder = Feeder(c, self.data, chunk=64 * KiB, pace=SLOW, end="shutdown")
        s.shutdown(socket.SHUT_WR)  # nothing comes back: b_to_a is 0
        self.peer = Peer(s)
        self.threads += [feeder, self.peer]
        feeder.start()
        self.peer.start()
        self.closers += [a.close, b.close, c.close, s.close]

        def landed() -> bytes:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)
            a.close()  # the feeder may still be writing into it
            return self.peer.finish()

        self._landed = landed
        self.call = lambda: zerocopy.relay(a, b)[0]

    def _setup_ZeroCopySender_sendall(self) -> None:
        a = self._socket_sink("tcp")
        zc = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)
        self.closers.insert(0, lambda: zc.flush(timeout=10))
        self.call = lambda: zc.sendall(self.data)
        self.returns = None

    def _setup_ZeroCopySender_sendall_plain(self) -> None:
        # Below the threshold: sendall's plain path (socket.send, no tally).
        a = self._socket_sink("tcp")
        zc = zerocopy.ZeroCopySender(a, threshold=len(self.data) + 1)
        self.call = lambda: zc.sendall(self.data)
        self.returns = None

    def _setup_aio_send_file(self) -> None:
        a = self._socket_sink()
        a.setblocking(False)
        fsrc = self._source_file()
        self.call = lambda: asyncio.run(zerocopy.aio.send_file(a, fsrc))

    def _setup_AsyncZeroCopySender_sendall(self) -> None:
        a = self._socket_sink("tcp")
        a.setblocking(False)

        async def send() -> int:
            zc = zerocopy.aio.AsyncZeroCopySender(a, threshold=0, stop_on_copied=False)
            try:
                await zc.sendall(self.data)
            finally:
                self.peer.pause = 0  # a local receiver's reads complete the sends
                with contextlib.suppress(OSError):
                    await zc.flush(timeout=10)
            return len(self.data)

        self.call = lambda: asyncio.run(send())

    def count_of(self, exc: BaseException) -> Any:
        if self.api == "relay":
            return getattr(exc, "a_to_b", None)
        return getattr(exc, "bytes_transferred", None)

    def landed(self) -> bytes:
        return self._landed()

    def close(self) -> None:
        for close in self.closers:
            with contextlib.suppress(OSError):
                close()
        for t in self.threads:
            t.join(30)


SIGNAL_APIS = [
    "copyfileobj:file->file",
    "copyfileobj:file->socket",
    "copyfileobj:file->pipe",
    "copyfileobj:socket->file",
    "copyfileobj:pipe->file",
    "copyfile",
    "send_file",
    "relay",
    "ZeroCopySender.sendall",
    "ZeroCopySender.sendall:plain",
]


def _scenario(api: str, seed: int, tmp_path: Path) -> Scenario:
    name = api.replace(":", "_")
    return Scenario(name, random_bytes(SIG_SIZE, seed), tmp_path)


#: The backend call that delivers each API's bytes to its destination.
DELIVERING_CALL = {
    "copyfileobj:file->file": "copy_file_range",
    "copyfileobj:file->socket": "sendfile",
    "copyfileobj:file->pipe": "sendfile",
    "copyfileobj:socket->file": "splice",
    "copyfileobj:pipe->file": "splice",
    "copyfile": "copy_file_range",
    "send_file": "sendfile",
    "relay": "relay_step",
    "ZeroCopySender.sendall": "send",
    "aio.send_file": "sendfile",
    "AsyncZeroCopySender.sendall": "send",
}


# --- the checks (each capability's TestSignals and TestRaiseRightAfterACall) ---------


def check_handler_that_returns(tmp_path: Path, api: str) -> None:
    """With SIGALRM every millisecond and a quiet handler, the transfer is byte-exact."""
    sc = _scenario(api, 7, tmp_path)
    try:
        with ticking() as state:
            result = sc.call()
        landed = sc.landed()
    finally:
        sc.close()
    assert result == sc.returns
    assert landed == sc.data
    if api not in ("copyfileobj:file->file", "copyfile"):
        # The slow peer makes these last ~100 ms: the timer did fire during them.
        assert state.ticks >= 10, state.ticks


def check_handler_that_raises(tmp_path: Path, api: str) -> None:
    """A handler's exception ends the transfer, with bytes_transferred == bytes delivered."""
    for trial, raise_after in enumerate((3, 5, 10, 20, 40)):
        sc = _scenario(api, trial, tmp_path)
        outcome: Any = None
        try:
            try:
                with ticking(raise_after):
                    try:
                        result = sc.call()
                    except Stop as exc:
                        # Only the count is kept, not the exception: see the GC note.
                        outcome = SimpleNamespace(count=sc.count_of(exc))
            except Stop:
                pass  # raised while the timer was being stopped, after the call
            position = sc.fsrc.tell() if sc.fsrc is not None else None
            landed = sc.landed()
        finally:
            sc.close()
        assert_prefix(landed, sc.data)
        if outcome is None:
            # Finished before the handler raised: nothing to account for.
            assert result == sc.returns
            assert landed == sc.data
            continue
        count = outcome.count
        if count is None:
            # Raised before the transfer began (the argument checks, or
            # the handler ran as the call was entered): then nothing moved.
            assert landed == b"", f"{api}: no byte count, but {len(landed)} bytes moved"
            continue
        assert count == len(landed), (
            f"{api} trial {trial}: bytes_transferred {count}, "
            f"but {len(landed)} bytes reached the destination"
        )
        if position is not None:
            # The source stands just past the delivered bytes: a retry
            # from there neither loses nor repeats any.
            assert position == count, f"{api} trial {trial}: source at {position}"


def check_count_and_position_are_exact(
    backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: str, nth: int
) -> None:
    """Stop raised as the nth delivering call returns: its bytes are counted, none repeated."""
    # What a signal handler does when it runs at the first bytecode after
    # the system call: the bytes are at the destination and nothing after
    # the call ran.  Calls given no tally (those filling zerocopy's own
    # pipe) deliver nothing and pass through.
    name = DELIVERING_CALL[api]
    # copyfile calls the os module's copy_file_range at the fresh files'
    # positions (cheaper than the cffi shim, and no count to keep: the
    # destination's size is the count), through the backend's
    # copy_file_range_at_positions.
    owner: Any = backend
    attr = "copy_file_range_at_positions" if api == "copyfile" else name
    real = getattr(owner, attr)
    calls = 0

    def deliver_then_raise(*args: Any) -> int:
        nonlocal calls
        # At most 1 MiB a call, so that there is a third call to stop at.
        capped = list(args)
        if name == "relay_step":
            # The relay's step: one call, its counts in the state it is given.
            state = args[6]
            before = state.delivered
            capped[5] = min(capped[5], MiB)  # the step's budget
            status = int(real(*capped))
            if state.delivered > before:
                calls += 1
                if calls == nth:
                    raise Stop(state.delivered - before)
            return status
        if name == "send":
            capped[1] = capped[1][:MiB]
        else:
            at = 3 if name == "sendfile" else 2
            capped[at] = min(capped[at], MiB)
        n = int(real(*capped))
        if (api == "copyfile" or isinstance(args[-1], Tally)) and n > 0:
            calls += 1
            if calls == nth:
                raise Stop(n)
        return n

    monkeypatch.setattr(owner, attr, deliver_then_raise)
    sc = _scenario(api, nth, tmp_path)
    try:
        try:
            sc.call()
        except Stop as exc:
            count = sc.count_of(exc)
        else:
            pytest.fail(f"{api}: fewer than {nth} delivering calls")
        position = sc.fsrc.tell() if sc.fsrc is not None else None
        monkeypatch.undo()  # the peers' clean-up may use the call too
        landed = sc.landed()
    finally:
        sc.close()
    assert_prefix(landed, sc.data)
    assert 0 < count == len(landed), f"{api}: counted {count}, delivered {len(landed)}"
    if position is not None:
        assert position == count, f"{api}: source at {position}, {count} delivered"

"""Payloads, peer threads that read or feed a socket or pipe, and shared fault checks."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import zerocopy
from conftest import stream_pair, tcp_pair
from faultkit import KiB, MiB


def random_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def close_with_reset(sock: socket.socket) -> None:
    """Close *sock* with SO_LINGER 0: a TCP reset (on AF_UNIX, a plain close)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Peer(threading.Thread):
    """Reads a socket or pipe fd in a thread, keeping the bytes.

    *pause* sleeps after each read of *chunk* bytes (a slow reader); *gate*
    holds reading back until set; *stop_after* ends reading after that many
    bytes and calls *then* (close, reset...).
    """

    def __init__(
        self,
        source: socket.socket | int,
        *,
        pause: float = 0.0,
        chunk: int = 64 * KiB,
        gate: threading.Event | None = None,
        stop_after: int | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.source, self.pause, self.chunk, self.gate = source, pause, chunk, gate
        self.stop_after, self.then = stop_after, then
        self.data = bytearray()
        self.error: BaseException | None = None

    def _read(self, n: int) -> bytes:
        if isinstance(self.source, socket.socket):
            return self.source.recv(n)
        return os.read(self.source, n)

    def run(self) -> None:
        try:
            if self.gate is not None:
                self.gate.wait(30)
            while True:
                want = self.chunk
                if self.stop_after is not None:
                    want = min(want, self.stop_after - len(self.data))
                    if want <= 0:
                        break
                chunk = self._read(want)
                if not chunk:
                    break
                self.data += chunk
                if self.pause:
                    time.sleep(self.pause)
            if self.then is not None:
                self.then()
        except OSError as exc:
            self.error = exc

    def finish(self, timeout: float = 30) -> bytes:
        self.join(timeout)
        assert not self.is_alive(), "peer did not see end of stream"
        return bytes(self.data)


class Feeder(threading.Thread):
    """Writes *data* to a socket or pipe fd in a thread, in paced chunks, then ends it.

    *end* is ``"shutdown"`` (sockets), ``"close"``, ``"reset"`` (TCP) or None.
    Write errors (the other side gone) end the thread quietly; they are the
    point of some tests.
    """

    def __init__(
        self,
        sink: socket.socket | int,
        data: bytes,
        *,
        chunk: int = 256 * KiB,
        pace: float = 0.0,
        end: str | None = "close",
    ) -> None:
        super().__init__(daemon=True)
        self.sink, self.data, self.chunk, self.pace, self.end = sink, data, chunk, pace, end
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        view = memoryview(self.data)
        try:
            for i in range(0, len(view), self.chunk):
                piece = view[i : i + self.chunk]
                if isinstance(self.sink, socket.socket):
                    self.sink.sendall(piece)
                else:
                    while piece:
                        piece = piece[os.write(self.sink, piece) :]
                self.sent += len(view[i : i + self.chunk])
                if self.pace:
                    time.sleep(self.pace)
        except OSError as exc:
            self.error = exc
        finally:
            self._end()

    def _end(self) -> None:
        sink = self.sink
        with contextlib.suppress(OSError):
            if self.end == "shutdown" and isinstance(sink, socket.socket):
                sink.shutdown(socket.SHUT_WR)
            elif self.end == "reset" and isinstance(sink, socket.socket):
                close_with_reset(sink)
            elif self.end == "close":
                sink.close() if isinstance(sink, socket.socket) else os.close(sink)

    def finish(self, timeout: float = 30) -> None:
        self.join(timeout)
        assert not self.is_alive(), "feeder did not finish"


def _send(api: str, sock: socket.socket, f: Any, zc: Any = None) -> None:
    """Send file *f* over *sock* with send_file, copyfileobj or a ZeroCopySender."""
    if api == "send_file":
        zerocopy.send_file(sock, f)
    elif api == "copyfileobj":
        with sock.makefile("wb") as out:
            zerocopy.copyfileobj(f, out)
    else:
        zc.sendall(f.read())


def file_bytes(path: Path | str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def assert_prefix(landed: bytes, data: bytes, what: str = "destination") -> None:
    assert landed == data[: len(landed)], f"{what} holds bytes that are not the source's prefix"


# GC note.  Why some tests keep a count rather than the exception: an exception kept in
# a test's frame forms a cycle (frame -> exception -> traceback -> frame); on
# the cffi backend the traceback of a failed vmsplice or ZeroCopySender send
# holds a memoryview and a cffi export of it, and the garbage collector
# crashes when it clears such a cycle (faultkit/children.py,
# check_buffer_error_in_a_reference_cycle).  Dropping the exception promptly
# frees it by reference counting instead, which is safe.

PEER_SIZE = 16 * MiB  # well past what loopback socket buffers hold
SEEDS = [1, 2, 3]


def stop_point(seed: int) -> int:
    return random.Random(seed).randrange(1, 4 * MiB)


SLOW = 0.0005  # a reader's pause per 64 KiB: the transfer lasts about 100 ms


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


def later(delay: float, action: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --- checks run for several APIs (each capability's file runs its own) ---------------


def check_receiver_gone_mid_file(tmp_path: Path, api: str, how: str, seed: int) -> None:
    """A receiver that resets or closes at a random point ends the send with an OSError."""
    data = random_bytes(PEER_SIZE, seed)
    (tmp_path / "src").write_bytes(data)
    sender, receiver = tcp_pair()
    peer = Peer(
        receiver,
        stop_after=stop_point(seed),
        then=(lambda: close_with_reset(receiver)) if how == "reset" else receiver.close,
    )
    peer.start()
    with sender, open(tmp_path / "src", "rb") as f:
        with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
            _send(api, sender, f)
        got = peer.finish()
        position = f.tell()
    sent = info.value.bytes_transferred  # type: ignore[attr-defined]
    assert_prefix(got, data, "receiver")
    # Bytes still in the socket buffers when the reset came never arrive.
    assert len(got) <= sent < len(data)
    assert position == sent


def check_socket_shut_down_by_another_thread(tmp_path: Path, kind: str, api: str) -> None:
    """shutdown() from another thread ends a blocked send: BrokenPipeError, exact counts."""
    data = random_bytes(PEER_SIZE)
    (tmp_path / "src").write_bytes(data)
    sender, receiver = stream_pair(kind)
    gate = threading.Event()
    peer = Peer(receiver, gate=gate)  # reads only once the sender is shut down
    peer.start()
    killer = later(0.05, lambda: (sender.shutdown(socket.SHUT_RDWR), gate.set()))
    with sender, receiver, open(tmp_path / "src", "rb") as f:
        zc = None
        if api == "ZeroCopySender":
            zc = zerocopy.ZeroCopySender(sender, threshold=0, stop_on_copied=False)
        with pytest.raises(BrokenPipeError) as info:
            _send(api, sender, f, zc)
        killer.join()
        got = peer.finish()
        if zc is not None:
            zc.flush(timeout=10)
    sent = getattr(info.value, "bytes_transferred", None)
    del info  # see the GC note
    assert_prefix(got, data, "receiver")
    # Queued bytes still go out after shutdown: the count is exact here.
    assert sent == len(got)


def check_file_truncated_while_sent(tmp_path: Path, api: str) -> None:
    """A file truncated while it goes to a slow socket ends the send early with exact counts."""
    data = random_bytes(PEER_SIZE)
    path = tmp_path / "src"
    path.write_bytes(data)
    a, b = socket.socketpair()
    peer = Peer(b, pause=SLOW)
    peer.start()
    cutter = later(0.03, lambda: os.truncate(path, 2 * MiB))
    with a, b, open(path, "rb") as f:
        if api == "send_file":
            count = zerocopy.send_file(a, f)
        else:
            with a.makefile("wb") as out:
                count = zerocopy.copyfileobj(f, out)
        a.shutdown(socket.SHUT_WR)
        got = peer.finish()
        assert f.tell() == count
    cutter.join()
    assert count == len(got) < len(data)
    assert_prefix(got, data, "receiver")

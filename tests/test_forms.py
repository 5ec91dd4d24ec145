"""One promise, every form: send_file, relay and the zero-copy sender on each loop.

The same checks run on the blocking forms, asyncio, uvloop, anyio on
asyncio and on trio, and trio through the test-only adapter of
``loopkit`` (the fourth event loop: one class over the loop-free cores).
References are the standard library's own: ``socket.sendfile`` for the
bytes, count and file position of a send, plain ``sendall``/``recv`` for
the relay and the sender.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from loopkit import Form
from loopkit import form as form
from netkit import KiB, MiB, make_file, payload, tcp_pair
from netkit import empty_pool as empty_pool
from netkit import sockets as sockets

SIZE = 300 * KiB + 7


class Reader(threading.Thread):
    """Read a socket (made blocking) to its end; keep what arrived."""

    def __init__(self, sock: socket.socket, start: bool = True) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = bytearray()
        if start:
            self.begin()

    def begin(self) -> None:
        self.sock.setblocking(True)
        self.sock.settimeout(30)
        self.start()

    def run(self) -> None:
        while chunk := self.sock.recv(256 * KiB):
            self.data += chunk

    def result(self) -> bytes:
        self.join(30)
        assert not self.is_alive(), "the reader did not see the end"
        return bytes(self.data)


class Writer(threading.Thread):
    """Send *data* on a socket (made blocking), then shut its writing down."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        sock.setblocking(True)
        sock.settimeout(30)
        self.sock, self.data = sock, data
        self.start()

    def run(self) -> None:
        self.sock.sendall(self.data)
        self.sock.shutdown(socket.SHUT_WR)


def _pair(form: Form, sockets: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """(the form's end, the peer's end) of a loopback TCP connection."""
    mine, peer = tcp_pair(sockets)
    mine.setblocking(form.blocking)
    return mine, peer


def _call(form: Form, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run to its end on the form's loop (or called, if blocking)."""
    return form.run(lambda: fn(*args, **kwargs))


def _reference(
    path: Path, offset: int, count: int | None, sockets: list[socket.socket]
) -> tuple[int, bytes, int]:
    """What socket.socket.sendfile does with these arguments: (sent, bytes, position)."""
    mine, peer = tcp_pair(sockets)
    mine.setblocking(True)
    reader = Reader(peer)
    try:
        with open(path, "rb") as f:
            sent = mine.sendfile(f, offset, count)
            position = f.tell()
    finally:
        mine.shutdown(socket.SHUT_WR)
        received = reader.result()
    return sent, received, position


@pytest.mark.parametrize(
    ("offset", "count"),
    [
        (0, None),
        (5, 1000),
        (4096, SIZE - 4096),
        (SIZE - 10, None),
        (SIZE + 5, None),
        (3, 0),
    ],
)
def test_send_file_as_socket_sendfile(
    form: Form, tmp_path: Path, sockets: list[socket.socket], offset: int, count: int | None
) -> None:
    """Bytes, count, file position and bad-argument errors are socket.sendfile's, on every form.

    (A negative offset is zerocopy's ValueError where socket.sendfile lets
    the kernel say EINVAL: tested with the arguments, not here.)
    """
    path = make_file(tmp_path, payload(SIZE, 3))
    try:
        expected = _reference(path, offset, count, sockets)
    except (ValueError, TypeError) as exc:
        mine, _ = _pair(form, sockets)
        with open(path, "rb") as f, pytest.raises(type(exc)):
            _call(form, form.send_file, mine, f, offset, count)
        return
    mine, peer = _pair(form, sockets)
    reader = Reader(peer)
    with open(path, "rb") as f:
        sent = _call(form, form.send_file, mine, f, offset, count)
        position = f.tell()
    mine.shutdown(socket.SHUT_WR)
    assert (sent, reader.result(), position) == expected


def test_send_file_from_a_pipe(form: Form, sockets: list[socket.socket]) -> None:
    """Not a regular file: read and sent in chunks (a worker thread on the async forms)."""
    data = payload(200 * KiB + 3, 5)
    r, w = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True)
    mine, peer = _pair(form, sockets)
    reader = Reader(peer)
    with open(r, "rb", buffering=0) as f:
        feeder.start()
        sent = _call(form, form.send_file, mine, f)
    feeder.join(30)
    mine.shutdown(socket.SHUT_WR)
    assert sent == len(data)
    assert reader.result() == data


def test_relay_both_ways(form: Form, sockets: list[socket.socket]) -> None:
    """Each direction's bytes arrive whole and in order, the counts are exact, half-closes pass."""
    up, down = payload(2 * MiB + 1, 7), payload(100 * KiB, 8)
    a, client = _pair(form, sockets)
    b, server = _pair(form, sockets)
    to_server, to_client = Writer(client, up), Writer(server, down)
    got_server, got_client = Reader(server, start=False), Reader(client, start=False)
    # The writers made the peers blocking; the readers share those sockets.
    got_server.start()
    got_client.start()
    result = _call(form, form.relay, a, b, timeout=30)
    to_server.join(30)
    to_client.join(30)
    assert result == (len(up), len(down))
    assert got_server.result() == up
    assert got_client.result() == down


def test_relay_idle_timeout(form: Form, sockets: list[socket.socket]) -> None:
    """Nothing moves for *timeout* seconds: TimeoutError, carrying counts of zero."""
    a, _client = _pair(form, sockets)
    b, _server = _pair(form, sockets)
    with pytest.raises(TimeoutError) as info:
        _call(form, form.relay, a, b, timeout=0.2)
    assert (info.value.a_to_b, info.value.b_to_a) == (0, 0)  # type: ignore[attr-defined]


def test_sender_sendall_and_flush(form: Form, sockets: list[socket.socket]) -> None:
    """Zero-copy sends: every byte arrives, and after flush nothing is pending."""
    data = payload(3 * MiB + 5, 9)
    mine, peer = _pair(form, sockets)
    reader = Reader(peer)
    sender = form.sender(mine, threshold=64 * KiB)

    async def send_async() -> int:
        await sender.sendall(data)
        await sender.flush(timeout=30)
        return int(sender.pending)

    def send_blocking() -> int:
        sender.sendall(data)
        sender.flush(timeout=30)
        return int(sender.pending)

    pending = form.run(send_blocking if form.blocking else send_async)
    mine.shutdown(socket.SHUT_WR)
    assert pending == 0
    assert hashlib.sha256(reader.result()).digest() == hashlib.sha256(data).digest()


def test_send_file_interrupted_counts_exactly(
    form: Form, tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """A send stopped part-way (cancelled; on the blocking form, timed out) says what went out."""
    data = payload(16 * MiB, 11)
    path = make_file(tmp_path, data)
    mine, peer = tcp_pair(sockets, rcvbuf=64 * KiB)  # the peer reads nothing until the end
    mine.setblocking(form.blocking)
    caught: list[BaseException] = []

    def blocking() -> None:
        mine.settimeout(0.3)
        try:
            form.send_file(mine, f)
        except TimeoutError as exc:
            caught.append(exc)

    async def cancelled() -> None:
        assert form.cancel_after is not None
        with contextlib.suppress(TimeoutError), form.cancel_after(0.3):
            try:
                await form.send_file(mine, f)
            except form.cancelled as exc:
                caught.append(exc)
                raise

    with open(path, "rb") as f:
        form.run(blocking if form.blocking else cancelled)
    assert len(caught) == 1, "the send was not interrupted"
    moved = caught[0].bytes_transferred  # type: ignore[attr-defined]
    mine.shutdown(socket.SHUT_WR)
    assert 0 < moved < len(data)
    assert Reader(peer).result() == data[:moved]

"""The one sendfile loop's two decisions, on every form of send_file.

:mod:`zerocopy._engine.sendfile` decides, for all forms at once: a first
sendfile call that moves 0 bytes gives up to read/send (whatever ``st_size``
says), and where that fallback sends nothing the file position is put back.
Each test runs every form (tests/loopkit.py: blocking, asyncio, uvloop, anyio
on asyncio and on trio, trio through the test-only adapter) and compares
with :meth:`socket.socket.sendfile` where its result is the contract.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import pytest

from loopkit import Form
from loopkit import form as form
from netkit import payload

#: Runs one form's send: (sock, file, offset, count) -> bytes sent.
Send = Callable[[socket.socket, BinaryIO, int, int | None], int]


def _reference(sock: socket.socket, file: BinaryIO, offset: int, count: int | None) -> int:
    return sock.sendfile(file, offset, count)


@pytest.fixture
def send(form: Form) -> Send:
    """send_file of each form (loopkit's: blocking, asyncio, uvloop, anyio, trio's adapter)."""

    def run(sock: socket.socket, file: BinaryIO, offset: int, count: int | None) -> int:
        if form.blocking:
            return int(form.send_file(sock, file, offset, count))
        sock.setblocking(False)
        return int(form.run(lambda: form.send_file(sock, file, offset, count)))

    return run


def transfer(send: Send, file: BinaryIO, offset: int = 0, count: int | None = None) -> Any:
    """(bytes sent, bytes received, file position afterwards) of one send over a UNIX pair."""
    a, b = socket.socketpair()
    got = bytearray()

    def drain() -> None:
        while chunk := b.recv(1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with a:
            sent = send(a, file, offset, count)
            a.shutdown(socket.SHUT_WR)
    finally:
        reader.join(30)
        b.close()
    return sent, bytes(got), file.tell()


@pytest.fixture
def zero_first(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backend's sendfile moves nothing on its first call (and on all later ones)."""
    calls: list[int] = []

    def nothing(out_fd: int, in_fd: int, offset: Any, count: int, tally: Any = None) -> int:
        calls.append(count)
        return 0

    monkeypatch.setattr(backend, "sendfile", nothing)
    return calls


def test_first_zero_with_a_size_reads_instead(
    zero_first: list[int], send: Send, tmp_path: Path
) -> None:
    """st_size > 0 but sendfile moves 0 at once: read() has the last word, on every form."""
    data = payload(100_000, 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert os.fstat(f.fileno()).st_size == len(data)
        sent, got, position = transfer(send, f, 5, None)
    assert zero_first, "sendfile was never tried"
    assert (sent, got, position) == (len(data) - 5, data[5:], len(data))


def test_first_zero_on_an_empty_file_as_socket_sendfile(
    backend: ModuleType, send: Send, tmp_path: Path
) -> None:
    """An empty file: nothing sent, the position untouched, as socket.sendfile."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    results = []
    for how in (_reference, send):
        with open(path, "rb") as f:
            f.seek(7)
            results.append(transfer(how, f, 3))
    assert results[1] == results[0] == (0, b"", 7)


def test_offset_past_the_end_leaves_the_position(
    backend: ModuleType, send: Send, tmp_path: Path
) -> None:
    """sendfile moves 0 (offset past the end), the fallback sends nothing: position put back."""
    path = tmp_path / "f"
    path.write_bytes(payload(1000, 4))
    results = []
    for how in (_reference, send):
        with open(path, "rb") as f:
            f.seek(10)
            results.append(transfer(how, f, 5000, 20))
    assert results[1] == results[0] == (0, b"", 10)


def test_position_put_back_when_the_fallback_finds_nothing(
    zero_first: list[int], send: Send, tmp_path: Path
) -> None:
    """A file that truncates to empty while sendfile gives up: the position stays."""
    path = tmp_path / "f"
    path.write_bytes(payload(5000, 5))
    with open(path, "rb") as f:
        f.seek(42)
        os.truncate(path, 0)
        assert transfer(send, f, 100) == (0, b"", 42)
    assert zero_first


def test_procfs_size_zero_sends_what_read_sees(backend: ModuleType, send: Send) -> None:
    """/proc/version reports size 0: its real bytes go out (socket.sendfile sends none)."""
    with open("/proc/version", "rb") as f:
        want = f.read()
    with open("/proc/version", "rb") as f:
        assert os.fstat(f.fileno()).st_size == 0
        assert transfer(_reference, f) == (0, b"", 0)  # CPython's: an "empty file"
    with open("/proc/version", "rb") as f:
        assert transfer(send, f) == (len(want), want, len(want))


def test_size_zero_with_content_sends_it(
    backend: ModuleType, send: Send, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose stat says 0 but which holds bytes (sysfs-like): all of them, any form."""
    data = payload(70_000, 6)
    path = tmp_path / "f"
    path.write_bytes(data)
    real = os.fstat

    def size_zero(fd: int) -> os.stat_result:
        st = real(fd)
        return os.stat_result((*st[:6], 0, *st[7:]))

    monkeypatch.setattr(os, "fstat", size_zero)
    with open(path, "rb") as f:
        assert transfer(send, f, 1, 50_000) == (50_000, data[1:50_001], 50_001)


def test_a_fallback_that_sends_keeps_socket_sendfiles_position(
    zero_first: list[int], send: Send, tmp_path: Path
) -> None:
    """The fallback after a give-up sends with a count: position at offset + sent."""
    data = payload(9000, 7)
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        f.seek(3)
        assert transfer(send, f, 100, 1000) == (1000, data[100:1100], 1100)

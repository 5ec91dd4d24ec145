"""zerocopy.http and what is not a regular file: a FIFO, a socket, a device in the served tree.

``open()`` of a FIFO blocks until a writer comes, so a handler that opens
first and looks afterwards hangs a thread on it for as long as nobody
writes.  These tests serve a tree holding such things with a real
:class:`http.server.ThreadingHTTPServer` on loopback (on every backend) and
expect the stdlib's answer for a file it cannot open (404 "File not found")
at once: within K plain requests' time, measured in the same test.  FIFOs
are opened for writing at teardown, so a handler blocked on one (the bug)
finishes and the server can stop: a failure, not a hang.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from conftest import hang_guard
from zerocopy.http import ZeroCopyHTTPRequestHandler

pytestmark = pytest.mark.usefixtures("no_leaks")

K = 50  # how many plain requests' time an answer may take: generous, for a shared machine
HANG_GUARD = 30.0  # seconds: turns a hang into a failure; never the bound tested


def release_fifo(path: Path) -> None:
    """Let every open() waiting on FIFO *path* return: open it for writing, then close it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader is waiting, nothing to release
        return
    os.close(fd)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A served directory: a regular file, a FIFO, a bound Unix socket, two device nodes."""
    (tmp_path / "f.bin").write_bytes(os.urandom(1000))
    os.mkfifo(tmp_path / "fifo")
    # Device nodes need privileges to make; a symlink to one serves the same
    # (the handler follows links, as the stdlib's does).
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "null").symlink_to("/dev/null")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "socket"))
        yield tmp_path
        release_fifo(tmp_path / "fifo")


class _Quiet:
    timeout: ClassVar[float] = HANG_GUARD
    logged: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        self.logged.append(format % args)


class ZcHandler(_Quiet, ZeroCopyHTTPRequestHandler):
    pass


class StdlibHandler(_Quiet, http.server.SimpleHTTPRequestHandler):
    pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close joins the handler threads before no_leaks looks


@pytest.fixture
def serve(tree: Path) -> Iterator[Callable[[type], int]]:
    """serve(handler) -> the port of a server for *tree* in a thread; all stopped at teardown."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start(handler: type) -> int:
        server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(tree)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
        thread.start()
        running.append((server, thread))
        return int(server.server_address[1])

    yield start
    release_fifo(tree / "fifo")  # a handler stuck on it can finish: server_close joins it
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(HANG_GUARD)


def get(port: int, path: str, timeout: float, method: str = "GET") -> tuple[int, bytes, float]:
    """Status, body and seconds of one request on a new connection."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.perf_counter() - start
    finally:
        conn.close()


class TestNonRegular:
    def test_each_gets_the_stdlib_404_at_once(
        self, backend: ModuleType, serve: Callable[[type], int]
    ) -> None:
        """A FIFO, a socket or a device gets the stdlib's 404 for an unopenable file, promptly."""
        port = serve(ZcHandler)
        get(port, "/f.bin", HANG_GUARD)  # warm
        baseline = statistics.median(get(port, "/f.bin", HANG_GUARD)[2] for _ in range(9))
        # The stdlib's answer when open() fails, as for an unreadable file.
        stdlib = get(serve(StdlibHandler), "/missing", HANG_GUARD)[:2]
        assert stdlib[0] == 404
        for name in ("fifo", "socket", "zero", "null"):
            for method in ("GET", "HEAD"):
                try:
                    status, body, took = get(port, f"/{name}", 10 * K * baseline, method)
                except TimeoutError:
                    pytest.fail(f"{method} /{name}: no answer in {10 * K} plain requests' time")
                want = stdlib if method == "GET" else (404, b"")
                assert (status, body) == want, (name, method)
                assert took <= K * baseline, (name, method, took, baseline)
        # And the server carries on.
        assert get(port, "/f.bin", HANG_GUARD)[0] == 200

    def test_fifo_with_a_writer_still_refused(
        self, backend: ModuleType, serve: Callable[[type], int], tree: Path
    ) -> None:
        """A FIFO that a writer holds open (so open() would not block) is refused all the same."""
        port = serve(ZcHandler)
        reader = os.open(tree / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # so the writer can open
        writer = os.open(tree / "fifo", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(writer, b"not a file\n")
            with contextlib.closing(socket.create_connection(("127.0.0.1", port))) as sock:
                sock.settimeout(HANG_GUARD)
                sock.sendall(b"GET /fifo HTTP/1.0\r\n\r\n")
                reply = b""
                while chunk := sock.recv(1 << 16):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.0 404 "), reply[:100]
            assert b"not a file" not in reply
        finally:
            os.close(writer)
            os.close(reader)


class TestOpenRegular:
    def test_fifo_swapped_in_after_the_stat_is_refused_without_blocking(
        self, tree: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A path that becomes a FIFO between the stat and the open is refused by the fstat."""
        from zerocopy import _regular

        regular = os.stat(tree / "f.bin")
        real_stat = os.stat

        def stale_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            # What the stat saw just before the path was swapped for the FIFO.
            return regular if str(path) == str(tree / "fifo") else real_stat(path, *args, **kwargs)

        monkeypatch.setattr(_regular.os, "stat", stale_stat)
        before = set(os.listdir("/proc/self/fd"))
        with hang_guard(HANG_GUARD), pytest.raises(_regular.NotRegularFileError, match="regular"):
            _regular.open_regular(str(tree / "fifo"))
        monkeypatch.undo()
        assert set(os.listdir("/proc/self/fd")) == before  # the fd it opened was closed

"""serve --timeout and proxy --timeout: a stalled client frees its thread and its place (issue 21).

The servers run as subprocesses on loopback; a client that stops reading (or
sending) must be dropped within the timeout plus a bounded slack, while the
server goes on serving others.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from clikit import (
    TIMEOUT,
    EchoServer,
    Server,
    StartServer,
    connect,
    echoes,
    get,
    send_get,
)
from clikit import echo as echo
from clikit import start_server as start_server
from timekit import scaled

#: How long past its timeout a server may take to drop a stalled client
#: (scaled: a loaded or instrumented run is slower to get there).
SLACK = scaled(10.0)
BIG = 256 << 20  # more than loopback's socket buffers hold, by far
SMALL = b"small file\n" * 1000


def wait_for_threads(server: Server, count: int) -> float:
    """Wait (bounded) until the server has *count* threads; return how long that took."""
    started = time.monotonic()
    while (now := server.threads()) != count:
        waited = time.monotonic() - started
        assert waited < TIMEOUT, f"{now} threads, not {count}, after {TIMEOUT} s"
        time.sleep(0.02)
    return time.monotonic() - started


def drain(sock: socket.socket) -> int:
    """Read *sock* to its end (EOF or reset); return the bytes read."""
    total = 0
    try:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


def start_serve(start_server: StartServer, tmp_path: Path, timeout: str) -> Server:
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(BIG)  # sparse: sendfile reads zeros, the disk holds nothing
    (tmp_path / "small.bin").write_bytes(SMALL)
    return start_server(
        "serve", str(tmp_path), "--bind", "127.0.0.1", "--port", "{port}", "--timeout", timeout
    )


class TestServeTimeout:
    def test_client_that_stops_reading_is_dropped(
        self, start_server: StartServer, tmp_path: Path
    ) -> None:
        """serve --timeout 1: a client that never reads a large file is dropped; others served."""
        server = start_serve(start_server, tmp_path, "1")
        idle_threads = 1  # the main thread, waiting for connections
        wait_for_threads(server, idle_threads)
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.settimeout(TIMEOUT)
            stalled.connect(("127.0.0.1", server.port))
            send_get(stalled, "/big.bin")
            wait_for_threads(server, idle_threads + 1)  # its handler is sending
            assert get(server.port, "/small.bin") == (200, SMALL)  # served meanwhile
            released = wait_for_threads(server, idle_threads)
            assert released < 1.0 + SLACK
            server.wait_for_log("Request timed out", SLACK)  # stderr is read as it comes
            assert drain(stalled) < BIG  # closed by the server, short of the body
        assert get(server.port, "/small.bin") == (200, SMALL)

    def test_client_that_stops_sending_is_dropped(
        self, start_server: StartServer, tmp_path: Path
    ) -> None:
        """serve --timeout 1: a client that sends half a request line is closed in time."""
        server = start_serve(start_server, tmp_path, "1")
        with connect(server.port) as stalled:
            stalled.sendall(b"GET /small.bin HT")
            started = time.monotonic()
            assert stalled.recv(1) == b""  # the server closed it
            assert time.monotonic() - started < 1.0 + SLACK
            assert get(server.port, "/small.bin") == (200, SMALL)

    def test_default_timeout_is_60_s(self, start_server: StartServer, tmp_path: Path) -> None:
        """serve logs its timeout, 60 s unless --timeout says otherwise."""
        server = start_server(
            "-v", "serve", str(tmp_path), "--bind", "127.0.0.1", "--port", "{port}"
        )
        server.wait_for_log("timeout 60 s")


class TestProxyTimeout:
    def test_idle_connection_closed_frees_its_place(
        self, start_server: StartServer, echo: EchoServer
    ) -> None:
        """proxy --timeout 1 --max-connections 1: the idle one closes, the waiting one relays."""
        server = start_server(
            "proxy", "127.0.0.1:{port}", f"127.0.0.1:{echo.port}",
            "--timeout", "1", "--max-connections", "1",
        )  # fmt: skip
        with connect(server.port) as first, connect(server.port) as second:
            assert echoes(first, b"first" * 1000)
            started = time.monotonic()
            second.sendall(b"second")
            assert second.recv(6, socket.MSG_WAITALL) == b"second"
            waited = time.monotonic() - started
            assert 0.5 < waited < 1.0 + SLACK  # it waited for the first to time out
            assert first.recv(1) == b""  # closed by the idle timeout

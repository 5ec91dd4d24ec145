"""serve and proxy when descriptors run out, and their connection cap (issue 21).

Each server runs as a subprocess under a low ``ulimit -n`` (set in the child
with ``setrlimit``) and is sent more idle loopback connections than its
descriptors allow.  It must stay alive, pause accepting (one log line, no
busy loop) with the surplus left in the listen backlog, keep serving the
connections it has, and take the waiting ones once some close.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clikit import (
    TIMEOUT,
    EchoServer,
    Server,
    StartServer,
    connect,
    echoes,
    get_on,
    listen_queue,
    read_response,
    send_get,
    silent_for,
)
from clikit import echo as echo
from clikit import start_server as start_server
from timekit import assert_waited, busy
from zerocopy._cli import build_parser

NOFILE = 64  # the servers' ulimit -n
IDLE = 80  # idle connections opened: more than 64 descriptors can hold
PAUSED = "not accepting for now"
RESUMED = "accepting again"
#: CPU seconds a paused server may use in one second besides a tenth of what a
#: busy loop got meanwhile (a busy accept loop used about 0.5 here; a paused
#: server, 0.0 to the clock tick).
IDLE_CPU = 0.05

DATA = random.Random(21).randbytes((1 << 20) + 3)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A directory holding data.bin, 1 MiB + 3 random bytes."""
    (tmp_path / "data.bin").write_bytes(DATA)
    return tmp_path


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """*count* connections to *port*, opened in order, closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(connect(port))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_until_queued(port: int, count: int) -> None:
    """Wait (bounded) until exactly *count* connections wait in the listener's backlog."""
    deadline = time.monotonic() + TIMEOUT
    while (queued := listen_queue(port)) != count:
        assert time.monotonic() < deadline, f"{queued} queued, not {count}, after {TIMEOUT} s"
        time.sleep(0.05)


def assert_idle(server: Server) -> None:
    """The server uses (almost) no CPU for one second, against a busy loop over that second."""
    before = server.cpu_seconds()
    spun = busy(1.0)  # what a busy loop gets on this machine now, in place of a sleep
    used = server.cpu_seconds() - before
    assert_waited(used, spun, work=IDLE_CPU, what="the paused server (a busy loop?)")


def proxy_echoes(sock: socket.socket, seed: int) -> bool:
    return echoes(sock, random.Random(seed).randbytes(256 * 1024 + seed))


class TestProxyOutOfDescriptors:
    def test_pauses_relays_and_resumes(self, start_server: StartServer, echo: EchoServer) -> None:
        """With no cap, proxy past ulimit -n pauses (logged once, idle CPU), relays on, resumes."""
        server = start_server(
            "proxy", "127.0.0.1:{port}", f"127.0.0.1:{echo.port}", "--max-connections", "0",
            nofile=NOFILE,
        )  # fmt: skip
        with idle_connections(server.port, IDLE) as socks:
            server.wait_for_log(PAUSED)
            assert listen_queue(server.port) > 0  # waiting, not accepted and dropped
            assert_idle(server)
            assert all(proxy_echoes(sock, i) for i, sock in enumerate(socks[:3]))
            assert server.alive()
            assert server.count(PAUSED) == 1
            for sock in socks[:-5]:
                sock.close()
            assert proxy_echoes(socks[-1], 3)  # waited in the backlog, relayed now
            with connect(server.port) as new:
                assert proxy_echoes(new, 4)
            server.wait_for_log(RESUMED)
        assert server.alive()

    def test_default_cap_from_fd_limit(self, start_server: StartServer, echo: EchoServer) -> None:
        """Under ulimit -n 64, proxy holds (64 - 32) / 2.5 = 12 connections; the rest wait."""
        server = start_server("proxy", "127.0.0.1:{port}", f"127.0.0.1:{echo.port}", nofile=NOFILE)
        with idle_connections(server.port, IDLE) as socks:
            wait_until_queued(server.port, IDLE - 12)
            assert proxy_echoes(socks[0], 0)
            socks[12].sendall(b"waiting")
            assert silent_for(socks[12], 1.0)
            assert listen_queue(server.port) == IDLE - 12
            socks[0].close()
            assert socks[12].recv(7, socket.MSG_WAITALL) == b"waiting"
            assert server.alive()
            assert server.count(PAUSED) == 0

    def test_cap_option(self, start_server: StartServer, echo: EchoServer) -> None:
        """proxy --max-connections 2: a third client waits in the backlog, then is relayed."""
        server = start_server(
            "proxy", "127.0.0.1:{port}", f"127.0.0.1:{echo.port}", "--max-connections", "2"
        )
        with idle_connections(server.port, 3) as (a, b, c):
            assert proxy_echoes(a, 0)
            assert proxy_echoes(b, 1)
            c.sendall(b"third")
            assert silent_for(c, 1.0)
            assert listen_queue(server.port) == 1
            a.close()
            assert c.recv(5, socket.MSG_WAITALL) == b"third"
            assert proxy_echoes(b, 2)


class TestServeOutOfDescriptors:
    def test_pauses_serves_and_resumes(self, start_server: StartServer, served: Path) -> None:
        """With no cap, serve past ulimit -n pauses (logged once, idle CPU), serves on, resumes."""
        server = start_server(
            "serve", str(served), "--bind", "127.0.0.1", "--port", "{port}",
            "--protocol", "HTTP/1.1", "--max-connections", "0", nofile=NOFILE,
        )  # fmt: skip
        with idle_connections(server.port, IDLE) as socks:
            server.wait_for_log(PAUSED)
            assert listen_queue(server.port) > 0
            assert_idle(server)
            for sock in socks[:3]:  # keep-alive connections accepted before the pause
                assert get_on(sock, "/data.bin") == (200, DATA)
            assert server.alive()
            assert server.count(PAUSED) == 1
            for sock in socks[:-5]:
                sock.close()
            assert get_on(socks[-1], "/data.bin") == (200, DATA)  # waited, served now
            with connect(server.port) as new:
                assert get_on(new, "/data.bin") == (200, DATA)
            server.wait_for_log(RESUMED)
        assert server.alive()

    def test_default_cap_from_fd_limit(self, start_server: StartServer, served: Path) -> None:
        """Under ulimit -n 64, serve holds (64 - 32) / 2 = 16 connections, idle; the rest wait."""
        server = start_server(
            "serve", str(served), "--bind", "127.0.0.1", "--port", "{port}",
            "--protocol", "HTTP/1.1", nofile=NOFILE,
        )  # fmt: skip
        with idle_connections(server.port, IDLE) as socks:
            wait_until_queued(server.port, IDLE - 16)
            assert_idle(server)
            assert get_on(socks[0], "/data.bin") == (200, DATA)
            send_get(socks[16], "/data.bin")
            assert silent_for(socks[16], 1.0)
            socks[0].close()
            assert read_response(socks[16]) == (200, DATA)
            assert server.alive()

    def test_cap_option(self, start_server: StartServer, served: Path) -> None:
        """serve --max-connections 1: a second client waits in the backlog, then is served."""
        server = start_server(
            "serve", str(served), "--bind", "127.0.0.1", "--port", "{port}",
            "--protocol", "HTTP/1.1", "--max-connections", "1",
        )  # fmt: skip
        with idle_connections(server.port, 2) as (a, b):
            assert get_on(a, "/data.bin") == (200, DATA)
            send_get(b, "/data.bin")
            assert silent_for(b, 1.0)
            assert listen_queue(server.port) == 1
            a.close()
            assert read_response(b) == (200, DATA)


class TestOptions:
    @pytest.mark.parametrize("command", ["serve", "proxy"])
    def test_help_says_how_the_default_cap_is_derived(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """serve and proxy --help explain --max-connections' default from ulimit -n."""
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--max-connections N" in out
        assert "(ulimit -n - 32) /" in out

    @pytest.mark.parametrize(
        "args",
        [
            ["proxy", ":1", "127.0.0.1:2", "--max-connections", "-1"],
            ["serve", "--max-connections", "x"],
            ["serve", "--timeout", "nan"],
            ["serve", "--timeout", "-1"],
        ],
    )
    def test_bad_values_refused(self, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """A negative or non-numeric --max-connections or --timeout is refused with a message."""
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(args)
        assert exc.value.code == 2
        assert "not a" in capsys.readouterr().err

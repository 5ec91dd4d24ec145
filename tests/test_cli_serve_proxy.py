"""``python -m zerocopy serve`` and ``python -m zerocopy proxy``, run as subprocesses.

Each test starts the command on a free loopback port with
``ZEROCOPY_BACKEND`` set to the backend under test, polls until the port
answers (bounded), checks bytes end to end against what was sent, and stops
the process in ``finally``.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from clikit import TIMEOUT, EchoServer, RunCli, free_port, get, interrupt, round_trip
from clikit import echo as echo
from clikit import run_cli as run_cli
from zerocopy._cli.proxy import parse_address


def _threads_once_down_to(pid: int, count: int) -> list[int]:
    """The thread ids of *pid* but the main one, once it has no more than *count* threads."""
    deadline = time.monotonic() + TIMEOUT
    while len(tasks := [int(t) for t in os.listdir(f"/proc/{pid}/task")]) > count:
        assert time.monotonic() < deadline, f"still {len(tasks)} threads after {TIMEOUT} s"
        time.sleep(0.01)
    return [t for t in tasks if t != pid]


def _tgkill(pid: int, tid: int, signum: int) -> bool:
    """Send *signum* to one thread of another process; False if it has exited."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        tgkill = libc.tgkill
    except AttributeError:
        pytest.skip("this C library has no tgkill() (glibc before 2.30)")
    if tgkill(pid, tid, signum) == 0:
        return True
    if ctypes.get_errno() == errno.ESRCH:
        return False
    raise OSError(ctypes.get_errno(), "tgkill")


# --- serve ----------------------------------------------------------------------


class TestServe:
    def test_serves_file_byte_exact(self, run_cli: RunCli, tmp_path: Path) -> None:
        """serve DIR --bind --port serves a file whole and in a range, byte for byte."""
        data = random.Random(1).randbytes(3 * (1 << 20) + 5)
        (tmp_path / "data.bin").write_bytes(data)
        port = free_port()
        proc = run_cli(
            "serve", str(tmp_path), "--bind", "127.0.0.1", "--port", str(port), port=port
        )
        assert get(port, "/data.bin") == (200, data)
        assert get(port, "/data.bin", {"Range": "bytes=100-199"}) == (206, data[100:200])
        assert get(port, "/nope")[0] == 404
        code, out, err = interrupt(proc)
        assert code in (0, 130), err
        assert out.startswith(
            f"Serving HTTP on 127.0.0.1 port {port} (http://127.0.0.1:{port}/) ...\n"
        )
        assert '"GET /data.bin HTTP/1.1" 206' in err  # the stdlib's request log

    def test_directory_defaults_to_cwd(self, run_cli: RunCli, tmp_path: Path) -> None:
        """Without DIR, serve serves the current directory."""
        (tmp_path / "here.txt").write_bytes(b"here\n")
        port = free_port()
        run_cli("serve", "--bind", "127.0.0.1", "--port", str(port), port=port, cwd=tmp_path)
        assert get(port, "/here.txt") == (200, b"here\n")

    def test_ctrl_c_exits_cleanly(self, run_cli: RunCli, tmp_path: Path) -> None:
        """SIGINT ends serve with status 0 or 130 and the stdlib's goodbye, no traceback."""
        port = free_port()
        proc = run_cli(
            "serve", str(tmp_path), "--bind", "127.0.0.1", "--port", str(port), port=port
        )
        code, out, err = interrupt(proc)
        assert code in (0, 130)
        assert "Keyboard interrupt received, exiting." in out
        assert "Traceback" not in err

    def test_missing_directory_is_an_error(self, run_cli: RunCli, tmp_path: Path) -> None:
        """serve with a DIR that does not exist exits 2 with a message."""
        proc = run_cli("serve", str(tmp_path / "absent"), "--port", "0")
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 2
        assert b"not a directory" in err


# --- proxy ----------------------------------------------------------------------


class TestProxy:
    def test_forwards_byte_exact_both_ways(self, run_cli: RunCli, echo: EchoServer) -> None:
        """proxy LISTEN TARGET carries 8 MiB to an echo server and back, byte for byte."""
        port = free_port()
        proc = run_cli("proxy", f"127.0.0.1:{port}", f"127.0.0.1:{echo.port}", port=port)
        payload = random.Random(2).randbytes(8 * (1 << 20) + 1)
        assert round_trip(port, payload) == payload  # back, after the half-close went on
        assert payload in echo.received  # there
        code, out, err = interrupt(proc)
        assert code in (0, 130), err
        assert out.startswith(f"Forwarding 127.0.0.1 port {port} to 127.0.0.1:{echo.port} ...")
        assert "Traceback" not in err

    def test_concurrent_connections(self, run_cli: RunCli, echo: EchoServer) -> None:
        """20 connections at once through the proxy each get their own bytes back."""
        port = free_port()
        run_cli("-v", "proxy", f"127.0.0.1:{port}", f"127.0.0.1:{echo.port}", port=port)
        payloads = [random.Random(i).randbytes(200_000 + i) for i in range(20)]
        results: list[object] = [None] * len(payloads)

        def one(i: int) -> None:
            try:
                results[i] = round_trip(port, payloads[i]) == payloads[i]
            except Exception as exc:
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * TIMEOUT)
        assert results == [True] * len(payloads)

    def test_empty_stream_and_listen_on_all_interfaces(
        self, run_cli: RunCli, echo: EchoServer
    ) -> None:
        """LISTEN as :PORT listens on every interface; an empty stream comes back empty."""
        port = free_port()
        run_cli("proxy", f":{port}", f"127.0.0.1:{echo.port}", port=port)
        assert round_trip(port, b"") == b""
        assert round_trip(port, b"x") == b"x"

    def test_ctrl_c_taken_by_a_connection_thread(self, run_cli: RunCli, echo: EchoServer) -> None:
        """SIGINT delivered to a connection thread still stops the proxy.

        Python runs handlers in the main thread only; a main thread blocked in
        a bare accept() would sleep on until the next client.  A process's
        Ctrl-C goes to any thread that does not block it (this hung about once
        in 140 runs under load); here it is sent to the connection threads
        themselves, so that the main thread is certainly not interrupted.
        """
        port = free_port()
        proc = run_cli("proxy", f"127.0.0.1:{port}", f"127.0.0.1:{echo.port}", port=port)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"  # a connection thread is relaying this now
            # One signal, to this connection's thread alone: first let the
            # thread of _wait_for_port's probe connection end.  A second
            # SIGINT, to a thread still alive while the proxy exits, would
            # meet SIGINT's default action once finalization restored it
            # (exit -2, no traceback: seen once under CI's load).
            # Three threads: main, the connection's (waiting for its relay) and
            # the relay hub's (splicing); the signal goes to one of the two.
            threads = _threads_once_down_to(proc.pid, 3)
            assert len(threads) == 2
            assert _tgkill(proc.pid, max(threads), signal.SIGINT)
            code, out, err = interrupt(proc, send=False)
        assert code in (0, 130), err
        assert "Keyboard interrupt received, exiting." in out
        assert "Traceback" not in err

    def test_unreachable_target_closes_client(self, run_cli: RunCli) -> None:
        """When TARGET refuses, the client's connection is closed and the proxy carries on."""
        port, dead = free_port(), free_port()
        proc = run_cli("proxy", f"127.0.0.1:{port}", f"127.0.0.1:{dead}", port=port)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                try:
                    assert sock.recv(1) == b""
                except ConnectionResetError:
                    pass
        assert proc.poll() is None
        code, _, err = interrupt(proc)
        assert code in (0, 130)
        assert f"cannot connect to 127.0.0.1:{dead}" in err


class TestParseAddress:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("127.0.0.1:8080", ("127.0.0.1", 8080)),
            ("localhost:1", ("localhost", 1)),
            ("[::1]:8080", ("::1", 8080)),
            (":8080", ("", 8080)),
        ],
    )
    def test_valid(self, text: str, expected: tuple[str, int]) -> None:
        """HOST:PORT, [IPv6]:PORT and (for LISTEN) :PORT parse to (host, port)."""
        assert parse_address(text, default_host="") == expected

    @pytest.mark.parametrize("text", ["8080", "host:", "host:http", "host:70000", ":8080"])
    def test_invalid_target(self, text: str) -> None:
        """A TARGET without a host or a numeric port in range is refused."""
        with pytest.raises(argparse.ArgumentTypeError):
            parse_address(text)

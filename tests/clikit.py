"""Support for the ``python -m zerocopy serve/proxy`` tests: subprocesses, echo, HTTP on loopback.

Fixtures here are imported by name into each module that uses them.  Every
wait is bounded: by ``TIMEOUT`` on sockets and joins, by ``STARTUP`` for a
command to start listening.
"""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

TIMEOUT = 30.0
STARTUP = 20.0  # seconds a command may take to start listening


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited with {proc.returncode} before listening: {out!r} {err!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"port {port} did not answer within {STARTUP} s")
        time.sleep(0.05)


def _child_setup(nofile: int | None) -> Callable[[], None]:
    def setup() -> None:
        # A shell without job control starts background commands with SIGINT
        # ignored, and a child inherits that: its Python would then install no
        # KeyboardInterrupt handler and the Ctrl-C tests would wait forever.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    return setup


RunCli = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def run_cli(backend: ModuleType) -> Iterator[RunCli]:
    """Start ``python -m zerocopy ARGS...`` on the backend under test; stop it at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str, port: int | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ZEROCOPY_BACKEND": backend.NAME, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "zerocopy", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            preexec_fn=_child_setup(None),
        )
        procs.append(proc)
        if port is not None:
            wait_for_port(port, proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


class Server:
    """A running ``python -m zerocopy`` server whose stderr is read as it comes."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self._lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait until *text* appears in stderr; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self._lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"{text!r} not logged (exit {self.proc.poll()}): {self.log}")
                self._cond.wait(min(left, 0.2))

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in line for line in self._lines)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(backend: ModuleType) -> Iterator[StartServer]:
    """Start ``python -m zerocopy ARGS...`` (``{port}`` filled in), maybe under ``ulimit -n``."""
    servers: list[Server] = []

    def start(*args: str, nofile: int | None = None) -> Server:
        port = free_port()
        env = {**os.environ, "ZEROCOPY_BACKEND": backend.NAME, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "zerocopy", *(a.format(port=port) for a in args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_child_setup(nofile),
        )
        server = Server(proc, port)
        servers.append(server)
        wait_for_port(port, proc)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def listen_queue(port: int) -> int:
    """Connections waiting in the accept queue of the loopback listener on *port*.

    For a listening socket, ``/proc/net/tcp`` reports the accept queue's
    length as ``rx_queue``.
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return int(queues.split(":")[1], 16)
    raise AssertionError(f"no listener on port {port}")


def interrupt(proc: subprocess.Popen[bytes], *, send: bool = True) -> tuple[int, str, str]:
    if send:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out.decode(), err.decode()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def send_get(sock: socket.socket, path: str) -> None:
    """Send an HTTP/1.1 GET for *path* on an open connection."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


def get_on(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """GET *path* on an open HTTP/1.1 connection, leaving it open."""
    send_get(sock, path)
    return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one response to a GET from an open connection: its status and body."""
    resp = http.client.HTTPResponse(sock, method="GET")
    try:
        resp.begin()
        return resp.status, resp.read()
    finally:
        resp.close()


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


class EchoServer:
    """A threaded echo server on loopback that records what each connection sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.accepted = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)
            with self._lock:
                self.accepted += 1

    def _echo(self, conn: socket.socket) -> None:
        got = bytearray()
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                while chunk := conn.recv(1 << 16):
                    got += chunk
                    conn.sendall(chunk)
            except OSError:
                pass
            # Recorded before our EOF goes out, so a client that saw it can look.
            with self._lock:
                self.received.append(bytes(got))
            try:
                conn.shutdown(socket.SHUT_WR)  # after the client's EOF, ours
            except OSError:
                pass

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the other thread.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._accepting.join(TIMEOUT)
        for t in self._threads:
            t.join(TIMEOUT)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """An echo server on 127.0.0.1, closed at teardown."""
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def round_trip(port: int, payload: bytes) -> bytes:
    """Send *payload* through the proxy while reading the echo; half-close; return the echo."""
    with connect(port) as sock:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        sender.join(TIMEOUT)
        assert not errors, errors
    return b"".join(chunks)


def echoes(sock: socket.socket, payload: bytes) -> bool:
    """Whether *payload* sent on an open connection comes back whole; the connection stays open."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    got = bytearray()
    try:
        while len(got) < len(payload) and (chunk := sock.recv(1 << 20)):
            got += chunk
    finally:
        sender.join(TIMEOUT)
    assert not errors, errors
    return bytes(got) == payload


def silent_for(sock: socket.socket, seconds: float) -> bool:
    """Whether nothing (no byte, no EOF) arrives on *sock* for *seconds*."""
    old = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(old)
    return False

"""The processes a benchmark starts: its own peers (:class:`Peer`), servers (:class:`Server`).

**A peer** is a role of the benchmark script itself, in a child process, so
that its CPU is never the measured side's::

    with Peer(__file__, "sink", "verify") as sink:    # python SCRIPT --role sink verify
        sink.port                                      # from its first line
        answer = sink.ask({"op": "count"})             # one JSON line each way

The script's ``--role`` branch answers with :func:`serve_peer` (requests in,
answers out, one JSON object per line) or, for a role that serves sockets
rather than requests (a sink, a proxy), with :func:`announce`.  Either first
prints one JSON line (``{}``, or e.g. ``{"ports": [...]}``), which
:class:`Peer` waits for and keeps as ``hello``.  A peer exits when its stdin
closes (:meth:`Peer.stop`), or, with ``PR_SET_PDEATHSIG``, when the benchmark
dies; :meth:`Peer.stop` always reaps it, and kills it if it lingers.

**A server** is someone else's program (nginx, haproxy, uvicorn, granian,
``python -m zerocopy serve``) listening on a port: :class:`Server` starts it,
waits until the port answers, and stops it, keeping its stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .measure import process_tree_cpu
from .toolkit import CpuTimes

__all__ = [
    "STARTUP",
    "Peer",
    "Server",
    "announce",
    "checkout_env",
    "die_with_parent",
    "free_port",
    "nginx_binary",
    "nginx_server",
    "serve_peer",
]

STARTUP = 20.0  # seconds a server may take to answer


def die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the benchmark dies (PR_SET_PDEATHSIG).

    A benchmark killed outright (a test's timeout, SIGKILL) runs no
    ``finally``; its peers and servers must not outlive it on a shared machine.
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _reap(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Wait for *proc*; kill it if it has not exited within *timeout* seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- peers: a role of the script, asked over JSON lines ---------------------------------


class Peer:
    """A role of a benchmark script in its own process, asked over JSON lines.

    ``python SCRIPT --role ROLE...`` with *env* (default: this process's),
    behind *prefix* if given (``["ip", "netns", "exec", NS]``: in a network
    namespace; it must exec the command, not fork it).  ``send`` then
    ``receive`` keeps several peers working at once; ``ask`` does both.  A
    failed request raises :class:`RuntimeError` with the peer's error.
    """

    def __init__(
        self,
        script: str,
        *role: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, os.path.abspath(script), "--role", *role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=die_with_parent,
        )
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"peer {' '.join(role)} did not start")
            #: What the peer said when ready (:func:`serve_peer`'s or :func:`announce`'s keywords).
            self.hello: dict[str, Any] = json.loads(line)
        except BaseException:
            self.stop()
            raise
        #: The ports it listens on, in the order it gave them (``hello["ports"]``).
        self.ports: list[int] = list(self.hello.get("ports", []))
        self.port = self.ports[0] if self.ports else 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        """The answer to the oldest request not yet received."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer {' '.join(self.role)} (pid {self.pid}) exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"peer {' '.join(self.role)}: {answer['error']}")
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive()

    def cpu(self) -> CpuTimes:
        """The peer's CPU so far, with any workers it forked (``process_tree_cpu``)."""
        return process_tree_cpu(self.pid)

    def stop(self) -> None:
        """Close its stdin (its signal to exit) and reap it; kill it if it lingers."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # EPIPE: it already exited
                    pass
        _reap(self.proc)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hello(hello: dict[str, Any]) -> None:
    print(json.dumps(hello), flush=True)


def serve_peer(handle: Callable[[dict[str, Any]], dict[str, Any]], **hello: Any) -> None:
    """A :class:`Peer`'s side: say *hello*, answer each request line, return when stdin closes.

    An exception becomes ``{"error": ...}``, raised again by the benchmark.
    """
    _hello(hello)
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - handed to the benchmark, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


def announce(**hello: Any) -> None:
    """A :class:`Peer`'s side for a role that serves sockets: say *hello*, exit when stdin closes.

    The caller then serves for ever in its own threads; a daemon thread
    ends the whole process (``os._exit``) once the benchmark closes its stdin.
    """

    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    _hello(hello)


def checkout_env(checkout: str, option: str = "--before") -> tuple[dict[str, str], str]:
    """The environment that makes a :class:`Peer` import zerocopy from *checkout*, and the file.

    *checkout* is another tree of this repository with its package built in
    place (``src/``); SystemExit, naming the *option*, if zerocopy does not
    import from there.  The kit runs on that package's ``zerocopy._bench``.
    """
    src = os.path.join(os.path.abspath(checkout), "src")
    path = os.pathsep.join(x for x in (src, os.environ.get("PYTHONPATH", "")) if x)
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run(
        [sys.executable, "-c", "import zerocopy; print(zerocopy.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = out.stdout.strip()
    if out.returncode or not where.startswith(src + os.sep):
        raise SystemExit(
            f"{option} {checkout}: zerocopy not imported from {src}: {(out.stderr or where)[-500:]}"
        )
    return env, where


# --- servers: someone else's program on a port -------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process on 127.0.0.1:port, started in __enter__, stopped in __exit__.

    (Or :meth:`start` and :meth:`stop` it.)  Its stderr (the request log,
    warnings, tracebacks) is kept in ``errors``
    once it has stopped.  *prepare*, if given, runs first in ``__enter__``
    (it writes a configuration, say); *cleanup* runs once it has stopped, or
    if it never started.  *ports* are all the ports it listens on, *port*
    first (the one waited for).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        cleanup: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
        prepare: Callable[[], None] | None = None,
        ports: list[int] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.ports = ports or [port]
        self.prepare = prepare
        self.cleanup = cleanup
        self.env = env
        self.errors = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def __enter__(self) -> Server:
        return self.start()

    def start(self) -> Server:
        """Start it and wait until its port answers; :meth:`stop` it in any case."""
        try:
            if self.prepare:
                self.prepare()
            # The request log goes to a file: a pipe nobody reads would fill up.
            self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                env=self.env,
                preexec_fn=die_with_parent,
            )
        except BaseException:
            self.stop()
            raise
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.stop()
                raise RuntimeError(f"{self.name} did not start: {err[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> str:
        """Stop it (SIGTERM, then SIGKILL), clean up, and return what it logged."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            _reap(proc, timeout=20)
        cleanup, self.cleanup = self.cleanup, None
        if cleanup:
            cleanup()
        if self.log is not None and not self.log.closed:
            self.log.seek(0)
            self.errors = self.log.read().decode(errors="replace")
            self.log.close()
        return self.errors

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> CpuTimes:
        """The server's CPU so far: ``process_tree_cpu`` of its process."""
        return process_tree_cpu(self.pid)


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a user's PATH); None if neither."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


_NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
{temp}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def nginx_server(binary: str, directory: str, port: int) -> Server:
    """nginx serving *directory* on 127.0.0.1:*port*: one worker, ``sendfile on``, no access log.

    The reference a C server reaches.  Its configuration, pid, logs and
    temporary directories live in a temporary prefix, made when it starts
    and removed when it stops or fails to start; ``sendfile_max_chunk`` is
    left at its default (2m in nginx 1.22).  Run as root, its worker reads
    as root (``user root``), so the benchmarks' 0700 temporary directories
    are readable to it.
    """
    server = Server("nginx", [], port)

    def prepare() -> None:
        prefix = tempfile.mkdtemp(prefix="zerocopy-bench-nginx-")
        server.cleanup = lambda: shutil.rmtree(prefix, ignore_errors=True)
        conf = os.path.join(prefix, "nginx.conf")
        temp = "\n".join(
            f"    {kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;" if os.geteuid() == 0 else ""
        text = _NGINX_CONF.format(user=user, prefix=prefix, temp=temp, port=port, root=directory)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(text)
        server.argv = [binary, "-p", prefix + "/", "-c", conf, "-e", f"{prefix}/error.log"]

    server.prepare = prepare
    return server

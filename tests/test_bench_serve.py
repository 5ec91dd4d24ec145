"""benchmarks/bench_serve.py: a --quick run of every variant that can run here, its JSON,
the load client and the log reading.

nginx and granian are optional: where they are missing, their variant is left
out with a "skipped: ..." line and the rest still run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_serve.py"
FRAMEWORKS = ("uvicorn", "httptools", "starlette", "aiohttp", "uvloop")
ORDER = [
    "nginx",
    "granian",
    "uvicorn",
    "uvicorn+zerocopy",
    "uvicorn (stat on loop)",
    "uvicorn+zerocopy (stat on loop)",
    "uvicorn+zerocopy (zerocopy.starlette)",
    "aiohttp asyncio",
    "aiohttp asyncio+zerocopy",
    "aiohttp uvloop",
    "aiohttp uvloop+zerocopy",
    "aiohttp zerocopy-uvloop",
    "zerocopy serve",
]
ZEROCOPY = {
    "uvicorn+zerocopy": "zerocopy.uvicorn:HttpToolsProtocol",
    "uvicorn+zerocopy (stat on loop)": "zerocopy.uvicorn:HttpToolsProtocol",
    "uvicorn+zerocopy (zerocopy.starlette)": "zerocopy.uvicorn:HttpToolsProtocol",
    "aiohttp asyncio+zerocopy": "zerocopy.aiohttp:FileResponse",
    "aiohttp uvloop+zerocopy": "zerocopy.aiohttp:FileResponse",
}
STOCK = {
    "uvicorn+zerocopy": "uvicorn",
    "uvicorn+zerocopy (stat on loop)": "uvicorn (stat on loop)",
    "uvicorn+zerocopy (zerocopy.starlette)": "uvicorn",
    "aiohttp asyncio+zerocopy": "aiohttp asyncio",
    "aiohttp uvloop+zerocopy": "aiohttp uvloop",
}

_missing = [m for m in FRAMEWORKS if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"{_missing} not installed: pip install 'zerocopy-io[bench]'"
)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


def _importable(spec: str) -> bool:
    """Whether *spec* ("module:name") imports, asked of a fresh interpreter (see
    test_bench_frameworks.py: not in this process)."""
    module, _, name = spec.partition(":")
    code = (
        f"import importlib\ntry:\n    getattr(importlib.import_module({module!r}), {name!r})\n"
        "except (ImportError, AttributeError, RuntimeError):\n    raise SystemExit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode == 0


def _nginx() -> bool:
    return shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The benchmark script as a module (it imports no framework)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return importlib.import_module("bench_serve")
    finally:
        sys.path.remove(str(SCRIPT.parent))


class TestQuickRun:
    """--quick: every variant that can run here runs both modes, every body checked."""

    def test_every_variant_runs_or_says_why(self, tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        proc = _run("--quick", "--json", str(out), "--dir", str(tmp_path))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
        report = json.loads(out.read_text(encoding="utf-8"))
        runs = {
            "nginx": _nginx(),
            "granian": importlib.util.find_spec("granian") is not None,
            **{name: _importable(spec) for name, spec in ZEROCOPY.items()},
        }
        expected = [n for n in ORDER if runs.get(n, True)]
        for name, ran in runs.items():
            spec = ZEROCOPY.get(name)
            line = (
                f"skipped: {spec.partition(':')[0]} not available ("
                if spec
                else f"skipped: {name}: "
            )
            assert (line in proc.stdout) == (not ran), proc.stdout
        assert list(report["load"]) == ["4", "32"]
        for section in report["load"].values():
            assert list(section) == expected
            for data in section.values():
                (sample,) = data["samples"]  # 1 round
                assert sample["nbytes"] > 0
                assert sample["info"]["probe_requests"] > 0
                assert sample["info"]["bad_bodies"] == 0
        assert list(report["keepalive"]) == expected
        for data in report["keepalive"].values():
            assert data["samples"][0]["info"]["requests"] > 0
            before, after = data["fds"]
            assert after <= before
        assert report["problems"] == []
        assert report["machine"]["server_tracebacks"] == {}
        loops = report["machine"]["server_loops"]
        assert {n for n, loop in loops.items() if loop and "uvloop." in loop} == {
            n for n in expected if n == "granian" or "uvloop" in n
        }
        # Per concurrency: p99 and throughput against nginx, p99 against the stock path.
        want = 0
        for name in ZEROCOPY:
            if name in expected:
                want += 2 * ("nginx" in expected) + (STOCK[name] in expected)
        assert len(report["targets"]) == 2 * want
        assert {t["verdict"] for t in report["targets"]} <= {"PASS", "MISS"}
        assert list(tmp_path.iterdir()) == [out]  # the served files deleted

    def test_nginx_left_out_with_a_reason(self, tmp_path: Path) -> None:
        """No nginx (--nginx none, as where it is not installed): a skip line, the rest run."""
        out = tmp_path / "r.json"
        proc = _run(
            *("--quick", "--nginx", "none", "--mode", "keepalive"),
            *("--only", "nginx,aiohttp asyncio", "--json", str(out)),
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "skipped: nginx: " in proc.stdout
        report = json.loads(out.read_text(encoding="utf-8"))
        assert list(report["keepalive"]) == ["aiohttp asyncio"]
        assert report["load"] == {}
        assert report["targets"] == []


class TestOptions:
    """Bad options exit 2 with the reason, before any server starts."""

    @pytest.mark.parametrize(
        ("args", "reason"),
        [
            (["--repeat", "0"], "--repeat must be > 0"),
            (["--duration", "0"], "must be > 0"),
            (["--concurrency", "4,-1"], "need integers >= 0"),
            (["--clients", "0"], "--clients must be > 0"),
            (["--only", "haproxy"], "unknown variant(s) ['haproxy']"),
        ],
    )
    def test_refused(self, args: list[str], reason: str) -> None:
        proc = _run(*args)
        assert proc.returncode == 2
        assert reason in proc.stderr


class TestLogs:
    """A traceback of a client gone is a note; any other is a failure."""

    def test_tracebacks(self, bench: ModuleType) -> None:
        gone = "Traceback (most recent call last):\n  File 'x', line 1\n    f()\n"
        log = (
            "INFO: started\n"
            + gone
            + "ConnectionResetError: [Errno 104] Connection reset by peer\n"
            + gone
            + "BrokenPipeError: [Errno 32] Broken pipe\n"
            + gone
            + "KeyError: 'name'\n"
        )
        n, others = bench._tracebacks(log)
        assert n == 2
        assert len(others) == 1
        assert "KeyError" in others[0]


class TestLoadClient:
    """The load client counts whole answers and their bytes, and checks each body."""

    BODY = os.urandom(3000)

    @pytest.fixture
    def server(self) -> Iterator[int]:
        """A keep-alive server answering every GET with BODY, a thread per connection."""
        ls = socket.create_server(("127.0.0.1", 0))
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + self.BODY
        threads = []

        def serve(conn: socket.socket) -> None:
            with conn:
                data = b""
                try:
                    while chunk := conn.recv(4096):
                        data += chunk
                        while b"\r\n\r\n" in data:
                            _, _, data = data.partition(b"\r\n\r\n")
                            conn.sendall(answer)
                except OSError:
                    pass  # the client closes at its deadline

        def accept() -> None:
            while True:
                try:
                    conn, _ = ls.accept()
                except OSError:
                    return
                t = threading.Thread(target=serve, args=(conn,), daemon=True)
                t.start()
                threads.append(t)

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        yield ls.getsockname()[1]
        ls.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() alone does not)
        ls.close()
        acceptor.join(timeout=10)
        for t in threads:
            t.join(timeout=10)

    @pytest.mark.parametrize("right", [True, False])
    def test_counts_and_checks(self, bench: ModuleType, server: int, right: bool) -> None:
        sha = hashlib.sha256(self.BODY if right else b"other").hexdigest()
        client = bench.LoadClient(
            port=server,
            path="/x",
            conns=3,
            size=3000,
            sha256=sha,
            request_timeout=2.0,
            idle_timeout=5.0,
        )
        r = client.run(0.2)
        assert r["requests"] > 3
        assert r["bytes"] >= 3000 * r["requests"]
        assert (r["errors"], r["timeouts"]) == (0, 0)
        assert r["bad_bodies"] == (0 if right else r["requests"])

    def test_wrong_length_is_an_error(self, bench: ModuleType, server: int) -> None:
        client = bench.LoadClient(
            port=server,
            path="/x",
            conns=1,
            size=4096,
            sha256=None,
            request_timeout=None,
            idle_timeout=5.0,
        )
        r = client.run(0.1)
        assert r["requests"] == 0
        assert r["errors"] >= 1
        assert "Content-Length 3000" in r["first_errors"][0]

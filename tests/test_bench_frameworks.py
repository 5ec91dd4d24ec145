"""benchmarks/bench_frameworks.py: a --quick run of each variant, its JSON, client and options."""

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
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_frameworks.py"
FRAMEWORKS = ("uvicorn", "httptools", "starlette", "aiohttp", "uvloop")
#: Every variant, in the order each round runs them.
ORDER = [
    "uvicorn",
    "uvicorn+zerocopy",
    "aiohttp asyncio",
    "aiohttp uvloop",
    "aiohttp uvloop+zerocopy",
    "aiohttp zerocopy-uvloop",
    "nginx",
]
#: The zerocopy variants, and the module each needs.
ZEROCOPY = {
    "uvicorn+zerocopy": "zerocopy.uvicorn:HttpToolsProtocol",
    "aiohttp uvloop+zerocopy": "zerocopy.aiohttp:FileResponse",
    "aiohttp zerocopy-uvloop": "zerocopy.loops:new_uvloop",
}
QUICK_BYTES = 4 * 1024 * 1024 * 3  # --quick: a 4 MiB file, 3 requests per run

_missing = [m for m in FRAMEWORKS if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"{_missing} not installed: pip install 'zerocopy-io[bench]'"
)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def _nginx() -> bool:
    """Whether the script finds nginx by default (on PATH, or Debian's /usr/sbin/nginx)."""
    return shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)


def _importable(spec: str) -> bool:
    """Whether *spec* ("module:name") imports, asked of a fresh interpreter.

    Not in this process: importing an integration here would import its
    framework into the test session, where another test may check that
    ``import zerocopy`` does not.
    """
    module, _, name = spec.partition(":")
    code = (
        f"import importlib\ntry:\n    getattr(importlib.import_module({module!r}), {name!r})\n"
        "except (ImportError, AttributeError, RuntimeError):\n    raise SystemExit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode == 0


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The benchmark script as a module (for its client; it imports no framework)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return importlib.import_module("bench_frameworks")
    finally:
        sys.path.remove(str(SCRIPT.parent))


class TestQuickRun:
    """--quick serves and checks every body of every variant that can run here."""

    def test_every_variant_runs_or_says_why(self, backend: ModuleType, tmp_path: Path) -> None:
        """Stock variants run; a zerocopy one runs iff its module imports, nginx iff it is
        installed; else a skip line."""
        out = tmp_path / "r.json"
        env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
        proc = _run("--quick", "--json", str(out), "--dir", str(tmp_path), env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert "Traceback" not in proc.stderr
        report = json.loads(out.read_text(encoding="utf-8"))
        runs = {name for name in ZEROCOPY if _importable(ZEROCOPY[name])}
        nginx = _nginx()
        if nginx:
            runs.add("nginx")
        ran = [n for n in ORDER if n in runs or (n not in ZEROCOPY and n != "nginx")]
        assert list(report["results"]) == ran
        for name, spec in ZEROCOPY.items():
            line = f"skipped: {spec.partition(':')[0]} not available ("
            assert (line in proc.stdout) == (name not in runs), proc.stdout
        assert ("skipped: nginx: " in proc.stdout) == (not nginx), proc.stdout
        assert (report["machine"]["nginx"] or "").endswith(")") == nginx
        for data in report["results"].values():
            assert [s["nbytes"] for s in data["samples"]] == [QUICK_BYTES] * 2
            both = [s["info"]["server_client_cpu_s_per_gib"] for s in data["samples"]]
            client = [s["info"]["client_cpu_s_per_gib"] for s in data["samples"]]
            assert all(b >= c > 0 for b, c in zip(both, client, strict=True))
        # The table's server+client column, one row per variant that ran.
        assert "server+client CPU s/GiB" in proc.stdout
        assert report["machine"]["backend"] == backend.NAME
        assert report["machine"]["server_errors"] == {}
        assert report["machine"]["frameworks"] == {m: version(m) for m in FRAMEWORKS}
        assert {"own_cpu_s", "other_cpu_s"} <= set(report["machine"]["load_during_run"])
        loops = report["machine"]["server_loops"]
        assert list(loops) == ran
        assert loops.pop("nginx", None) is None  # no event loop: no /loop route
        assert {n: "uvloop." in loops[n] for n in loops} == {n: "uvloop" in n for n in loops}
        # Two targets (throughput, CPU) per zerocopy variant that ran, none otherwise;
        # two more (issue 22) for uvicorn+zerocopy against nginx.
        zc = runs & set(ZEROCOPY)
        both = {"uvicorn+zerocopy", "nginx"} <= runs
        targets = [t["target"] for t in report["targets"]]
        assert sorted(n for t in targets for n in ZEROCOPY if t.startswith(n + " ")) == sorted(
            [*zc, *zc] + ["uvicorn+zerocopy"] * (2 * both)
        )
        assert len(targets) == 2 * len(zc) + 2 * both
        issue22 = [t for t in report["targets"] if t["target"].endswith("x nginx")]
        assert [t["target"] for t in issue22] == [
            "uvicorn+zerocopy throughput >= 0.95x nginx",
            "uvicorn+zerocopy server+client CPU <= 1.1x nginx",
        ][: 2 * both]
        assert {t["verdict"].partition(" ")[0] for t in issue22} <= {"PASS", "MISS"}
        for t in issue22:
            assert f"{t['verdict']:<5}  {t['target']}: " in proc.stdout
        assert list(tmp_path.iterdir()) == [out]  # the served file deleted

    def test_nginx_left_out_with_a_reason(self, tmp_path: Path) -> None:
        """No nginx (--nginx none, as where it is not installed): a skip line, the rest run."""
        out = tmp_path / "r.json"
        proc = _run(
            *("--quick", "--nginx", "none", "--only", "nginx,aiohttp asyncio"),
            *("--json", str(out)),
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "skipped: nginx: no nginx binary" in proc.stdout
        report = json.loads(out.read_text(encoding="utf-8"))
        assert list(report["results"]) == ["aiohttp asyncio"]
        assert report["machine"]["nginx"] is None
        assert report["machine"]["skipped"] == [
            "skipped: nginx: no nginx binary (apt-get install nginx-light) or --nginx none"
        ]
        assert report["targets"] == []

    def test_only(self, tmp_path: Path) -> None:
        """--only runs the named variants alone; the ratios fall back to the first."""
        out = tmp_path / "r.json"
        proc = _run("--quick", "--only", "aiohttp asyncio", "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-4000:]
        report = json.loads(out.read_text(encoding="utf-8"))
        assert list(report["results"]) == ["aiohttp asyncio"]
        assert report["baseline"] == "aiohttp asyncio"
        assert report["targets"] == []


class TestImport:
    """The script's module is light: the frameworks load only in the server processes."""

    def test_no_framework_on_import(self) -> None:
        """Importing bench_frameworks (as uvicorn's --factory does) imports no framework."""
        code = (
            "import sys\n"
            f"sys.path.insert(0, {str(SCRIPT.parent)!r})\n"
            "import bench_frameworks\n"
            f"print(sorted({set(FRAMEWORKS)!r} & set(sys.modules)))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]"


class TestOptions:
    """Bad options exit 2 with the reason, before any server starts."""

    @pytest.mark.parametrize(
        ("args", "reason"),
        [
            (["--requests", "0"], "--requests must be > 0"),
            (["--repeat", "0"], "--repeat must be > 0"),
            (["--size", "0"], "--size"),
            (["--only", "granian"], "unknown variant(s) ['granian']"),
        ],
    )
    def test_refused(self, args: list[str], reason: str) -> None:
        """Each bad option is refused by name."""
        proc = _run(*args)
        assert proc.returncode == 2
        assert reason in proc.stderr


# --- the client, against a loopback server that answers what it is told -----------


class TestClient:
    """The benchmark's client reads exactly Content-Length bytes and refuses anything else.

    ``no_leaks`` is requested before ``server``, so it checks after the
    server has closed: no socket or server thread outlives a test.
    """

    @pytest.fixture
    def server(self) -> Iterator[tuple[int, list[bytes], threading.Thread]]:
        """A loopback server answering each request with the next canned reply, then closing."""
        replies: list[bytes] = []
        ls = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            conn, _ = ls.accept()
            with conn:
                for reply in replies:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    conn.sendall(reply)

        t = threading.Thread(target=serve, daemon=True)
        yield ls.getsockname()[1], replies, t
        ls.close()
        t.join(timeout=10)
        assert not t.is_alive()

    def test_keep_alive_bodies(self, bench: ModuleType, no_leaks: None, server: tuple) -> None:
        """Two answers on one connection, bodies longer than the buffer: lengths, sha256 match."""
        port, replies, t = server
        body1, body2 = os.urandom(23), os.urandom(7)
        replies += [
            b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\n" + body1,
            b"HTTP/1.1 200 OK\r\ncontent-length:7\r\nX: y\r\n\r\n" + body2,
        ]
        t.start()
        client = bench.Client(port, memoryview(bytearray(5)))
        try:
            d1, d2 = hashlib.sha256(), hashlib.sha256()
            assert client.get("/a", d1) == 23
            assert client.get("/b", d2) == 7
        finally:
            client.close()
        assert (d1.digest(), d2.digest()) == (
            hashlib.sha256(body1).digest(),
            hashlib.sha256(body2).digest(),
        )

    @pytest.mark.parametrize(
        ("reply", "error", "text"),
        [
            (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", RuntimeError, "status 404"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", RuntimeError, "no Content"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", ConnectionError, "3 of 9"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabc", RuntimeError, "2 bytes beyond"),
            (b"HTTP/1.1 200 OK\r\nContent-Le", ConnectionError, "in the headers"),
            (b"SSH-2.0-x\r\n\r\n", RuntimeError, "not an HTTP/1.x answer"),
        ],
    )
    def test_refuses(
        self,
        bench: ModuleType,
        no_leaks: None,
        server: tuple,
        reply: bytes,
        error: type,
        text: str,
    ) -> None:
        """A wrong status, no length, a short or long body, a cut head or not HTTP: an error."""
        port, replies, t = server
        replies.append(reply)
        t.start()
        client = bench.Client(port, memoryview(bytearray(64)))
        try:
            with pytest.raises(error, match=text):
                client.get("/", None)
        finally:
            client.close()

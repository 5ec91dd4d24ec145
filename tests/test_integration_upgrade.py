"""Integrations on framework releases they were not tested with: the server always starts.

Each test starts a real server in a fresh interpreter, whose first lines
make the installed framework look like another release: a newer or older
``__version__``, and for the fallback cases a hook zerocopy needs deleted or
reshaped (in a way the framework's own code survives, as a real release
would).  Then uvicorn (``--http zerocopy.uvicorn:HttpToolsProtocol`` or
``:H11Protocol``, through its command line) or an aiohttp app serving
:class:`zerocopy.aiohttp.FileResponse` listens on 127.0.0.1 (an ephemeral
port), serves a file, and the test compares the body with the file's bytes
and reads the server's stderr for the warning, or its absence.  Whether
zero-copy ran is the count of bytes the server's zerocopy backend moved by
``sendfile``, which the app reports.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import uvicorn

TIMEOUT = 30.0
SIZE = 3 * (1 << 20) + 17  # several sendfile calls' worth, and odd

#: Counts what the server's zerocopy backend moved by sendfile (capability
#: code looks the backend up at call time), for the /moved route.
COUNTING = """
from zerocopy import _backend

MOVED = []
_backend_module = _backend.current()
_real_sendfile = _backend_module.sendfile


def _counting(*args, **kwargs):
    n = _real_sendfile(*args, **kwargs)
    MOVED.append(n)
    return n


_backend_module.sendfile = _counting
"""

UVICORN_APP = (
    COUNTING
    + """
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route


async def file(request):
    return FileResponse({path!r})


async def moved(request):
    extensions = sorted(request.scope.get("extensions", {{}}))
    return JSONResponse({{"moved": sum(MOVED), "extensions": extensions}})


app = Starlette(routes=[Route("/file", file), Route("/moved", moved)])
"""
)

AIOHTTP_SERVER = (
    COUNTING
    + """
import socket

from aiohttp import web

import zerocopy.aiohttp


async def file(request):
    return zerocopy.aiohttp.FileResponse({path!r})


async def moved(request):
    return web.json_response({{"moved": sum(MOVED), "extensions": []}})


app = web.Application()
app.router.add_get("/file", file)
app.router.add_get("/moved", moved)
web.run_app(app, sock=socket.socket(fileno={fd}), print=None, access_log=None)
"""
)

#: What the fresh interpreter runs before the framework is used.
UVICORN_PREAMBLE = "import sys, uvicorn\n{patch}\n"
UVICORN_MAIN = "sys.argv = ['uvicorn', *{args!r}]\nuvicorn.main()\n"


@dataclass
class Served:
    """What one server run gave: the file's body, what /moved said, the server's stderr."""

    body: bytes
    moved: int
    extensions: list[str]
    stderr: str


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """The served file and its exact bytes."""
    path = tmp_path_factory.mktemp("www") / "odd.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, data


def _get(port: int, path: str) -> bytes:
    # The listener is bound and listening before the server starts, so the
    # connection waits in its backlog until the server accepts it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:200]
        return body
    finally:
        conn.close()


def serve(code: str, listener: socket.socket, cwd: Path) -> Served:
    """Run *code* in a fresh interpreter serving on *listener*; GET /file and /moved; stop it."""
    port = listener.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        pass_fds=[listener.fileno()],
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    listener.close()
    try:
        body = _get(port, "/file")
        report = json.loads(_get(port, "/moved"))
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=TIMEOUT)
    return Served(body, report["moved"], report["extensions"], stderr.decode())


def run_uvicorn(tmp_path: Path, file: Path, protocol: str, patch: str) -> Served:
    """``uvicorn --http zerocopy.uvicorn:PROTOCOL app:app`` after *patch* ran in its interpreter."""
    (tmp_path / "app.py").write_text(UVICORN_APP.format(path=str(file)))
    listener = socket.create_server(("127.0.0.1", 0))
    args = ["--http", f"zerocopy.uvicorn:{protocol}", "--fd", str(listener.fileno()),
            "--log-level", "warning", "--lifespan", "off", "app:app"]  # fmt: skip
    code = UVICORN_PREAMBLE.format(patch=patch) + UVICORN_MAIN.format(args=args)
    return serve(code, listener, tmp_path)


def run_aiohttp(tmp_path: Path, file: Path, patch: str) -> Served:
    """An aiohttp app serving zerocopy.aiohttp.FileResponse, after *patch* ran in its process."""
    listener = socket.create_server(("127.0.0.1", 0))
    code = "import aiohttp\n" + patch + "\n"
    code += AIOHTTP_SERVER.format(path=str(file), fd=listener.fileno())
    return serve(code, listener, tmp_path)


def no_warning(served: Served) -> None:
    assert "Warning" not in served.stderr, served.stderr
    assert "zerocopy" not in served.stderr, served.stderr


def no_traceback(served: Served) -> None:
    assert "Traceback" not in served.stderr, served.stderr


PATHSEND = "http.response.pathsend"
HTTPTOOLS_TESTED = "(tested: uvicorn 0.45 to 0.55)"

#: Per protocol: a hook deleted or reshaped the way a release could, such that
#: uvicorn's own protocol still serves; and the name the warning gives it.
UVICORN_HOOK_GONE = {
    # An on_headers_complete that no longer reads self.app itself (its wrapped
    # original still does): uvicorn works, zerocopy cannot know its wrapped
    # app is the one each request runs.
    "HttpToolsProtocol": (
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as P\n"
        "complete = P.on_headers_complete\n"
        "P.on_headers_complete = lambda self: complete(self)\n",
        "HttpToolsProtocol.on_headers_complete(self) reading self.app",
    ),
    # A run_asgi that no longer hands the app self.send itself (the wrapped
    # original still does): uvicorn works, zerocopy cannot know send's cycle.
    "H11Protocol": (
        "from uvicorn.protocols.http.h11_impl import RequestResponseCycle as C\n"
        "run = C.run_asgi\n"
        "C.run_asgi = lambda self, app: run(self, app)\n",
        "RequestResponseCycle.run_asgi(self, app) passing self.send",
    ),
}


@pytest.mark.parametrize("protocol", ["HttpToolsProtocol", "H11Protocol"])
class TestUvicorn:
    def test_tested_version_no_warning(
        self, tmp_path: Path, payload: tuple[Path, bytes], protocol: str
    ) -> None:
        """The installed (tested) uvicorn: no warning, the body by sendfile, exact."""
        file, data = payload
        served = run_uvicorn(tmp_path, file, protocol, "")
        assert served.body == data
        assert PATHSEND in served.extensions
        assert served.moved == SIZE
        no_warning(served)

    @pytest.mark.parametrize("version", ["0.99.0", "0.44.0"])
    def test_untested_version_runs(
        self, tmp_path: Path, payload: tuple[Path, bytes], protocol: str, version: str
    ) -> None:
        """A newer or older uvicorn with every hook: it starts, warns it is untested, sendfile."""
        file, data = payload
        served = run_uvicorn(tmp_path, file, protocol, f"uvicorn.__version__ = {version!r}")
        assert served.body == data
        assert PATHSEND in served.extensions
        assert served.moved == SIZE
        assert "UntestedVersionWarning" in served.stderr
        assert f"zerocopy.uvicorn is untested with uvicorn {version}" in served.stderr
        assert HTTPTOOLS_TESTED in served.stderr
        assert served.stderr.count("UntestedVersionWarning") == 1  # once, for both classes
        assert "IntegrationFallbackWarning" not in served.stderr
        no_traceback(served)

    def test_hook_gone_falls_back_to_stock(
        self, tmp_path: Path, payload: tuple[Path, bytes], protocol: str
    ) -> None:
        """A newer uvicorn without a hook: it starts as uvicorn's own, says why, body exact."""
        file, data = payload
        patch, hook = UVICORN_HOOK_GONE[protocol]
        served = run_uvicorn(tmp_path, file, protocol, f"uvicorn.__version__ = '0.99.0'\n{patch}")
        assert served.body == data
        assert PATHSEND not in served.extensions  # uvicorn's own protocol offers none
        assert served.moved == 0
        assert "IntegrationFallbackWarning" in served.stderr
        assert (
            f"zerocopy.uvicorn.{protocol}: zero-copy is off, it serves as uvicorn's own"
            f" {protocol}: uvicorn 0.99.0 lacks {hook} {HTTPTOOLS_TESTED}"
        ) in served.stderr
        no_traceback(served)


class TestAiohttp:
    def test_tested_version_no_warning(self, tmp_path: Path, payload: tuple[Path, bytes]) -> None:
        """The installed (tested) aiohttp: no warning, the body by zerocopy's sendfile, exact."""
        file, data = payload
        served = run_aiohttp(tmp_path, file, "")
        assert served.body == data
        assert served.moved == SIZE
        no_warning(served)

    @pytest.mark.parametrize("version", ["3.99.0", "3.9.0"])
    def test_untested_version_runs(
        self, tmp_path: Path, payload: tuple[Path, bytes], version: str
    ) -> None:
        """A newer or older aiohttp with the hooks: it starts, warns it is untested, sendfile."""
        file, data = payload
        served = run_aiohttp(tmp_path, file, f"aiohttp.__version__ = {version!r}")
        assert served.body == data
        assert served.moved == SIZE
        assert "UntestedVersionWarning" in served.stderr
        assert (
            f"zerocopy.aiohttp is untested with aiohttp {version} (tested: aiohttp 3.10 to 3.14)"
        ) in served.stderr
        assert "IntegrationFallbackWarning" not in served.stderr
        no_traceback(served)

    def test_hook_gone_falls_back_to_stock(
        self, tmp_path: Path, payload: tuple[Path, bytes]
    ) -> None:
        """A newer aiohttp without ``_sendfile_fallback``: stock FileResponse, says why, exact."""
        file, data = payload
        # On asyncio's loop aiohttp's own _sendfile uses loop.sendfile, not the
        # deleted method: stock aiohttp still serves.
        patch = (
            "aiohttp.__version__ = '3.99.0'\n"
            "from aiohttp import web\n"
            "del web.FileResponse._sendfile_fallback\n"
        )
        served = run_aiohttp(tmp_path, file, patch)
        assert served.body == data
        assert served.moved == 0  # aiohttp's own loop.sendfile, not zerocopy's
        assert "IntegrationFallbackWarning" in served.stderr
        assert (
            "zerocopy.aiohttp.FileResponse: zero-copy is off, it serves as aiohttp's own"
            " FileResponse: aiohttp 3.99.0 lacks async FileResponse._sendfile_fallback(self,"
            " writer, fobj, offset, count) (tested: aiohttp 3.10 to 3.14)"
        ) in served.stderr
        no_traceback(served)


def test_installed_versions_are_tested_ones() -> None:
    """The in-range cases above run on a tested release (else they prove nothing)."""
    from zerocopy._asgi.uvicorn_select import tested
    from zerocopy.aiohttp import _tested

    assert tested(uvicorn.__version__)
    assert _tested(aiohttp.__version__)


def test_extras_claim_the_tested_ranges() -> None:
    """The aiohttp and uvicorn extras (what scripts/test-framework-range tests) are SUPPORTED."""
    import tomllib

    from zerocopy.aiohttp import SUPPORTED as AIOHTTP
    from zerocopy.uvicorn import SUPPORTED as UVICORN

    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["project"]["optional-dependencies"]
    # The lower bound may name a patch release of the lowest tested series.
    low, high = re.fullmatch(
        r"aiohttp>=(\d+\.\d+)(?:\.\d+)?,<(\d+\.\d+)", table["aiohttp"][0]
    ).groups()
    assert (low, high) == ("{}.{}".format(*AIOHTTP[0]), "{}.{}".format(*AIOHTTP[1]))
    (lo, hi) = (UVICORN[0], UVICORN[-1])
    assert tuple((0, minor) for minor in range(lo[1], hi[1] + 1)) == UVICORN
    assert table["uvicorn"][0] == f"uvicorn>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1] + 1}"

"""zerocopy.http.ZeroCopyHTTPRequestHandler: the stdlib handler, with sendfile and byte ranges.

Each test runs a :class:`http.server.ThreadingHTTPServer` on 127.0.0.1, port
0, in a thread, on every backend, and talks to it with :mod:`http.client`,
raw sockets and ``curl``.  The reference for every body is the file's bytes
(slices of them); the reference for everything but ranges is the stdlib's
:class:`~http.server.SimpleHTTPRequestHandler` on the same tree.  The server
is shut down, its handler threads joined, before ``no_leaks`` looks for
leaked descriptors.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import http.server
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

import zerocopy
import zerocopy.http
from zerocopy.http import ZeroCopyHTTPRequestHandler

pytestmark = pytest.mark.usefixtures("no_leaks")

MiB = 1 << 20
SIZES = {"empty.bin": 0, "one.bin": 1, "mid.bin": MiB + 3, "big.bin": 64 * MiB}
MID = SIZES["mid.bin"]
TIMEOUT = 30.0


# --- the tree and the servers ---------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A served directory: files of every size, a listing, an index page; and their bytes."""
    root = tmp_path_factory.mktemp("www")
    data: dict[str, bytes] = {}
    for i, (name, size) in enumerate(SIZES.items()):
        data[name] = random.Random(i).randbytes(size)
        (root / name).write_bytes(data[name])
    data["page.html"] = b"<!DOCTYPE html><title>page</title>\n"
    data["text.txt"] = b"plain text\n" * 100
    data["sub/a.txt"] = b"a\n"
    data["sub/b b.json"] = b"{}\n"
    data["withindex/index.html"] = b"<p>index</p>\n"
    for name, body in data.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(body)
    (root / "sub" / "deeper").mkdir()
    return root, data


class _Server(http.server.ThreadingHTTPServer):
    # Join the handler threads on server_close, so that every connection is
    # closed before no_leaks looks; a deep backlog for the concurrency test.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 256


class _Quiet:
    """Mixin: keep the request log in memory instead of on stderr."""

    # Bounds every wait of a handler thread, so that teardown cannot hang.
    timeout: ClassVar[float | None] = TIMEOUT
    logged: ClassVar[list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        self.logged.append(format % args)


class ZcHandler(_Quiet, ZeroCopyHTTPRequestHandler):
    logged: ClassVar[list[str]] = []


class StdlibHandler(_Quiet, http.server.SimpleHTTPRequestHandler):
    logged: ClassVar[list[str]] = []


Serve = Callable[..., int]


@pytest.fixture
def serve(tree: tuple[Path, dict[str, bytes]]) -> Iterator[Serve]:
    """Start a server in a thread: serve(handler, directory, server_class) -> its port."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start(
        handler: type = ZcHandler,
        directory: Path | None = None,
        server_class: type[_Server] = _Server,
    ) -> int:
        handler_factory = functools.partial(handler, directory=str(directory or tree[0]))
        server = server_class(("127.0.0.1", 0), handler_factory)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
        thread.start()
        running.append((server, thread))
        return int(server.server_address[1])

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@pytest.fixture
def port(backend: ModuleType, serve: Serve) -> int:
    """The port of a zerocopy server on the backend under test."""
    return serve()


def _get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _raw(port: int, request: bytes) -> bytes:
    """Send *request* on a new connection; return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


# --- full bodies ----------------------------------------------------------------


class TestFullBody:
    @pytest.mark.parametrize("name", list(SIZES))
    def test_get_is_byte_exact(self, port: int, tree: Any, name: str) -> None:
        """A GET returns the whole file, byte for byte, with its length and Accept-Ranges."""
        status, headers, body = _get(port, f"/{name}")
        assert status == 200
        assert body == tree[1][name]
        assert headers["Content-Length"] == str(SIZES[name])
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["Content-Type"] == "application/octet-stream"

    def test_head_sends_headers_only(self, port: int) -> None:
        """HEAD gets the GET's headers, the full Content-Length, and not one body byte."""
        reply = _raw(port, b"HEAD /mid.bin HTTP/1.0\r\n\r\n")
        head, sep, rest = reply.partition(b"\r\n\r\n")
        assert sep
        assert rest == b""
        assert head.startswith(b"HTTP/1.0 200 ")
        assert f"\r\nContent-Length: {MID}\r\n".encode() in head + b"\r\n"
        status, headers, body = _get(port, "/mid.bin", method="HEAD")
        assert (status, body, headers["Content-Length"]) == (200, b"", str(MID))

    def test_bodies_go_out_with_send_file(
        self, port: int, tree: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """File bodies are sent by zerocopy.send_file, with the range's offset and count."""
        calls: list[tuple[int, int | None]] = []
        real = zerocopy.send_file

        def spy(sock: socket.socket, file: Any, offset: int = 0, count: int | None = None) -> int:
            calls.append((offset, count))
            return real(sock, file, offset, count)

        monkeypatch.setattr(zerocopy.http, "send_file", spy)
        assert _get(port, "/mid.bin")[2] == tree[1]["mid.bin"]
        assert _get(port, "/mid.bin", {"Range": "bytes=10-99"})[2] == tree[1]["mid.bin"][10:100]
        assert calls == [(0, MID), (10, 90)]

    def test_keep_alive_carries_exact_lengths(
        self, backend: ModuleType, serve: Serve, tree: Any
    ) -> None:
        """On one HTTP/1.1 connection, full, ranged, 416 and HEAD responses stay in step."""

        class Handler11(ZcHandler):
            protocol_version = "HTTP/1.1"

        port = serve(Handler11)
        data = tree[1]["mid.bin"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            for headers, method, status, body in [
                ({}, "GET", 200, data),
                ({"Range": "bytes=5-9"}, "GET", 206, data[5:10]),
                ({"Range": f"bytes={MID}-"}, "GET", 416, b""),
                ({}, "HEAD", 200, b""),
                ({"Range": "bytes=-3"}, "GET", 206, data[-3:]),
                ({}, "GET", 200, data),
            ]:
                conn.request(method, "/mid.bin", headers=headers)
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (status, body)
        finally:
            conn.close()


# --- ranges -------------------------------------------------------------------


class TestRange:
    @pytest.mark.parametrize(
        ("spec", "first", "last"),
        [
            ("bytes=0-99", 0, 99),  # the first bytes
            ("bytes=0-0", 0, 0),
            ("bytes=4096-8191", 4096, 8191),  # the middle
            ("bytes=-500", MID - 500, MID - 1),  # a suffix
            ("bytes=-99999999", 0, MID - 1),  # a suffix longer than the file: all of it
            ("bytes=1048000-", 1048000, MID - 1),  # open-ended
            (f"bytes={MID - 1}-", MID - 1, MID - 1),  # the last byte
            ("bytes=1048570-99999999", 1048570, MID - 1),  # an end past the file: clamped
            ("Bytes = 7 - 8", 7, 8),  # case and spaces
        ],
    )
    def test_single_range(self, port: int, tree: Any, spec: str, first: int, last: int) -> None:
        """A single satisfiable range gets 206, its Content-Range, and exactly its bytes."""
        status, headers, body = _get(port, "/mid.bin", {"Range": spec})
        assert status == 206
        assert headers["Content-Range"] == f"bytes {first}-{last}/{MID}"
        assert headers["Content-Length"] == str(last - first + 1)
        assert body == tree[1]["mid.bin"][first : last + 1]

    def test_range_in_big_file(self, port: int, tree: Any) -> None:
        """A range deep inside the 64 MiB file is byte-exact."""
        first, last = 50 * MiB + 7, 60 * MiB + 11
        status, headers, body = _get(port, "/big.bin", {"Range": f"bytes={first}-{last}"})
        assert status == 206
        assert headers["Content-Range"] == f"bytes {first}-{last}/{SIZES['big.bin']}"
        assert body == tree[1]["big.bin"][first : last + 1]

    @pytest.mark.parametrize(
        ("name", "spec"),
        [
            ("mid.bin", f"bytes={MID}-"),  # starts at the end
            ("mid.bin", f"bytes={MID + 100}-{MID + 200}"),
            ("mid.bin", "bytes=-0"),  # a suffix of no bytes
            ("one.bin", "bytes=1-"),
            ("empty.bin", "bytes=0-"),
            ("empty.bin", "bytes=0-0"),
        ],
    )
    def test_unsatisfiable(self, port: int, name: str, spec: str) -> None:
        """A range past the end gets 416 with Content-Range bytes */size and no body."""
        status, headers, body = _get(port, f"/{name}", {"Range": spec})
        assert status == 416
        assert headers["Content-Range"] == f"bytes */{SIZES[name]}"
        assert body == b""

    @pytest.mark.parametrize(
        "spec",
        [
            "bytes=abc",
            "bytes=",
            "bytes=-",
            "bytes=5-2",  # last before first: invalid
            "bytes=0-1x",
            "bytes=1-2-3",
            "bytes 0-10",
            "items=0-10",  # another unit
            "bytes=0-10,20-30",  # several ranges: answered with the whole body
            "bytes=0-10, -5",
            "bytes=" + "9" * 5000 + "-",  # more digits than int() takes
            "",
        ],
    )
    def test_malformed_or_multiple_is_ignored(self, port: int, tree: Any, spec: str) -> None:
        """A malformed, foreign-unit or multi-range header is ignored: 200 and the full body."""
        status, headers, body = _get(port, "/mid.bin", {"Range": spec})
        assert status == 200
        assert "Content-Range" not in headers
        assert headers["Accept-Ranges"] == "bytes"
        assert body == tree[1]["mid.bin"]

    def test_suffix_of_empty_file_is_the_empty_body(self, port: int) -> None:
        """bytes=-n on an empty file has no bytes to give: 200 with the (empty) full body."""
        status, headers, body = _get(port, "/empty.bin", {"Range": "bytes=-10"})
        assert (status, headers["Content-Length"], body) == (200, "0", b"")

    def test_head_ignores_range(self, port: int) -> None:
        """Range is defined for GET only (RFC 9110, 14.2): HEAD gets the full 200 headers."""
        status, headers, body = _get(port, "/mid.bin", {"Range": "bytes=0-9"}, method="HEAD")
        assert (status, headers["Content-Length"], body) == (200, str(MID), b"")
        assert "Content-Range" not in headers

    def test_if_range(self, port: int, tree: Any) -> None:
        """If-Range with the file's Last-Modified keeps the range; another validator gets 200."""
        last_modified = _get(port, "/mid.bin", method="HEAD")[1]["Last-Modified"]
        data = tree[1]["mid.bin"]
        ranged = {"Range": "bytes=1-2", "If-Range": last_modified}
        assert _get(port, "/mid.bin", ranged)[::2] == (206, data[1:3])
        stale = {"Range": "bytes=1-2", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}
        assert _get(port, "/mid.bin", stale)[::2] == (200, data)
        etag = {"Range": "bytes=1-2", "If-Range": '"some-etag"'}
        assert _get(port, "/mid.bin", etag)[::2] == (200, data)

    def test_range_on_listing_is_ignored(self, port: int, serve: Serve) -> None:
        """A Range on a directory listing gets the stdlib's 200 listing."""
        ours = _get(port, "/sub/", {"Range": "bytes=0-3"})
        theirs = _get(serve(StdlibHandler), "/sub/")
        assert ours[0] == 200
        assert ours[2] == theirs[2]

    def test_range_of_index_page(self, port: int, tree: Any) -> None:
        """The index.html the stdlib serves for a directory takes ranges too."""
        status, _, body = _get(port, "/withindex/", {"Range": "bytes=3-7"})
        assert (status, body) == (206, tree[1]["withindex/index.html"][3:8])


class TestConcurrency:
    def test_100_concurrent_ranges(self, port: int, tree: Any) -> None:
        """100 range requests at once, from 100 threads, each get exactly their slice."""
        rng = random.Random(42)
        jobs = []
        for _ in range(100):
            name = rng.choice(["mid.bin", "big.bin"])
            size = SIZES[name]
            first = rng.randrange(size)
            last = min(size - 1, first + rng.randrange(4 * MiB))
            jobs.append((name, first, last))
        results: list[Any] = [None] * len(jobs)
        barrier = threading.Barrier(len(jobs))

        def fetch(i: int) -> None:
            name, first, last = jobs[i]
            try:
                barrier.wait(TIMEOUT)
                status, _, body = _get(port, f"/{name}", {"Range": f"bytes={first}-{last}"})
                results[i] = (status, body == tree[1][name][first : last + 1], len(body))
            except Exception as exc:  # reported below, with the job
                results[i] = exc

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * TIMEOUT)
        bad = [
            (job, r)
            for job, r in zip(jobs, results, strict=True)
            if r is None or r[:2] != (206, True)
        ]
        assert not bad, bad[:5]


# --- conditional requests and the stdlib's behaviour ----------------------------

PATHS = [
    "/",
    "/sub/",
    "/sub",  # the redirect to /sub/
    "/sub/deeper/",
    "/sub/b%20b.json",
    "/withindex/",
    "/withindex/index.html",
    "/page.html",
    "/text.txt",
    "/empty.bin",
    "/one.bin",
    "/mid.bin?query=1#frag",
    "/missing",
    "/missing/",
    "/one.bin/",  # a file with a slash: 404
    "/../../etc/passwd",
]


class TestLikeStdlib:
    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    @pytest.mark.parametrize("path", PATHS)
    def test_same_as_simple_handler(self, port: int, serve: Serve, path: str, method: str) -> None:
        """Without Range, status, body and the entity headers equal SimpleHTTPRequestHandler's."""
        stdlib_port = serve(StdlibHandler)
        ours = _get(port, path, method=method)
        theirs = _get(stdlib_port, path, method=method)
        assert ours[0] == theirs[0]
        assert ours[2] == theirs[2]
        for name in ("Content-Type", "Content-Length", "Location", "Last-Modified"):
            assert ours[1][name] == theirs[1][name], name

    @pytest.mark.parametrize(
        ("headers", "status"),
        [
            ({"If-Modified-Since": "future"}, 304),
            ({"If-Modified-Since": "past"}, 200),
            ({"If-Modified-Since": "exact"}, 304),
            # the stdlib ignores If-Modified-Since next to If-None-Match
            ({"If-Modified-Since": "future", "If-None-Match": '"x"'}, 200),
            ({"If-Modified-Since": "not a date"}, 200),
            ({"If-Modified-Since": "future", "Range": "bytes=0-9"}, 304),  # checked before Range
        ],
    )
    def test_if_modified_since(
        self, port: int, serve: Serve, tree: Any, headers: dict[str, str], status: int
    ) -> None:
        """If-Modified-Since gives 304 as the stdlib does, also ahead of a Range."""
        mtime = os.stat(tree[0] / "mid.bin").st_mtime
        when = {
            "future": email.utils.formatdate(mtime + 3600, usegmt=True),
            "past": email.utils.formatdate(mtime - 3600, usegmt=True),
            "exact": email.utils.formatdate(mtime, usegmt=True),
        }
        headers = {k: when.get(v, v) for k, v in headers.items()}
        ours = _get(port, "/mid.bin", headers)
        assert ours[0] == status
        assert ours[2] == (b"" if status == 304 else tree[1]["mid.bin"])
        plain = {k: v for k, v in headers.items() if k != "Range"}
        assert _get(serve(StdlibHandler), "/mid.bin", plain)[0] == status

    def test_listing_and_404(self, port: int) -> None:
        """A directory without index is listed; a missing file is 404."""
        status, headers, body = _get(port, "/sub/")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert b'href="a.txt"' in body
        assert b'href="deeper/"' in body
        assert _get(port, "/nothing-here.bin")[0] == 404


# --- curl --------------------------------------------------------------------


def _curl(*args: str) -> bytes:
    curl = shutil.which("curl")
    if curl is None:
        reason = "curl is not installed: the http.client tests cover the same requests"
        print(reason)
        pytest.skip(reason)
    return subprocess.run(
        [curl, "-s", "--fail", *args], capture_output=True, check=True, timeout=TIMEOUT
    ).stdout


class TestCurl:
    def test_curl_range(self, port: int, tree: Any) -> None:
        """curl -r 10-99 gets bytes 10..99 exactly."""
        got = _curl("-r", "10-99", f"http://127.0.0.1:{port}/mid.bin")
        assert got == tree[1]["mid.bin"][10:100]

    def test_curl_suffix_and_open_ranges(self, port: int, tree: Any) -> None:
        """curl -r -100 and -r 1048000- get the suffix and the tail."""
        data = tree[1]["mid.bin"]
        assert _curl("-r", "-100", f"http://127.0.0.1:{port}/mid.bin") == data[-100:]
        assert _curl("-r", "1048000-", f"http://127.0.0.1:{port}/mid.bin") == data[1048000:]

    def test_curl_full_and_head(self, port: int, tree: Any) -> None:
        """curl gets the 64 MiB file whole, and curl -I shows its length and Accept-Ranges."""
        assert _curl(f"http://127.0.0.1:{port}/big.bin") == tree[1]["big.bin"]
        head = _curl("-I", f"http://127.0.0.1:{port}/big.bin").decode("latin-1")
        assert f"Content-Length: {SIZES['big.bin']}\r\n" in head
        assert "Accept-Ranges: bytes\r\n" in head


# --- failures -----------------------------------------------------------------


class TestFailures:
    def test_stalled_client_times_out(self, backend: ModuleType, serve: Serve) -> None:
        """A client that stops reading costs the handler its timeout, then the connection."""

        class Impatient(ZcHandler):
            timeout = 0.5
            logged: ClassVar[list[str]] = []

        port = serve(Impatient)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(TIMEOUT)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
            deadline = time.monotonic() + TIMEOUT
            while not any("timed out" in m for m in Impatient.logged):
                assert time.monotonic() < deadline, Impatient.logged
                time.sleep(0.05)
            received = 0
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
            assert received < SIZES["big.bin"]  # cut short, then closed
        assert _get(port, "/one.bin")[0] == 200  # and the server carries on

    def test_client_going_away_is_logged_not_raised(
        self, backend: ModuleType, serve: Serve
    ) -> None:
        """A client that resets mid-body is logged by the handler; no error reaches the server."""
        errors: list[Any] = []

        class Server(_Server):
            def handle_error(self, request: Any, client_address: Any) -> None:
                errors.append(client_address)

        class Leaving(ZcHandler):
            logged: ClassVar[list[str]] = []

        port = serve(Leaving, server_class=Server)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
            assert sock.recv(1000)
            # Close with a reset (SO_LINGER 0) while megabytes are still to come.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + TIMEOUT
        while not any("client went away" in m for m in Leaving.logged):
            assert time.monotonic() < deadline, Leaving.logged
            time.sleep(0.01)
        assert _get(port, "/one.bin")[0] == 200
        assert errors == []

    def test_file_shrinking_mid_send_closes(
        self, backend: ModuleType, serve: Serve, tmp_path: Path
    ) -> None:
        """A file that shrinks after its length went out: a short body, then the close."""
        (tmp_path / "f.bin").write_bytes(b"x" * 100_000)

        class Shrinking(ZcHandler):
            protocol_version = "HTTP/1.1"

            def copyfile(self, source: Any, outputfile: Any) -> None:
                os.truncate(tmp_path / "f.bin", 1000)
                super().copyfile(source, outputfile)

        port = serve(Shrinking, tmp_path)
        reply = _raw(port, b"GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n")  # returns at the close
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"Content-Length: 100000" in head
        assert body == b"x" * 1000

    def test_file_growing_mid_send_sends_the_announced_length(
        self, backend: ModuleType, serve: Serve, tmp_path: Path
    ) -> None:
        """A file that grows after its length went out sends exactly Content-Length bytes."""
        (tmp_path / "f.bin").write_bytes(b"a" * 5000)

        class Growing(ZcHandler):
            protocol_version = "HTTP/1.1"

            def copyfile(self, source: Any, outputfile: Any) -> None:
                with open(tmp_path / "f.bin", "ab") as f:
                    f.write(b"b" * 5000)
                super().copyfile(source, outputfile)

        port = serve(Growing, tmp_path)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/f.bin")
            first = conn.getresponse()
            assert first.read() == b"a" * 5000
            conn.request("GET", "/f.bin", headers={"Range": "bytes=4999-5000"})
            second = conn.getresponse()  # the same connection: nothing extra came before it
            assert (second.status, second.read()) == (206, b"ab")
        finally:
            conn.close()

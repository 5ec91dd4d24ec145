"""zerocopy off Linux: each simulated platform imports cleanly and gets the stdlib's paths.

The subprocess tests run in every suite (on Linux too): each starts a fresh
interpreter under one simulated platform (tests/simplatform.py).  The others
run in the simulated runs of scripts/test-platforms.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import simplatform
import zerocopy
from conftest import hang_guard

TESTS = Path(__file__).parent

#: What each platform's os module offers of zerocopy's calls.
EXPECTED = {
    "darwin": set(),
    "freebsd14": {"copy_file_range"},
    "win32": set(),
}

_PROBE = """
import json, os, sys, warnings
warnings.simplefilter("error")
import simplatform
simplatform.apply(sys.argv[1])
import zerocopy
from zerocopy._cli import info
print(json.dumps({"backend": zerocopy.BACKEND, "features": sorted(zerocopy.FEATURES),
                  "info": info.collect()["paths"], "all": sorted(zerocopy.__all__)}))
"""


@pytest.mark.parametrize("name", simplatform.PLATFORMS)
def test_imports_without_warning(name: str) -> None:
    """Every public name imports under each platform, no warning, os backend, its calls only."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    env.pop(simplatform.ENV_VAR, None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    got = json.loads(out.stdout)
    assert got["backend"] == "os"
    assert set(got["features"]) - {"vmsplice"} == EXPECTED[name]
    assert got["all"] == sorted(zerocopy.__all__)
    want_copyfile = "copy_file_range" if EXPECTED[name] else "shutil.copyfile"
    assert got["info"]["copyfile"] == want_copyfile
    assert got["info"]["relay"] == "recv and send through a buffer"
    assert got["info"]["send_file"] == "read and send"
    assert out.stderr == ""


needs_simulation = pytest.mark.skipif(
    simplatform.simulated() is None,
    reason="run by scripts/test-platforms under a simulated platform",
)


@needs_simulation
class TestSimulated:
    def test_no_compiled_backend(self) -> None:
        """The compiled module is refused off Linux, as a real install there has none."""
        assert zerocopy.BACKEND == "os"
        with pytest.raises(ImportError, match="Linux only"):
            zerocopy._backend.load("cffi")

    def test_copyfile_is_shutils(self, tmp_path: Path) -> None:
        """Without copy_file_range, copyfile is shutil.copyfile: same bytes, says so."""
        src = tmp_path / "a"
        src.write_bytes(os.urandom(300_000))
        assert zerocopy.copyfile(src, tmp_path / "b") == tmp_path / "b"
        assert (tmp_path / "b").read_bytes() == src.read_bytes()
        want = "copy_file_range" if "copy_file_range" in zerocopy.FEATURES else "shutil"
        assert zerocopy.last_method() == want

    def test_relay_reset_counts(self) -> None:
        """The buffered relay's error carries the exact counts delivered."""
        a, a_peer = socket.socketpair()
        b, b_peer = socket.socketpair()
        with a, a_peer, b, b_peer, hang_guard(20):
            caught: list[BaseException] = []

            def run() -> None:
                try:
                    zerocopy.relay(a, b, timeout=10)
                except OSError as exc:
                    caught.append(exc)

            t = threading.Thread(target=run)
            t.start()
            a_peer.sendall(b"x" * 1000)
            got = b""
            while len(got) < 1000:
                got += b_peer.recv(4096)
            b_peer.close()  # b's peer gone: a write towards it fails
            a_peer.sendall(b"y" * 10)
            for _ in range(50):
                try:
                    a_peer.sendall(b"z" * 65536)
                except OSError:
                    break
                if not t.is_alive():
                    break
            t.join(15)
            assert not t.is_alive()
            assert caught, "the relay ended without the reset"
            assert caught[0].a_to_b >= 1000  # type: ignore[attr-defined]
            assert caught[0].b_to_a == 0  # type: ignore[attr-defined]

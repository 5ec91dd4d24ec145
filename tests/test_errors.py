"""Counts on exceptions, read with the typed helpers; the public signatures under mypy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from conftest import tcp_pair

pytestmark = pytest.mark.usefixtures("no_leaks")

ROOT = Path(__file__).resolve().parent.parent


class TestBytesTransferred:
    def test_copy_failure_count(self, backend: ModuleType, tmp_path: Path) -> None:
        """bytes_transferred(exc) is the count a failed copyfileobj set: what dst holds."""
        src, dst = tmp_path / "src", tmp_path / "dst"
        src.write_bytes(os.urandom(4 << 20))

        class Stop(Exception):
            pass

        def progress(total: int) -> None:
            if total >= 1 << 20:
                raise Stop

        with open(src, "rb") as fsrc, open(dst, "wb") as fdst, pytest.raises(Stop) as info:
            zerocopy.copyfileobj(fsrc, fdst, progress=progress)
        done = zerocopy.bytes_transferred(info.value)
        assert done == info.value.bytes_transferred == dst.stat().st_size
        assert done is not None
        assert done >= 1 << 20
        assert zerocopy.relay_counts(info.value) is None

    def test_relay_counts(self, backend: ModuleType) -> None:
        """relay_counts(exc) gives each direction; bytes_transferred(exc) their sum."""
        c, a = tcp_pair()
        b, s = tcp_pair()
        with c, a, b, s:
            c.sendall(b"x" * 1000)
            with pytest.raises(TimeoutError) as info:
                zerocopy.relay(a, b, timeout=0.3)
            assert s.recv(2000) == b"x" * 1000
        assert zerocopy.relay_counts(info.value) == (1000, 0)
        assert zerocopy.bytes_transferred(info.value) == 1000

    def test_no_count(self) -> None:
        """An exception that carries no count reads as None from both helpers."""
        exc = OSError(5, "io")
        assert zerocopy.bytes_transferred(exc) is None
        assert zerocopy.relay_counts(exc) is None


class TestTyping:
    def test_public_signatures_under_mypy(self, tmp_path: Path) -> None:
        """mypy --strict rejects copyfileobj("not a file", 42), accepts files and the helpers."""
        mypy = pytest.importorskip("mypy.api", reason="mypy is in the 'lint' extra, not installed")
        assert mypy is not None
        user = tmp_path / "user.py"
        user.write_text(
            textwrap.dedent(
                """\
                import io
                import zerocopy

                def ok(src: io.BufferedReader, dst: io.BufferedWriter) -> int:
                    return zerocopy.copyfileobj(src, dst)

                def text(src: io.TextIOWrapper, dst: io.StringIO) -> int:
                    return zerocopy.copyfileobj(src, dst)

                def count(exc: OSError) -> int:
                    n = zerocopy.bytes_transferred(exc)
                    pair = zerocopy.relay_counts(exc)
                    return (n or 0) + (sum(pair) if pair else 0)

                def bad() -> None:
                    zerocopy.copyfileobj("not a file", 42)  # line 16
                """
            )
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(tmp_path / "cache"),
                str(user),
            ],
            env={**os.environ, "MYPYPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
        assert errors, proc.stdout + proc.stderr
        assert all(line.startswith(f"{user}:16:") for line in errors), proc.stdout

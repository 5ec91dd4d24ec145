"""``python -m zerocopy copy``: byte-exact copies, cp-like destinations, clean
errors with exit status 1, a summary line or nothing, and a progress bar on a
terminal.  Each command runs in a subprocess on the backend under test."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from zerocopy._cli import copy as cli_copy

METHODS = r"(copy_file_range|sendfile|splice|readinto|read)"


def zc_copy(
    backend: ModuleType, *args: str, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m zerocopy copy ARGS`` on *backend*, capturing stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "zerocopy", "copy", *args],
        input=input,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "ZEROCOPY_BACKEND": backend.NAME},
        timeout=60,
    )


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    """A source file of 3 MiB and 7 bytes of random data."""
    data = os.urandom(3 * 1024 * 1024 + 7)
    src = tmp_path / "source.bin"
    src.write_bytes(data)
    return src, data


class TestCopies:
    def test_byte_exact(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """The destination holds exactly the source's bytes, and the exit status is 0."""
        src, data = payload
        dst = tmp_path / "copy.bin"
        result = zc_copy(backend, str(src), str(dst))
        assert result.returncode == 0, result.stderr
        assert dst.read_bytes() == data

    def test_empty_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """An empty source gives an empty destination."""
        src = tmp_path / "empty"
        src.write_bytes(b"")
        result = zc_copy(backend, str(src), str(tmp_path / "out"))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out").read_bytes() == b""

    def test_overwrites_existing_destination(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """A longer existing destination is truncated, as cp does."""
        src, data = payload
        dst = tmp_path / "old"
        dst.write_bytes(b"x" * (len(data) + 4096))
        assert zc_copy(backend, str(src), str(dst)).returncode == 0
        assert dst.read_bytes() == data

    def test_into_directory(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """A directory destination receives the file under the source's basename."""
        src, data = payload
        target = tmp_path / "dir"
        target.mkdir()
        result = zc_copy(backend, str(src), str(target))
        assert result.returncode == 0, result.stderr
        assert (target / src.name).read_bytes() == data

    def test_new_file_takes_source_mode(self, backend: ModuleType, tmp_path: Path) -> None:
        """A new destination gets the source's permission bits (less the umask), as with cp."""
        src = tmp_path / "script"
        src.write_bytes(b"#!/bin/sh\n")
        src.chmod(0o750)
        umask = os.umask(0)
        os.umask(umask)
        assert zc_copy(backend, str(src), str(tmp_path / "out")).returncode == 0
        assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750 & ~umask

    def test_stdin_to_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """'-' as SRC reads standard input to its end."""
        data = os.urandom(200_000)
        result = zc_copy(backend, "-", str(tmp_path / "out"), input=data)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out").read_bytes() == data

    def test_file_to_stdout(self, backend: ModuleType, payload: tuple[Path, bytes]) -> None:
        """'-' as DST writes the bytes to standard output and nothing else there."""
        src, data = payload
        result = zc_copy(backend, str(src), "-")
        assert result.returncode == 0, result.stderr
        assert result.stdout == data


class TestErrors:
    def _assert_clean(self, result: subprocess.CompletedProcess[bytes], name: str) -> None:
        assert result.returncode == 1
        err = result.stderr.decode()
        assert err.startswith("zerocopy copy: "), err
        assert name in err
        assert "Traceback" not in err
        assert err.count("\n") == 1, err

    def test_missing_source(self, backend: ModuleType, tmp_path: Path) -> None:
        """A missing SRC: one line naming it on stderr, exit 1, no destination made."""
        result = zc_copy(backend, str(tmp_path / "nope"), str(tmp_path / "out"))
        self._assert_clean(result, "nope")
        assert "No such file or directory" in result.stderr.decode()
        assert not (tmp_path / "out").exists()

    def test_source_is_a_directory(self, backend: ModuleType, tmp_path: Path) -> None:
        """A directory as SRC is refused with exit 1."""
        (tmp_path / "d").mkdir()
        self._assert_clean(zc_copy(backend, str(tmp_path / "d"), str(tmp_path / "out")), "d")

    def test_missing_destination_directory(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """A DST in a directory that does not exist: exit 1, naming DST."""
        src, _ = payload
        dst = tmp_path / "no" / "such" / "file"
        self._assert_clean(zc_copy(backend, str(src), str(dst)), str(dst))

    def test_same_file(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """SRC and DST the same file (here through a symlink): refused, source intact."""
        src, data = payload
        link = tmp_path / "link"
        link.symlink_to(src)
        result = zc_copy(backend, str(src), str(link))
        self._assert_clean(result, "same file")
        assert src.read_bytes() == data

    def test_write_error(self, backend: ModuleType, payload: tuple[Path, bytes]) -> None:
        """A failing write (ENOSPC from /dev/full) is reported with both names, exit 1."""
        src, _ = payload
        result = zc_copy(backend, str(src), "/dev/full")
        self._assert_clean(result, "/dev/full")
        assert "No space left on device" in result.stderr.decode()


class TestOutput:
    def test_summary_when_not_a_terminal(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """Without a terminal, stderr gets one summary line: bytes, seconds, rate, method."""
        src, data = payload
        result = zc_copy(backend, str(src), str(tmp_path / "out"))
        assert result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert re.fullmatch(
            rf"copied .* \({len(data)} bytes\) in [\d.]+ s, .*/s, by {METHODS}: .*", lines[0]
        ), lines[0]

    def test_quiet_prints_nothing(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """--quiet: nothing on stdout or stderr, and the copy is still made."""
        src, data = payload
        result = zc_copy(backend, "--quiet", str(src), str(tmp_path / "out"))
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        assert (tmp_path / "out").read_bytes() == data

    def test_progress_bar_on_a_terminal(
        self, backend: ModuleType, payload: tuple[Path, bytes], tmp_path: Path
    ) -> None:
        """With stderr on a pty, a bar with a percentage and a rate is drawn and its line ended."""
        src, data = payload
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "zerocopy", "copy", str(src), str(tmp_path / "out")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=slave,
                env={**os.environ, "ZEROCOPY_BACKEND": backend.NAME},
            )
            os.close(slave)
            slave = -1
            output = _read_until_closed(master, deadline=time.monotonic() + 60)
            assert proc.wait(timeout=60) == 0
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)
        text = output.decode()
        assert "\r[" in text
        assert "100%" in text
        assert re.search(r"\d+(\.\d)? (B|KiB|MiB|GiB)/s", text), text
        assert re.search(r"100% .*\r?\n", text), text  # the bar's line is ended
        assert f"({len(data)} bytes)" in text
        assert (tmp_path / "out").read_bytes() == data


def _read_until_closed(fd: int, deadline: float) -> bytes:
    """Read a pty master until the other side is closed (EIO on Linux) or the deadline."""
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


class TestProgress:
    def test_redraws_at_most_ten_times_a_second(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A thousand updates within 0.25 s draw three times; the final state always draws."""
        now = [1000.0]
        monkeypatch.setattr(cli_copy.time, "monotonic", lambda: now[0])
        stream = io.StringIO()
        bar = cli_copy.Progress(stream, total=1000)
        for i in range(1000):
            now[0] = 1000.0 + i * 0.00025
            bar.update(i)
        assert stream.getvalue().count("\r") == 3  # at 0, 0.1 and 0.2 s
        bar.finish(1000)
        assert stream.getvalue().count("\r") == 4
        assert stream.getvalue().endswith("\n")
        assert "100%" in stream.getvalue().rsplit("\r", 1)[1]

    def test_unknown_total_shows_bytes_and_rate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a total (a pipe), the bar shows the bytes and the rate, no percentage."""
        now = [50.0]
        monkeypatch.setattr(cli_copy.time, "monotonic", lambda: now[0])
        stream = io.StringIO()
        bar = cli_copy.Progress(stream, total=None)
        now[0] = 52.0
        bar.finish(4 * 1024 * 1024)
        line = stream.getvalue().rsplit("\r", 1)[1]
        assert "4 MiB " in line
        assert "2 MiB/s" in line
        assert "%" not in line

"""``python -m zerocopy``'s first hour (issue 26): --version, one error prefix
``zerocopy CMD:`` and no traceback for a user's mistake, checked ports and
hosts, a quiet exit 141 when stdout's reader goes away, a Ctrl-C that says
how far a copy got, typed ``info --json`` and described options.  Each
command runs in a subprocess, as a user runs it."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from zerocopy._cli import build_parser

TIMEOUT = 60
#: The commands whose messages and options this file checks (bench has its own tests).
OWNED = ("copy", "info", "serve", "proxy")


def _env(backend: ModuleType) -> dict[str, str]:
    src = str(Path(zerocopy.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "ZEROCOPY_BACKEND": backend.NAME, "PYTHONPATH": path}


def zc(backend: ModuleType, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zerocopy ARGS`` to the end, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "zerocopy", *args],
        capture_output=True,
        text=True,
        env=_env(backend),
        timeout=TIMEOUT,
    )


def _no_sigint_ignored() -> None:
    # A shell without job control starts children with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_user_error(proc: subprocess.CompletedProcess[str], cmd: str, status: int) -> str:
    """*proc* failed with *status*, one ``zerocopy CMD:`` message and no traceback."""
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr.splitlines()[-1]
    assert message.startswith(f"zerocopy {cmd}: "), proc.stderr
    return message


class TestVersion:
    def test_version(self, backend: ModuleType) -> None:
        """--version prints 'zerocopy X.Y.Z (backend NAME)' on stdout and exits 0."""
        proc = zc(backend, "--version")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"zerocopy {zerocopy.__version__} (backend {backend.NAME})\n"


class TestPrefix:
    def test_copy_missing_source(self, backend: ModuleType, tmp_path: Path) -> None:
        """A missing SRC: 'zerocopy copy: cannot open ...', status 1."""
        proc = zc(backend, "copy", str(tmp_path / "missing"), str(tmp_path / "out"))
        message = assert_user_error(proc, "copy", 1)
        assert "No such file or directory" in message

    def test_copy_permission(self, backend: ModuleType, tmp_path: Path) -> None:
        """A destination in a directory that does not exist: one line, status 1."""
        src = tmp_path / "src"
        src.write_bytes(b"x")
        proc = zc(backend, "copy", str(src), str(tmp_path / "no" / "such" / "dir"))
        assert "cannot create" in assert_user_error(proc, "copy", 1)

    def test_serve_not_a_directory(self, backend: ModuleType, tmp_path: Path) -> None:
        """serve on a missing directory: 'zerocopy serve: not a directory', status 2."""
        proc = zc(backend, "serve", str(tmp_path / "missing"), "--port", "0")
        assert "not a directory" in assert_user_error(proc, "serve", 2)

    @pytest.mark.parametrize("cmd", OWNED)
    def test_usage_error(self, backend: ModuleType, cmd: str) -> None:
        """An unknown option: usage, then 'zerocopy CMD: error: ...', status 2."""
        proc = zc(backend, cmd, "--no-such-option")
        message = assert_user_error(proc, cmd, 2)
        assert message.startswith(f"zerocopy {cmd}: error: ")
        assert proc.stderr.startswith(f"usage: python -m zerocopy {cmd}")


class TestPorts:
    @pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
    def test_serve_bad_port(self, backend: ModuleType, tmp_path: Path, port: str) -> None:
        """serve --port outside 0-65535: a usage error naming the value, not a random port."""
        proc = zc(backend, "serve", str(tmp_path), f"--port={port}")
        message = assert_user_error(proc, "serve", 2)
        assert f"not a port from 0 to 65535: {port!r}" in message
        assert "Serving HTTP" not in proc.stdout

    def test_proxy_bad_port(self, backend: ModuleType) -> None:
        """proxy LISTEN with port 99999: a usage error with the same prefix."""
        proc = zc(backend, "proxy", ":99999", "127.0.0.1:1")
        assert "not HOST:PORT" in assert_user_error(proc, "proxy", 2)

    def test_serve_unknown_host(self, backend: ModuleType, tmp_path: Path) -> None:
        """serve --bind with a host that does not resolve: one line, status 1."""
        proc = zc(backend, "serve", str(tmp_path), "--bind", "no-such-host.invalid")
        message = assert_user_error(proc, "serve", 1)
        assert message.startswith("zerocopy serve: cannot resolve 'no-such-host.invalid': ")

    @pytest.mark.parametrize("cmd", ["serve", "proxy"])
    def test_port_in_use(self, backend: ModuleType, tmp_path: Path, cmd: str) -> None:
        """A port another socket listens on: 'cannot listen on HOST:PORT: ...', status 1."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            if cmd == "serve":
                proc = zc(backend, "serve", str(tmp_path), "-b", "127.0.0.1", "--port", str(port))
            else:
                proc = zc(backend, "proxy", f"127.0.0.1:{port}", "127.0.0.1:1")
        message = assert_user_error(proc, cmd, 1)
        assert message == f"zerocopy {cmd}: cannot listen on 127.0.0.1:{port}: " + os.strerror(98)


class TestBrokenPipe:
    def test_copy_into_head(self, backend: ModuleType, tmp_path: Path) -> None:
        """copy big - | head -c 10: 10 bytes out, nothing on stderr, status 141 as cat's."""
        src = tmp_path / "big"
        src.write_bytes(os.urandom(8 << 20))
        copy = subprocess.Popen(
            [sys.executable, "-m", "zerocopy", "copy", str(src), "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(backend),
        )
        assert copy.stdout is not None
        head = subprocess.run(
            ["head", "-c", "10"], stdin=copy.stdout, capture_output=True, timeout=TIMEOUT
        )
        copy.stdout.close()  # head is the pipe's only reader now, and it has gone
        _, err = copy.communicate(timeout=TIMEOUT)
        assert head.stdout == src.read_bytes()[:10]
        assert (copy.returncode, err) == (141, b"")

    def test_info_into_closed_pipe(self, backend: ModuleType) -> None:
        """info whose stdout is closed before it writes: quiet, status 141."""
        read, write = os.pipe()
        os.close(read)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "zerocopy", "info"],
                stdout=write,
                stderr=subprocess.PIPE,
                env=_env(backend),
                timeout=TIMEOUT,
            )
        finally:
            os.close(write)
        assert (proc.returncode, proc.stderr) == (141, b"")


class TestInterrupt:
    def test_copy_from_slow_fifo(self, backend: ModuleType, tmp_path: Path) -> None:
        """Ctrl-C mid-copy: how far it got and the partial file's path and size, status 130."""
        fifo, dst = tmp_path / "slow", tmp_path / "partial"
        os.mkfifo(fifo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "zerocopy", "copy", str(fifo), str(dst)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(backend),
            preexec_fn=_no_sigint_ignored,
        )
        writer = os.open(fifo, os.O_WRONLY)  # waits for the copy to open its end
        try:
            os.write(writer, b"x" * 100_000)
            deadline = time.monotonic() + TIMEOUT
            while not dst.exists() or dst.stat().st_size < 100_000:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the copy did not take the first bytes"
                time.sleep(0.01)
            # Past the write, the copy reports its progress and waits in the
            # next read from the fifo: let it get there first.
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT)
        finally:
            os.close(writer)
        text = err.decode()
        assert proc.returncode == 130, text
        assert text == (
            "zerocopy copy: interrupted after 97.7 KiB (100000 bytes); partial copy left "
            f"in {str(dst)!r} (100000 bytes): remove it or copy again\n"
        )
        assert dst.read_bytes() == b"x" * 100_000  # kept, as cp keeps it


class TestInfoTyped:
    def test_json_values_typed(self, backend: ModuleType) -> None:
        """info --json: limits as ints (or null), features as bools, no digit strings."""
        proc = zc(backend, "info", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert isinstance(data["pipe_max_size"], int)
        assert isinstance(data["optmem_max"], int)
        for value in data["memlock_limit"].values():
            assert value is None or isinstance(value, int)
        assert all(isinstance(v, bool) for v in data["features"].values())

        def strings(value: object) -> list[str]:
            if isinstance(value, dict):
                return [s for v in value.values() for s in strings(v)]
            return [value] if isinstance(value, str) else []

        assert not [s for s in strings(data) if s.isdigit() or s in ("unlimited", "unknown")]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


class TestHelp:
    def test_commands_described(self) -> None:
        """Every command has a one-line help and a description for its --help."""
        parser = build_parser()
        helps = {
            a.dest: a.help
            for a in parser._actions
            if isinstance(a, argparse._SubParsersAction)
            for a in a._choices_actions
        }
        for name, sub in _subparsers(parser).items():
            if name in OWNED:
                assert helps[name], name
                assert sub.description, name

    def test_options_described_with_default(self) -> None:
        """Every option of the owned commands says what it does and its default."""
        parser = build_parser()
        commands = _subparsers(parser)
        for name in (None, *OWNED):
            sub = parser if name is None else commands[name]
            for action in sub._actions:
                if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                assert action.help, (name, action.dest)
                if action.option_strings and not isinstance(action, argparse._VersionAction):
                    assert "default" in action.help.lower(), (name, action.dest, action.help)

    def test_help_text(self, backend: ModuleType) -> None:
        """info --help shows the descriptions, and exits 0."""
        proc = zc(backend, "info", "--help")
        assert proc.returncode == 0, proc.stderr
        assert "default: aligned text" in proc.stdout
        assert "Print what a bug report needs" in proc.stdout

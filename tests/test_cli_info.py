"""``python -m zerocopy info``: backend, Python, kernel, features and limits.

The command runs in a child interpreter with ZEROCOPY_BACKEND set to the
backend under test; its figures are checked against the same facts read
here (/proc, getrlimit, platform, the in-process feature probe).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from conftest import only_backend
from zerocopy import _backend, _constants

SIX = sorted(_constants.FEATURE_NAMES)


def _run(*args: str, backend: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env[_backend.ENV_VAR] = backend
    return subprocess.run(
        [sys.executable, "-m", "zerocopy", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _proc(name: str) -> str:
    with open(f"/proc/sys/{name}") as f:
        return f.read().strip()


def _limit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value


def _shown(value: int) -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{value} bytes ({value // 1024} KiB)"


def _rows(text: str) -> dict[str, str]:
    """Parse 'key   value' lines; feature lines are indented two spaces."""
    rows = {}
    for line in text.splitlines():
        if line == "features:":
            continue
        indent = "  " if line.startswith("  ") else ""
        key, _, value = line.strip().partition("  ")
        rows[indent + key] = value.strip()
    return rows


@pytest.fixture
def text(backend: ModuleType, tmp_path: Path) -> dict[str, str]:
    """`python -m zerocopy info` on the backend under test, parsed."""
    proc = _run("info", backend=backend.NAME, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "features:\n" in proc.stdout
    return _rows(proc.stdout)


@pytest.fixture
def data(backend: ModuleType, tmp_path: Path) -> dict[str, Any]:
    """`python -m zerocopy info --json` on the backend under test, parsed."""
    proc = _run("info", "--json", backend=backend.NAME, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


class TestInfoText:
    def test_backend_and_versions(self, backend: ModuleType, text: dict[str, str]) -> None:
        """The backend in use, zerocopy's, Python's and the kernel's versions are shown."""
        assert text["backend"] == backend.NAME
        assert text["zerocopy"] == zerocopy.__version__
        assert text["python"].startswith(
            f"{platform.python_implementation()} {platform.python_version()} ("
        )
        assert text["kernel"] == f"{platform.release()} {platform.machine()}"

    def test_every_feature_yes_or_no(self, backend: ModuleType, text: dict[str, str]) -> None:
        """Each of the six features is listed with yes/no, matching FEATURES for that backend."""
        features = _backend.features(backend)
        shown = {k.strip(): v for k, v in text.items() if k.startswith("  ")}
        assert sorted(shown) == SIX
        assert shown == {name: "yes" if name in features else "no" for name in SIX}

    def test_limits(self, text: dict[str, str]) -> None:
        """pipe-max-size, optmem_max and the memlock limit match /proc and getrlimit."""
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        assert text["pipe-max-size"] == _proc("fs/pipe-max-size")
        assert text["optmem_max"] == _proc("net/core/optmem_max")
        assert text["memlock limit"] == f"{_shown(soft)} (hard {_shown(hard)})"

    def test_compiled_module_state(self, text: dict[str, str]) -> None:
        """The compiled module's state is reported whatever the backend."""
        try:
            _backend.load("cffi")
            expected = "loaded"
        except ImportError as exc:
            expected = f"unavailable: {exc}"
        assert text["compiled module"] == expected


class TestInfoJson:
    def test_matches_this_process(self, backend: ModuleType, data: dict[str, Any]) -> None:
        """--json gives the same facts as plain data."""
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        features = _backend.features(backend)
        assert data["backend"] == backend.NAME
        assert data["features"] == {name: name in features for name in SIX}
        assert data["kernel"] == platform.release()
        assert data["pipe_max_size"] == int(_proc("fs/pipe-max-size"))
        assert data["optmem_max"] == int(_proc("net/core/optmem_max"))
        assert data["memlock_limit"] == {"soft": _limit(soft), "hard": _limit(hard)}
        assert data["executable"] == sys.executable

    def test_all_six_on_cffi(self, backend: ModuleType, data: dict[str, Any]) -> None:
        """On cffi (Linux >= 4.14, no seccomp) all six features are true; os lacks two."""
        if backend.NAME == "os":
            assert data["features"]["tee"] is False
            assert data["features"]["msg_zerocopy"] is False
            return
        with open("/proc/self/status") as f:
            seccomp = [line.split()[1] for line in f if line.startswith("Seccomp:")]
        major, minor = (int(x) for x in platform.release().split(".")[:2])
        if (major, minor) < (4, 14) or seccomp != ["0"]:
            pytest.skip(f"kernel {platform.release()} (seccomp {seccomp}) may lack features")
        assert data["features"] == dict.fromkeys(SIX, True)

    def test_collect_in_process(self, backend: ModuleType) -> None:
        """info.collect() in this process reports the backend the fixture made current."""
        from zerocopy._cli import info

        got = info.collect()
        assert got["backend"] == backend.NAME
        assert got["features"] == {name: name in zerocopy.FEATURES for name in SIX}


class TestCommandLine:
    def test_no_command(self, tmp_path: Path) -> None:
        """Without a command, usage goes to stderr and the exit status is 2."""
        proc = _run(backend="os", cwd=tmp_path)
        assert proc.returncode == 2
        assert "usage: python -m zerocopy" in proc.stderr
        assert proc.stdout == ""

    def test_unknown_command(self, tmp_path: Path) -> None:
        """An unknown command is a usage error (exit status 2)."""
        proc = _run("nonsense", backend="os", cwd=tmp_path)
        assert proc.returncode == 2
        assert "invalid choice" in proc.stderr

    def test_help_lists_info(self, tmp_path: Path) -> None:
        """--help lists the info command and exits 0."""
        proc = _run("--help", backend="os", cwd=tmp_path)
        assert proc.returncode == 0
        assert "info" in proc.stdout


@pytest.fixture
def cffi_backend() -> Iterator[ModuleType]:
    """The compiled module loads (or the test is deselected on the os backend)."""
    yield from only_backend("cffi")


class TestRequireExtension:
    def test_loaded_exits_zero(self, cffi_backend: ModuleType, tmp_path: Path) -> None:
        """--require-extension exits 0 and says nothing more when the compiled module loads."""
        for args in (["info", "--require-extension"], ["info", "--json", "--require-extension"]):
            proc = _run(*args, backend="auto", cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            assert proc.stderr == ""
        data = json.loads(proc.stdout)
        assert data["compiled_module"] == "loaded"
        assert data["rebuild_command"] is None
        assert "rebuild with" not in _run("info", backend="auto", cwd=tmp_path).stdout

    def test_unavailable_exits_one(self, tmp_path: Path) -> None:
        """No compiled module: --require-extension exits 1 and gives the rebuild command."""
        from zerocopy import _extension

        # A sitecustomize that hides the compiled module, as a build without a
        # compiler leaves it; info still prints everything else.
        (tmp_path / "sitecustomize.py").write_text(
            "import sys\nsys.modules['zerocopy._zerocopy_cffi'] = None\n", encoding="utf-8"
        )
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, _backend.ENV_VAR: "os"}
        proc = subprocess.run(
            [sys.executable, "-m", "zerocopy", "info", "--require-extension"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1
        rows = _rows(proc.stdout)
        assert rows["compiled module"].startswith("unavailable: zerocopy's compiled module is not")
        assert rows["rebuild with"] == _extension.rebuild_command()
        assert "--no-cache-dir" in rows["rebuild with"]
        assert proc.stderr.startswith("zerocopy info: --require-extension: the compiled module")
        assert proc.stderr.rstrip().endswith(_extension.rebuild_command())

"""Installing without a C compiler.

``CC=false pip install .`` must succeed, warn that the extension was not
built, and give a package that runs on the os backend (with a RuntimeWarning
at import); with ``ZEROCOPY_REQUIRE_EXTENSION=1`` the same install must fail.

The repository is copied first (without build outputs and compiled modules,
so the editable install's ``.so`` cannot sneak in) and installed with
``pip install --target``, exactly as a user would run ``pip install .``:
with build isolation, so pip fetches setuptools and cffi for the build from
the package index or its cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "*.o",
    "_zerocopy_cffi.c",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "_build",
)

_INDEX_DOWN = ("Could not find a version that satisfies", "No matching distribution found")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "ZEROCOPY_BACKEND",
        "ZEROCOPY_REQUIRE_EXTENSION",
        "ZEROCOPY_CFLAGS",
        "ZEROCOPY_LDFLAGS",
        "PYTHONPATH",
        "PYTHONWARNINGS",
    ):
        env.pop(name, None)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


def _pip_install(tmp: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    if not (ROOT / "setup.py").is_file() or not (ROOT / "csrc").is_dir():
        pytest.skip(f"{ROOT} is not a source checkout (no setup.py or csrc/)")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_IGNORE)
    assert not list(source.rglob("*.so"))
    target = tmp / "target"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-v",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        env=_env(CC="false", **extra),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(text in output for text in _INDEX_DOWN):
        pytest.skip("pip could not fetch the build requirements (setuptools, cffi)")
    return proc, target


def _python(code: str, target: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(PYTHONPATH=str(target), **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """zerocopy installed with CC=false into a --target directory."""
    return _pip_install(tmp_path_factory.mktemp("nocc"))


class TestNoCompiler:
    def test_install_succeeds_with_warning(
        self, installed: tuple[subprocess.CompletedProcess[str], Path]
    ) -> None:
        """CC=false pip install succeeds and says the extension was not built."""
        proc, target = installed
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        assert "building 'zerocopy._zerocopy_cffi' extension" in output
        assert "*** WARNING: zerocopy's C extension could not be built" in output
        assert "ZEROCOPY_REQUIRE_EXTENSION=1" in output
        assert (target / "zerocopy" / "__init__.py").is_file()
        assert (target / "zerocopy" / "py.typed").is_file()
        assert not list(target.rglob("*.so"))

    def test_imports_on_os_backend(
        self, installed: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
    ) -> None:
        """The install imports, runs on the os backend and warns with a RuntimeWarning."""
        proc, target = installed
        assert proc.returncode == 0
        child = _python(
            """
            import os, zerocopy
            print(zerocopy.BACKEND)
            print(zerocopy.__file__)
            print(",".join(sorted(zerocopy.FEATURES)))
            with open("a", "wb") as f:
                f.write(b"no compiler needed")
            with open("a", "rb") as f, open("b", "wb") as g:
                print(zerocopy.copy_file_range(f, g, 100), zerocopy.sendfile(g, f, 0, 2))
            with open("b", "rb") as g:
                print(g.read().decode())
            """,
            target,
            tmp_path,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.splitlines() == [
            "os",
            str(target / "zerocopy" / "__init__.py"),
            "copy_file_range,sendfile,splice,vmsplice",
            "18 2",
            "no compiler neededno",
        ]
        assert "RuntimeWarning: zerocopy is using its os backend" in child.stderr
        assert "compiled module is not available" in child.stderr

    def test_cffi_backend_refused(
        self, installed: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
    ) -> None:
        """Asking that install for the cffi backend raises ImportError with the reason."""
        proc, target = installed
        assert proc.returncode == 0
        child = _python("import zerocopy", target, tmp_path, ZEROCOPY_BACKEND="cffi")
        assert child.returncode == 1
        assert "ImportError: zerocopy's compiled module is not available" in child.stderr

    def test_info_reports_os(
        self, installed: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
    ) -> None:
        """python -m zerocopy info on that install reports the os backend and why."""
        proc, target = installed
        assert proc.returncode == 0
        child = subprocess.run(
            [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "zerocopy", "info", "--json"],
            env=_env(PYTHONPATH=str(target)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        assert '"backend": "os"' in child.stdout
        assert '"compiled_module": "unavailable: ' in child.stdout


class TestRequireExtension:
    def test_failed_compile_is_fatal(self, tmp_path: Path) -> None:
        """With ZEROCOPY_REQUIRE_EXTENSION=1 a failed compile fails the install."""
        proc, target = _pip_install(tmp_path, ZEROCOPY_REQUIRE_EXTENSION="1")
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        # It failed for the right reason: the compiler, not anything else.
        assert "building 'zerocopy._zerocopy_cffi' extension" in output
        assert "'false'" in output
        assert "*** WARNING" not in output
        assert not (target / "zerocopy").exists()

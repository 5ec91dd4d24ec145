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

import json
import os
import shlex
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

#: The rebuild command's fixed part: this interpreter's pip, past the cache.
_REBUILD = ["-m", "pip", "install", "--force-reinstall", "--no-deps", "--no-cache-dir"]

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
    args = ["install", "-v", "--no-deps", "--target", str(target), str(source)]
    proc = _run_pip(Path(sys.executable), args, _env(CC="false", **extra), tmp)
    return proc, target


def _run_pip(
    python: Path, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``python -m pip *args``; skips (saying so) when pip cannot reach a package index."""
    proc = subprocess.run(
        [str(python), "-m", "pip", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(text in output for text in _INDEX_DOWN):
        pytest.skip("pip could not fetch cffi or the build requirements (setuptools, cffi)")
    return proc


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
        # The cure: a compiler, then a rebuild that bypasses pip's wheel cache.
        assert "install a C compiler and the Python headers" in output
        assert "pip install --force-reinstall --no-deps --no-cache-dir ." in output
        assert "python -m zerocopy info` prints the exact command" in output
        assert (target / "zerocopy" / "__init__.py").is_file()
        assert (target / "zerocopy" / "py.typed").is_file()
        assert not list(target.rglob("*.so"))
        # The reason travels with the package, for the import warning and info.
        marker = (target / "zerocopy" / "_extension_missing.txt").read_text(encoding="utf-8")
        assert marker.startswith("CompileError: ")
        assert "'false'" in marker

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
        assert "the C extension was not built at install time (CompileError: " in child.stderr
        assert "--no-cache-dir" in child.stderr

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
        data = json.loads(child.stdout)
        assert data["extension_build_failure"].startswith("CompileError: ")
        # pip recorded the source directory (PEP 610): rebuild from exactly there.
        assert data["rebuild_command"] == shlex.join(
            [sys.executable, *_REBUILD, str(target.parent / "source")]
        )

    def test_require_extension_fails(
        self, installed: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
    ) -> None:
        """info --require-extension on that install exits 1 and names the rebuild command."""
        proc, target = installed
        assert proc.returncode == 0
        child = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore::RuntimeWarning",
                "-m",
                "zerocopy",
                "info",
                "--require-extension",
            ],
            env=_env(PYTHONPATH=str(target)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 1
        assert "--require-extension: the compiled module is not loaded" in child.stderr
        assert f"--no-cache-dir {target.parent / 'source'}" in child.stderr


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


def _info(python: Path, cwd: Path) -> dict[str, object]:
    child = subprocess.run(
        [str(python), "-W", "ignore::RuntimeWarning", "-m", "zerocopy", "info", "--json"],
        env=_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)  # type: ignore[no-any-return]


class TestPipCache:
    def test_rebuild_command_cures_a_cached_wheel(self, tmp_path: Path) -> None:
        """After a compiler-less build pip reuses its cached wheel; info's command rebuilds."""
        if not (ROOT / "setup.py").is_file() or not (ROOT / "csrc").is_dir():
            pytest.skip(f"{ROOT} is not a source checkout (no setup.py or csrc/)")
        source = tmp_path / "source"
        shutil.copytree(ROOT, source, ignore=_IGNORE)
        # An sdist, as pip would download it: pip caches the wheels it builds
        # from a named sdist (an index's, or `name @ URL`; never a bare path
        # or a local directory) and installs the cached one next time.
        built = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, setuptools.build_meta as b\nprint(b.build_sdist(sys.argv[1]))",
                str(tmp_path / "sdist"),
            ],
            env=_env(),
            cwd=source,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        sdist = tmp_path / "sdist" / built.stdout.split()[-1]
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        cache = tmp_path / "pip-cache"

        def pip(*args: str, **extra: str) -> None:
            env = _env(PIP_CACHE_DIR=str(cache), **extra)
            proc = _run_pip(python, list(args), env, tmp_path)
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

        pip("install", "cffi>=1.17")
        requirement = f"zerocopy-io @ {sdist.as_uri()}"
        pip("install", "--no-deps", requirement, CC="false")
        first = _info(python, tmp_path)
        assert first["backend"] == "os"
        assert str(first["extension_build_failure"]).startswith("CompileError: ")
        # The compiler is back, but pip installs the wheel it cached: still os.
        pip("install", "--force-reinstall", "--no-deps", requirement)
        second = _info(python, tmp_path)
        assert second["backend"] == "os", "pip no longer reuses its cached wheel"
        command = str(second["rebuild_command"])
        assert command == shlex.join([str(python), *_REBUILD, str(sdist)])
        # info's own command, as a user would paste it.
        proc = subprocess.run(
            shlex.split(command),
            env=_env(PIP_CACHE_DIR=str(cache)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        third = _info(python, tmp_path)
        assert third["backend"] == "cffi"
        assert third["compiled_module"] == "loaded"
        assert third["extension_build_failure"] is None

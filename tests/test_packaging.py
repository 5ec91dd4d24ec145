"""The distribution's metadata, sdist and wheel tag: what PyPI and pip will see.

The wheel build, its manylinux repair and the runs on each CPython are
scripts/build-wheels and scripts/test-wheel (run by .ci/run); these tests pin
what the source tree itself decides.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"

#: What an unpacked sdist must hold for its test suite to pass: the files the
#: tests read (the docs they build, the CI script and README they compare,
#: the benchmarks and scripts they run), besides the package and its C sources.
SDIST_MUST_HOLD = [
    "setup.py",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "csrc/ffi_build.py",
    "csrc/zerocopy.c",
    "csrc/zerocopy.h",
    "src/zerocopy/__init__.py",
    "src/zerocopy/py.typed",
    "src/zerocopy/_bench/schema.json",
    "tests/conftest.py",
    "docs/conf.py",
    "docs/install.md",
    ".ci/run",
    "benchmarks/README.md",
    "benchmarks/kit/__init__.py",
    "benchmarks/kit/peer.py",
    "scripts/build-wheels",
    "scripts/test-wheel",
]


def _project() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in requirements}


def _source_tree(tmp_path: Path) -> Path:
    """A copy of the checkout without build outputs, as a clean clone has it."""
    if not (ROOT / "setup.py").is_file() or not (ROOT / "csrc").is_dir():
        pytest.skip(f"{ROOT} is not a source checkout (no setup.py or csrc/)")
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.o"
        ),
    )
    return source


def _build(source: Path, hook: str, out: Path) -> tuple[str, str]:
    """Run one PEP 517 hook of setuptools on *source*; return (file name, its output)."""
    code = f"import sys, setuptools.build_meta as b; print(b.{hook}(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return proc.stdout.split()[-1], output


class TestMetadata:
    def test_license_is_pep639(self) -> None:
        """license is an SPDX expression with license-files; no license classifier beside it."""
        project = _project()
        assert project["license"] == "MIT"
        assert project["license-files"] == ["LICENSE"]
        assert (ROOT / "LICENSE").is_file()
        assert not [c for c in project["classifiers"] if c.startswith("License ::")]

    def test_python_classifiers_match_what_ci_tests(self) -> None:
        """A classifier per CPython from 3.11 to 3.13: the ones scripts/test-wheel runs."""
        project = _project()
        assert project["requires-python"] == ">=3.11"
        shown = {c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.search(r":: 3\.\d+$", c)}
        assert shown == {"3.11", "3.12", "3.13"}
        script = (ROOT / "scripts" / "test-wheel").read_text(encoding="utf-8")
        assert "versions=(3.11 3.12 3.13)" in script
        assert "Operating System :: POSIX :: Linux" in project["classifiers"]

    def test_urls(self) -> None:
        """[project.urls] names the source, issues, docs and changelog under one address."""
        urls = _project()["urls"]
        assert set(urls) == {"Source", "Issues", "Documentation", "Changelog"}
        base = urls["Source"]
        assert base.startswith("https://")
        assert all(url.startswith(base) for url in urls.values())

    def test_test_extra_holds_only_what_tests_need(self) -> None:
        """`test` has no docs or plotting tools; `docs`, `plot` and `dev` carry them.

        `docs` also pulls in the integration extras (the API page's autodoc
        imports zerocopy.aiohttp, zerocopy.uvicorn, zerocopy.starlette and
        zerocopy.anyio) and the furo theme.
        """
        extras = _project()["optional-dependencies"]
        test = _names(extras["test"])
        assert not test & {"sphinx", "myst-parser", "furo", "matplotlib"}
        assert _names(extras["docs"]) == {"sphinx", "myst-parser", "furo", "zerocopy-io"}
        assert "zerocopy-io[aiohttp,uvicorn,starlette,anyio]" in extras["docs"]
        assert _names(extras["plot"]) == {"matplotlib"}
        assert extras["dev"] == ["zerocopy-io[test,docs,plot,lint]"]

    def test_module_level_test_imports_are_in_the_test_extra(self) -> None:
        """Every third-party module a test file imports at the top comes with `test`."""
        extras = _project()["optional-dependencies"]
        provided = _names(extras["test"]) | {"zerocopy-io", "cffi"}
        if "zerocopy-io" in provided:
            provided |= _names(extras["lint"])  # test pulls in zerocopy-io[lint]
        local = {p.stem for p in (ROOT / "tests").iterdir()} | {"zerocopy", "_cffi_backend"}
        local |= {p.stem for p in (ROOT / "benchmarks").iterdir()}  # the kit, the scripts
        imported: dict[str, str] = {}
        for path in sorted((ROOT / "tests").rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        imported.setdefault(top, path.name)
        missing = {m: f for m, f in imported.items() if m.replace("_", "-") not in provided}
        assert not missing, f"imported by tests but not in the test extra: {missing}"

    def test_build_requires_pep639_setuptools(self) -> None:
        """The build needs setuptools 77 (PEP 639 fields) and cffi."""
        with PYPROJECT.open("rb") as f:
            requires = tomllib.load(f)["build-system"]["requires"]
        assert requires == ["setuptools>=77", "cffi>=1.17"]


class TestCibuildwheel:
    def test_config(self) -> None:
        """x86_64 and aarch64 manylinux wheels, the extension required, a smoke test per wheel."""
        with PYPROJECT.open("rb") as f:
            config = tomllib.load(f)["tool"]["cibuildwheel"]
        assert config["linux"]["archs"] == ["x86_64", "aarch64"]
        assert config["build"] == ["cp3*-manylinux_*"]
        assert config["environment"]["ZEROCOPY_REQUIRE_EXTENSION"] == "1"
        assert "--only-plat" in config["linux"]["repair-wheel-command"]
        commands = config["test-command"]
        assert commands[0] == "python -m zerocopy info --require-extension"
        # The smoke test's files exist and travel to the test environment.
        tested = [w for c in commands for w in c.split() if w.startswith("tests/")]
        assert tested
        assert all((ROOT / path).is_file() for path in tested), tested
        assert "tests" in config["test-sources"]


@pytest.mark.slow
class TestBuild:
    def test_sdist_holds_what_the_tests_read(self, tmp_path: Path) -> None:
        """The sdist carries docs/, .ci/, benchmarks/, scripts/ and tests/, and no build output."""
        source = _source_tree(tmp_path)
        name, output = _build(source, "build_sdist", tmp_path / "out")
        assert "DeprecationWarning" not in output, output
        with tarfile.open(tmp_path / "out" / name) as sdist:
            members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
        missing = [path for path in SDIST_MUST_HOLD if path not in members]
        assert not missing, missing
        assert not [m for m in members if m.endswith((".so", ".o", "_extension_missing.txt"))]
        assert not [m for m in members if m.startswith(("docs/_build/", "benchmarks/results/"))]

    def test_wheel_tag_and_metadata(self, tmp_path: Path) -> None:
        """The wheel is cp311-abi3 (version-specific where free-threaded) with PEP 639 metadata."""
        source = _source_tree(tmp_path)
        name, output = _build(source, "build_wheel", tmp_path / "out")
        assert "DeprecationWarning" not in output, output
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            tag = "cp{0}{1}t-cp{0}{1}t".format(*sys.version_info[:2])
        else:
            tag = "cp311-abi3"
        assert re.fullmatch(rf"zerocopy_io-[^-]+-{tag}-linux_\w+\.whl", name), name
        if "*** WARNING: zerocopy's C extension could not be built" in output:
            reason = "no C compiler here: the wheel has no extension to check"
            print(reason)
            pytest.skip(reason)
        with zipfile.ZipFile(tmp_path / "out" / name) as wheel:
            names = wheel.namelist()
            info = next(n for n in names if n.endswith(".dist-info/METADATA"))
            metadata = wheel.read(info).decode()
        assert [n for n in names if re.fullmatch(r"zerocopy/_zerocopy_cffi\..*so", n)]
        assert "License-Expression: MIT" in metadata
        assert re.search(r"^License-File: LICENSE$", metadata, re.M)
        assert not re.search(r"^Classifier: License ::", metadata, re.M)
        assert re.search(r"^Project-URL: Source, https://", metadata, re.M)

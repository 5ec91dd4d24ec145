"""The documentation: the Sphinx site builds, and the README's commands and
example are the ones that really work."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

_VENV = "python3 -m venv .venv && . .venv/bin/activate"
#: The README's first command: install, then run the main job.
MAIN_COMMAND = f"{_VENV} && pip install . && python -m zerocopy info"
#: The README's second command: install the test extras, run the whole suite.
TEST_COMMAND = f"{_VENV} && pip install -q '.[test]' && python -m pytest"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """Return (language, body) for each fenced block of a Markdown file, in order."""
    return [(m[1], m[2]) for m in _FENCE.finditer(path.read_text(encoding="utf-8"))]


def _missing(*modules: str) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


class TestReadmeCommands:
    def test_first_two_blocks_are_the_two_commands(self) -> None:
        """The README opens with the install-and-run line, then the test line."""
        blocks = _fenced_blocks(README)[:2]
        assert [lang for lang, _ in blocks] == ["sh", "sh"]
        assert [body.strip() for _, body in blocks] == [MAIN_COMMAND, TEST_COMMAND]

    def test_test_command_is_the_ci_line(self) -> None:
        """The README's test command is, byte for byte, a line of .ci/run."""
        lines = CI_RUN.read_text(encoding="utf-8").splitlines()
        assert TEST_COMMAND in lines

    def test_docs_show_the_same_test_command(self) -> None:
        """Every copy of the test command in the docs is the .ci/run line."""
        pattern = re.compile(r"^.*pip install[^\n]*'\.\[test\]'.*python -m pytest.*$", re.M)
        for page in sorted((ROOT / "docs").glob("*.md")):
            for line in pattern.findall(page.read_text(encoding="utf-8")):
                assert line.strip() == TEST_COMMAND, page.name

    def test_main_command_runs(self) -> None:
        """The main job of the README's first command exits 0 and names the backend."""
        job = MAIN_COMMAND.rsplit("&& ", 1)[1].split()
        assert job[:3] == ["python", "-m", "zerocopy"]
        result = subprocess.run(
            [sys.executable, *job[1:]], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert re.search(r"^backend\s+(cffi|os)$", result.stdout, re.M), result.stdout


class TestReadmeExample:
    def test_example_runs(self, backend: ModuleType, tmp_path: Path) -> None:
        """The README's Python example runs to completion on each backend."""
        examples = [body for lang, body in _fenced_blocks(README) if lang == "python"]
        assert examples, "README.md has no python example"
        script = tmp_path / "example.py"
        script.write_text(examples[0], encoding="utf-8")
        env = {**os.environ, "ZEROCOPY_BACKEND": backend.NAME}
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert f"backend: {backend.NAME} " in result.stdout
        assert "copied 262144 bytes" in result.stdout


class TestChangelog:
    def test_has_unreleased_section(self) -> None:
        """CHANGELOG.md keeps an Unreleased section, and the docs include it."""
        text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
        assert re.search(r"^## \[Unreleased\]$", text, re.M)
        assert "{include} ../CHANGELOG.md" in (ROOT / "docs" / "changelog.md").read_text(
            encoding="utf-8"
        )


class TestSphinxBuild:
    def test_docs_build_without_warnings(self, tmp_path: Path) -> None:
        """The Sphinx site builds with warnings as errors."""
        missing = _missing("sphinx", "myst_parser")
        if missing:
            reason = (
                f"cannot build the docs: {', '.join(missing)} not installed (pip install '.[docs]')"
            )
            print(reason)
            pytest.skip(reason)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sphinx",
                "-W",
                "--keep-going",
                "-b",
                "html",
                "-d",
                str(tmp_path / "doctrees"),
                str(ROOT / "docs"),
                str(tmp_path / "html"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        for page in ("index", "install", "backends", "api", "changelog"):
            assert (tmp_path / "html" / f"{page}.html").is_file(), page

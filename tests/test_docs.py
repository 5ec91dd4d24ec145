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
MAIN_COMMAND = f"{_VENV} && pip install . && python -m zerocopy bench"
#: Appended to the main job when the test runs it: the same code paths, tiny.
_QUICK_BENCH = ["--size", "256K", "--repeat", "1"]
#: The README's second command: install the test, docs and plot extras (the
#: docs build and the --plot test need the last two), run the whole suite.
TEST_COMMAND = f"{_VENV} && pip install -q '.[test,docs,plot]' && python -m pytest"

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
        pattern = re.compile(r"^.*pip install[^\n]*'\.\[test[^\n]*python -m pytest.*$", re.M)
        for page in sorted((ROOT / "docs").glob("*.md")):
            for line in pattern.findall(page.read_text(encoding="utf-8")):
                assert line.strip() == TEST_COMMAND, page.name

    def test_main_command_runs(self, tmp_path: Path) -> None:
        """The README's main job (bench, here on a tiny size) exits 0 and reports each scenario."""
        job = MAIN_COMMAND.rsplit("&& ", 1)[1].split()
        assert job[:4] == ["python", "-m", "zerocopy", "bench"]
        result = subprocess.run(
            [sys.executable, *job[1:], *_QUICK_BENCH, "--workdir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert re.search(r"^zerocopy \S+ bench on .*backend (cffi|os)$", result.stdout, re.M), (
            result.stdout
        )
        for scenario in ("file-file", "file-socket", "socket-socket", "memory-socket"):
            # A winner only when its range clears the others' (else a tie): bench's verdicts.
            verdict = rf"^{scenario}: (\S+ won|tie between )"
            assert re.search(verdict, result.stdout, re.M), result.stdout


def _readme_python() -> list[str]:
    return [body for lang, body in _fenced_blocks(README) if lang == "python"]


def _run_snippet(code: str, backend: ModuleType, tmp_path: Path) -> str:
    """Run *code* as a script on *backend*, warnings as errors; return its stdout."""
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "ZEROCOPY_BACKEND": backend.NAME, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class TestReadmeExamples:
    def test_every_python_block_is_checked(self) -> None:
        """The README has exactly the Python snippets these tests run: tour, low-level example."""
        blocks = _readme_python()
        assert len(blocks) == 2
        assert "zerocopy.send_file(" in blocks[0]
        assert "zerocopy.relay(" in blocks[0]
        assert "zerocopy.copy_file_range(" in blocks[1]

    def test_tour_runs(self, backend: ModuleType, tmp_path: Path) -> None:
        """The tour (copyfileobj, send_file, relay, ZeroCopySender) runs on each backend."""
        out = _run_snippet(_readme_python()[0], backend, tmp_path)
        size = 4 << 20
        assert re.search(rf"^copyfileobj: {size} bytes by \w+$", out, re.M), out
        assert f"send_file: {size} bytes; relay: ({size}, {size})" in out, out

    def test_tour_output_is_shown(self) -> None:
        """The output printed under the tour is what the tour prints on ext4."""
        blocks = _fenced_blocks(README)
        i = next(n for n, (lang, body) in enumerate(blocks) if lang == "python")
        lang, shown = blocks[i + 1]
        assert lang == "text"
        size = 4 << 20
        assert shown.splitlines() == [
            f"copyfileobj: {size} bytes by copy_file_range",
            f"send_file: {size} bytes; relay: ({size}, {size})",
        ]

    def test_lowlevel_example_runs(self, backend: ModuleType, tmp_path: Path) -> None:
        """The README's low-level example runs to completion on each backend."""
        out = _run_snippet(_readme_python()[1], backend, tmp_path)
        assert f"backend: {backend.NAME} " in out
        assert "copied 262144 bytes" in out


QUICKSTART = ROOT / "docs" / "quickstart.md"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
REFERENCE = ROOT / "benchmarks" / "reference.json"


def _quickstart_python() -> list[str]:
    return [body for lang, body in _fenced_blocks(QUICKSTART) if lang == "python"]


class TestQuickstart:
    def test_tour_is_the_readmes(self) -> None:
        """The quickstart's tour is the README's, byte for byte."""
        assert _quickstart_python()[0] == _readme_python()[0]

    def test_every_python_block_runs(self, backend: ModuleType, tmp_path: Path) -> None:
        """Every Python block of the quickstart runs, in a fresh directory, on each backend."""
        blocks = _quickstart_python()
        assert len(blocks) == 3
        outputs = []
        for n, code in enumerate(blocks):
            workdir = tmp_path / str(n)
            workdir.mkdir()
            outputs.append(_run_snippet(code, backend, workdir))
        size = 4 << 20
        assert f"send_file: {size} bytes; relay: ({size}, {size})" in outputs[0], outputs[0]
        assert "copytree: ['a.bin', 'sub']" in outputs[1], outputs[1]
        assert "aio.send_file: 1048576 bytes; the server read 1048576" in outputs[2], outputs[2]

    def test_install_lines_work_from_a_clone(self) -> None:
        """No page tells a reader of the quickstart or README to install a release
        that does not exist yet: their pip lines install the clone."""
        for path in (README, QUICKSTART):
            for lang, body in _fenced_blocks(path):
                for line in body.splitlines():
                    if lang == "sh" and "pip install" in line:
                        assert "zerocopy-io" not in line, (path.name, line)


def _load_readme_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "readme_table", ROOT / "benchmarks" / "readme_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(text: str) -> dict[str, str]:
    """Each heading of docs/benchmarks.md ('## A', or 'A / B' for '### B' under it)
    and the text under it, up to the next heading of its level or above."""
    sections: dict[str, str] = {}
    heads = list(re.finditer(r"^(##|###) (.+)$", text, re.M))
    parent = ""
    for i, head in enumerate(heads):
        level, title = head[1], head[2].strip()
        if level == "##":
            parent, key = title, title
            ends = [h.start() for h in heads[i + 1 :] if h[1] == "##"]
        else:
            key = f"{parent} / {title}"
            ends = [h.start() for h in heads[i + 1 :]]
        sections[key] = text[head.end() : ends[0] if ends else len(text)]
    return sections


class TestMeasuredTable:
    def test_readme_table_is_the_reference(self) -> None:
        """The README's Measured table is what benchmarks/readme_table.py makes of
        benchmarks/reference.json (fix: python benchmarks/readme_table.py --write)."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "readme_table.py"), "--check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_check_fails_when_they_differ(self, tmp_path: Path) -> None:
        """--check exits 1 when one figure of the README differs from the JSON."""
        table = _load_readme_table()
        readme = tmp_path / "README.md"
        text = README.read_text(encoding="utf-8")
        row = table.load()["rows"][0]["result"]
        assert text.count(row) >= 1
        readme.write_text(text.replace(row, row + " (edited)", 1), encoding="utf-8")
        assert table.main(["--check", "--readme", str(readme)]) == 1
        assert table.main(["--write", "--readme", str(readme)]) == 0
        assert readme.read_text(encoding="utf-8") == text

    def test_every_figure_is_quoted_from_its_dated_section(self) -> None:
        """Each row names a section of docs/benchmarks.md whose heading carries the
        row's date, and every number of its result appears in that section."""
        data = _load_readme_table().load()
        sections = _sections(BENCHMARKS.read_text(encoding="utf-8"))
        dates = set()
        for row in data["rows"]:
            assert row["section"] in sections, row["section"]
            assert row["date"] in row["section"].split(" / ")[0], row
            dates.add(row["date"])
            for number in re.findall(r"\d[\d,]*(?:\.\d+)?", row["result"]):
                assert number in sections[row["section"]], (number, row["section"])
        assert data["updated"] == max(dates)

    def test_every_benchmarks_section_with_figures_is_dated(self) -> None:
        """docs/benchmarks.md: every top-level section holding a table of figures
        names its day in its heading, apart from the machine and method notes."""
        undated = {"Machine", "How to read the figures", "How CPU is counted"}
        text = BENCHMARKS.read_text(encoding="utf-8")
        for title, body in _sections(text).items():
            if " / " in title or title in undated or "\n| " not in body:
                continue
            assert re.search(r"\b20\d\d-\d\d-\d\d\b", title), title


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
        missing = _missing("sphinx", "myst_parser", "furo")
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
        pages = (
            "index",
            "quickstart",
            "install",
            "guide",
            "backends",
            "api",
            "safety",
            "changelog",
        )
        for page in pages:
            assert (tmp_path / "html" / f"{page}.html").is_file(), page

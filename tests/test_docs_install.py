"""Install lines that work from a clone until there is a release (issue 26):
every extra of ``pyproject.toml`` is described in ``docs/install.md``, and no
``pip install 'zerocopy-io[...]'`` is left in the docs or in the messages and
docstrings of ``src``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "docs" / "install.md"


def _extras() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return sorted(project["optional-dependencies"])


def _scanned() -> list[Path]:
    files = [*sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.py"))]
    files += [ROOT / name for name in ("README.md", "CONTRIBUTING.md")]
    return [f for f in files if f.exists()]


class TestInstallPage:
    def test_every_extra_described(self) -> None:
        """Each extra in [project.optional-dependencies] is a definition in install.md."""
        text = INSTALL.read_text(encoding="utf-8")
        described = set(re.findall(r"^`([\w-]+)`\n: \S", text, re.MULTILINE))
        assert set(_extras()) <= described, sorted(set(_extras()) - described)


class TestInstallLines:
    def test_no_unreleased_name_with_extras(self) -> None:
        """No 'zerocopy-io[' in docs or src: that name is not on PyPI yet."""
        found = {}
        for path in _scanned():
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = [n for n, line in enumerate(text.splitlines(), 1) if "zerocopy-io[" in line]
            if lines:
                found[rel] = lines
        assert found == {}

"""What zerocopy says when its compiled module is missing: why, and the command that rebuilds it.

The whole path (a build without a compiler, pip's cache, the rebuild) runs in
tests/test_install.py; these tests pin the pieces: the marker a failed build
leaves, and the pip command for each way pip can have installed zerocopy.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from zerocopy import _extension

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps", "--no-cache-dir"]


class _Dist:
    """A stand-in for importlib.metadata's Distribution: only direct_url.json."""

    def __init__(self, direct_url: dict[str, Any] | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


@pytest.fixture
def installed_from(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make zerocopy look installed with the given PEP 610 record (None: from an index)."""

    def install(direct_url: dict[str, Any] | None, version: str = "9.8.7") -> None:
        monkeypatch.setattr(_extension.metadata, "distribution", lambda name: _Dist(direct_url))
        monkeypatch.setattr(_extension.metadata, "version", lambda name: version)

    return install


class TestRebuildCommand:
    def test_from_index(self, installed_from: Any) -> None:
        """Installed from an index: rebuild that version from its sdist, bypassing the cache."""
        installed_from(None)
        command = shlex.split(_extension.rebuild_command())
        assert command == [*PIP, "--no-binary", "zerocopy-io", "zerocopy-io==9.8.7"]

    def test_from_directory(self, installed_from: Any, tmp_path: Path) -> None:
        """Installed from a local checkout: rebuild from that directory."""
        installed_from({"url": (tmp_path / "my src").as_uri(), "dir_info": {}})
        command = shlex.split(_extension.rebuild_command())
        assert command == [*PIP, str(tmp_path / "my src")]

    def test_editable(self, installed_from: Any, tmp_path: Path) -> None:
        """An editable install is rebuilt editable."""
        installed_from({"url": tmp_path.as_uri(), "dir_info": {"editable": True}})
        command = shlex.split(_extension.rebuild_command())
        assert command == [*PIP, "-e", str(tmp_path)]

    def test_from_local_sdist(self, installed_from: Any, tmp_path: Path) -> None:
        """Installed from an sdist file that still exists: rebuild from that file."""
        sdist = tmp_path / "zerocopy_io-9.8.7.tar.gz"
        sdist.write_bytes(b"")
        installed_from({"url": sdist.as_uri(), "archive_info": {}})
        command = shlex.split(_extension.rebuild_command())
        assert command == [*PIP, str(sdist)]

    @pytest.mark.parametrize("name", ["zerocopy_io-9.8.7.tar.gz", "zerocopy_io-9.8.7-any.whl"])
    def test_gone_sdist_or_wheel_falls_back_to_index(
        self, installed_from: Any, tmp_path: Path, name: str
    ) -> None:
        """A wheel file, or an sdist no longer there, cannot be rebuilt: the index's sdist is."""
        archive = tmp_path / name
        if name.endswith(".whl"):
            archive.write_bytes(b"")
        installed_from({"url": archive.as_uri(), "archive_info": {}})
        assert shlex.split(_extension.rebuild_command())[-1] == "zerocopy-io==9.8.7"

    def test_remote_url_falls_back_to_index(self, installed_from: Any) -> None:
        """A remote URL (VCS or archive) gives the index command, not a URL to fetch again."""
        installed_from({"url": "https://example.org/zerocopy.tar.gz", "archive_info": {}})
        assert shlex.split(_extension.rebuild_command())[-1] == "zerocopy-io==9.8.7"


class TestBuildFailure:
    def test_marker_is_read(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The marker setup.py leaves is the reason reported, and appears in the message."""
        module = tmp_path / "_extension.py"
        (tmp_path / _extension.MARKER).write_text("CompileError: no cc\n", encoding="utf-8")
        monkeypatch.setattr(_extension, "__file__", str(module))
        assert _extension.build_failure() == "CompileError: no cc"
        message = _extension.unavailable(ImportError("No module named 'x'"))
        assert message.startswith("zerocopy's compiled module is not available: No module")
        assert "not built at install time (CompileError: no cc)" in message
        assert message.endswith(_extension.rebuild_command())

    def test_no_marker(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without a marker no build failure is claimed, but the cure is still given."""
        monkeypatch.setattr(_extension, "__file__", str(tmp_path / "_extension.py"))
        assert _extension.build_failure() is None
        message = _extension.unavailable(ImportError("gone"))
        assert "install time" not in message
        assert message.endswith(_extension.rebuild_command())

    def test_names_agree_with_setup(self) -> None:
        """setup.py writes the marker under the name the package reads."""
        setup = (ROOT / "setup.py").read_text(encoding="utf-8")
        assert f'MARKER = "{_extension.MARKER}"' in setup

"""patch_shutil: shutil's functions swapped while active, and put back.

Every test runs on both backends (the ``backend`` fixture).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from conftest import hang_guard
from copykit import payload


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


# --- patch_shutil -------------------------------------------------------------------


class TestPatchShutil:
    """patch_shutil swaps shutil's functions while active, and puts them back."""

    def test_active_and_undone(self, backend: ModuleType, tmp_path: Path) -> None:
        """shutil.copy goes through zerocopy while patched; undo restores it, twice harmlessly."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        src = tmp_path / "src"
        src.write_bytes(payload(500_000))
        patch = zerocopy.patch_shutil()
        try:
            assert shutil.copyfileobj is zerocopy.copyfileobj
            assert shutil.copyfile is zerocopy.copyfile
            method = method_in_thread(lambda: shutil.copy(src, tmp_path / "dst"))
            assert method == "copy_file_range"
            assert (tmp_path / "dst").read_bytes() == src.read_bytes()
        finally:
            patch.undo()
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        patch.undo()
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        # Unpatched, shutil copies by itself: zerocopy never runs in that thread.
        assert method_in_thread(lambda: shutil.copy(src, tmp_path / "dst2")) is None
        assert (tmp_path / "dst2").read_bytes() == src.read_bytes()

    def test_context_manager(self, backend: ModuleType, tmp_path: Path) -> None:
        """As a with block, the patch ends with the block, even on an exception."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        (tmp_path / "a").write_bytes(b"abc")
        inside: list[tuple[bool, str | None]] = []

        def body() -> None:
            with zerocopy.patch_shutil():
                with open(tmp_path / "a", "rb") as fsrc, open(tmp_path / "b", "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst)
                inside.append((shutil.copyfile is zerocopy.copyfile, zerocopy.last_method()))
                raise RuntimeError("leave the block")

        with pytest.raises(RuntimeError, match="leave"):
            body()
        assert inside == [(True, "read")]  # 3 bytes: shutil's loop, which found the end
        assert (shutil.copyfileobj, shutil.copyfile) == originals
        assert (tmp_path / "b").read_bytes() == b"abc"

    def test_nested(self, backend: ModuleType) -> None:
        """Nested patches: shutil stays patched until the outer one ends."""
        originals = (shutil.copyfileobj, shutil.copyfile)
        with zerocopy.patch_shutil():
            with zerocopy.patch_shutil():
                assert shutil.copyfile is zerocopy.copyfile
            assert shutil.copyfile is zerocopy.copyfile
        assert (shutil.copyfileobj, shutil.copyfile) == originals


def method_in_thread(fn: Callable[[], object]) -> str | None:
    """Run *fn* in a new thread and return last_method() as that thread sees it."""
    seen: list[str | None] = []

    def run() -> None:
        fn()
        seen.append(zerocopy.last_method())

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert seen, "the copy in the thread failed"
    return seen[0]

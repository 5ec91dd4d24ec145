"""zerocopy.aio.copyfile and copyfileobj: the blocking copies, off the loop (asyncio, uvloop)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from netkit import MiB, Runner, make_file, payload

# `name as name`: fixtures, re-exported so that linters count them as used (the
# autouse empty_pool applies to the modules that import it).
from netkit import empty_pool as empty_pool
from netkit import run as run
from zerocopy import aio

# --- copyfile and copyfileobj ------------------------------------------------


class TestCopy:
    """aio.copyfile and aio.copyfileobj: the blocking copies, off the loop."""

    def test_copyfile_byte_exact(self, backend: ModuleType, run: Runner, tmp_path: Path) -> None:
        """The copy is byte-exact and the result is dst."""
        data = payload(3 * MiB + 5, 40)
        src = make_file(tmp_path, data)
        dst = tmp_path / "dst.bin"
        assert run(aio.copyfile(src, dst)) == dst
        assert dst.read_bytes() == data

    @pytest.mark.parametrize("case", ["missing", "same", "dst_dir", "dst_parent_missing"])
    def test_copyfile_errors_match(
        self, backend: ModuleType, run: Runner, tmp_path: Path, case: str
    ) -> None:
        """Failures raise the same exception, errno and message as zerocopy.copyfile."""
        src = make_file(tmp_path, b"data")
        dst = tmp_path / "dst.bin"
        if case == "missing":
            src = tmp_path / "nope"
        elif case == "same":
            dst = src
        elif case == "dst_dir":
            dst = tmp_path / "dir"
            dst.mkdir()
        else:
            dst = tmp_path / "no" / "dst.bin"
        with pytest.raises(OSError) as sync_info:  # noqa: PT011 - compared below
            zerocopy.copyfile(src, dst)
        with pytest.raises(type(sync_info.value)) as async_info:
            run(aio.copyfile(src, dst))
        assert type(async_info.value) is type(sync_info.value)
        assert async_info.value.errno == sync_info.value.errno
        assert str(async_info.value) == str(sync_info.value)
        if case == "missing":
            assert isinstance(async_info.value, FileNotFoundError)
        if case == "same":
            assert isinstance(async_info.value, shutil.SameFileError)

    def test_copyfile_symlink(self, backend: ModuleType, run: Runner, tmp_path: Path) -> None:
        """follow_symlinks=False copies the link itself."""
        target = make_file(tmp_path, b"target")
        link = tmp_path / "link"
        link.symlink_to(target)
        dst = tmp_path / "copy"
        run(aio.copyfile(link, dst, follow_symlinks=False))
        assert dst.is_symlink()
        assert os.readlink(dst) == str(target)

    def test_copyfileobj_matches_sync(
        self, backend: ModuleType, run: Runner, tmp_path: Path
    ) -> None:
        """Same bytes, return value and positions as zerocopy.copyfileobj, progress in a thread."""
        data = payload(2 * MiB + 3, 41)
        src = make_file(tmp_path, data)
        seen: list[tuple[int, bool]] = []
        main_thread = threading.get_ident()

        def progress(total: int) -> None:
            seen.append((total, threading.get_ident() == main_thread))

        outcomes = []
        for copy in ("sync", "async"):
            dst = tmp_path / f"{copy}.bin"
            with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
                fsrc.read(7)
                if copy == "sync":
                    n = zerocopy.copyfileobj(fsrc, fdst, count=MiB + 1)
                else:
                    n = run(aio.copyfileobj(fsrc, fdst, count=MiB + 1, progress=progress))
                outcomes.append((n, fsrc.tell(), fdst.tell(), dst.read_bytes()))
        assert outcomes[0] == outcomes[1]
        assert outcomes[1][0] == MiB + 1
        assert outcomes[1][3] == data[7 : 7 + MiB + 1]
        assert seen
        assert seen[-1][0] == MiB + 1
        assert not any(in_main for _, in_main in seen)

    def test_copyfileobj_cancel_stops_worker(self, backend: ModuleType, run: Runner) -> None:
        """Cancelling stops the copy at a chunk, waits for the worker, reports the bytes."""

        class Slow(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                time.sleep(0.005)
                b[:] = b"z" * len(b)
                return len(b)

        dst = io.BytesIO()

        async def main() -> tuple[Any, int]:
            task = asyncio.ensure_future(aio.copyfileobj(Slow(), dst, 4096))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            size = len(dst.getvalue())
            await asyncio.sleep(0.05)
            assert len(dst.getvalue()) == size  # the worker is done with dst
            return info.value, size

        exc, size = run(main())
        assert size > 0
        assert exc.bytes_transferred == size

    def test_copyfileobj_errors_pass_through(self, backend: ModuleType, run: Runner) -> None:
        """Errors from the copy come out unchanged."""
        with pytest.raises(TypeError, match="progress"):
            run(aio.copyfileobj(io.BytesIO(), io.BytesIO(), progress=5))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            run(aio.copyfileobj(io.BytesIO(b"x"), io.BytesIO(), count=-1))

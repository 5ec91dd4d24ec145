"""copyfile: returns and raises what shutil.copyfile does.

Every test runs on both backends (the ``backend`` fixture).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

import zerocopy
from conftest import hang_guard
from copykit import MiB, always_fail, payload
from zerocopy._copy import files as copy_files
from zerocopy._errors import GiveUp


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Turn a hang into a failure: no test here may take 120 s."""
    with hang_guard(120):
        yield


# --- copyfile ------------------------------------------------------------------------


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raises", type(exc))


class TestCopyfile:
    """copyfile returns and raises what shutil.copyfile does."""

    def test_regular_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """Same bytes, dst returned as given, copied with copy_file_range."""
        data = payload(3 * MiB + 5)
        src = tmp_path / "src"
        src.write_bytes(data)
        ref = shutil.copyfile(src, tmp_path / "ref")
        dst = tmp_path / "dst"
        got = zerocopy.copyfile(src, dst)
        assert got is dst
        assert type(got) is type(ref)
        assert dst.read_bytes() == data
        assert zerocopy.last_method() == "copy_file_range"
        str_dst = str(tmp_path / "dst2")
        assert zerocopy.copyfile(str(src), str_dst) is str_dst

    @pytest.mark.parametrize("size", [1, 4096, 65535, 65536, 65537])
    def test_small_files_go_to_the_kernel(
        self, backend: ModuleType, tmp_path: Path, size: int
    ) -> None:
        """Any size goes to copy_file_range: copyfile's own objects hold nothing to reconcile."""
        data = payload(size)
        src = tmp_path / "src"
        src.write_bytes(data)
        zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert zerocopy.last_method() == "copy_file_range"

    @pytest.mark.parametrize("source", ["empty", "/proc/self/status", "/dev/null"])
    def test_what_copy_file_range_cannot_start(
        self, backend: ModuleType, tmp_path: Path, source: str
    ) -> None:
        """An empty file, a procfs file and a device take the general path, with shutil's bytes."""
        src = tmp_path / "empty" if source == "empty" else Path(source)
        if source == "empty":
            src.write_bytes(b"")
        zerocopy.copyfile(src, tmp_path / "dst")
        shutil.copyfile(src, tmp_path / "ref")
        got, ref = (tmp_path / "dst").read_bytes(), (tmp_path / "ref").read_bytes()
        if source == "/proc/self/status":  # two processes' views differ in their numbers
            assert got.splitlines()[0] == ref.splitlines()[0]
            assert len(got.splitlines()) == len(ref.splitlines())
        else:
            assert got == ref
        assert zerocopy.last_method() != "copy_file_range"

    def test_overwrites_existing(self, backend: ModuleType, tmp_path: Path) -> None:
        """An existing, longer destination is truncated, as shutil does."""
        src = tmp_path / "src"
        src.write_bytes(b"short")
        dst = tmp_path / "dst"
        dst.write_bytes(b"a much longer existing content")
        zerocopy.copyfile(src, dst)
        assert dst.read_bytes() == b"short"

    def test_permission_bits_not_copied(self, backend: ModuleType, tmp_path: Path) -> None:
        """The new file gets the umask's mode, not the source's, as with shutil."""
        src = tmp_path / "src"
        src.write_bytes(b"x")
        src.chmod(0o751)
        shutil.copyfile(src, tmp_path / "ref")
        zerocopy.copyfile(src, tmp_path / "dst")
        mode = stat.S_IMODE((tmp_path / "dst").stat().st_mode)
        assert mode == stat.S_IMODE((tmp_path / "ref").stat().st_mode)
        assert mode != 0o751

    @pytest.mark.parametrize(
        "case",
        [
            "same-file",
            "same-file-via-link",
            "src-directory",
            "dst-directory",
            "dst-missing-directory",
            "src-fifo",
            "dst-fifo",
            "src-missing",
            "dst-symlink-to-src",
        ],
    )
    def test_errors_like_shutil(self, backend: ModuleType, tmp_path: Path, case: str) -> None:
        """The same exception type as shutil.copyfile for the same mistake."""
        outcomes = []
        for i, copyfile in enumerate((shutil.copyfile, zerocopy.copyfile)):
            d = tmp_path / f"play{i}"
            d.mkdir()
            src, dst = d / "src", d / "dst"
            src.write_bytes(b"content")
            if case == "same-file":
                dst = src
            elif case == "same-file-via-link":
                os.link(src, dst)
            elif case == "src-directory":
                src = d / "adir"
                src.mkdir()
            elif case == "dst-directory":
                dst.mkdir()
            elif case == "dst-missing-directory":
                dst = d / "missing" / "dst"
            elif case == "src-fifo":
                src = d / "fifo"
                os.mkfifo(src)
            elif case == "dst-fifo":
                os.mkfifo(dst)
            elif case == "src-missing":
                src = d / "nope"
            elif case == "dst-symlink-to-src":
                dst.symlink_to(src)
            outcomes.append(_outcome(lambda src=src, dst=dst, c=copyfile: c(src, dst)))
        assert outcomes[0][0] == "raises", f"shutil accepted {case}"
        assert outcomes[1] == outcomes[0]

    @pytest.mark.parametrize("follow", [True, False])
    def test_symlink(self, backend: ModuleType, tmp_path: Path, follow: bool) -> None:
        """A symlink source: followed, the target's bytes; not followed, a new symlink."""
        target = tmp_path / "target"
        target.write_bytes(b"pointed-at bytes")
        link = tmp_path / "link"
        link.symlink_to(target)
        ref, dst = tmp_path / "ref", tmp_path / "dst"
        shutil.copyfile(link, ref, follow_symlinks=follow)
        assert zerocopy.copyfile(link, dst, follow_symlinks=follow) is dst
        assert dst.is_symlink() == ref.is_symlink() == (not follow)
        if follow:
            assert dst.read_bytes() == b"pointed-at bytes"
        else:
            assert os.readlink(dst) == os.readlink(ref) == str(target)

    def test_direntry_source(self, backend: ModuleType, tmp_path: Path) -> None:
        """An os.DirEntry source works as in shutil."""
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "f").write_bytes(b"entry")
        (entry,) = list(os.scandir(tmp_path / "in"))
        assert zerocopy.copyfile(entry, tmp_path / "out") == tmp_path / "out"
        assert (tmp_path / "out").read_bytes() == b"entry"


class TestCopyfileLoop:
    """copyfile's own copy_file_range loop: chunks, the fallback, failures part-way."""

    def test_many_calls_same_bytes(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Chunked into many calls, the copy ends at end of file with every byte in place."""
        data = payload(MiB + 12345)
        src = tmp_path / "src"
        src.write_bytes(data)
        calls = []
        real = backend.copy_file_range_at_positions

        def counted(sfd: int, dfd: int, count: int) -> int:
            n = real(sfd, dfd, count)
            calls.append(n)
            return n

        monkeypatch.setattr(copy_files, "CHUNK", 64 * 1024)
        monkeypatch.setattr(backend, "copy_file_range_at_positions", counted)
        zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert calls[-1] == 0
        assert sum(calls) == len(data)
        assert len(calls) == len(data) // (64 * 1024) + 2
        assert zerocopy.last_method() == "copy_file_range"

    @pytest.mark.parametrize("err", [errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP])
    def test_not_here_takes_sendfile(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
    ) -> None:
        """A "not supported here" errno on the first call: sendfile, as shutil, same bytes."""
        data = payload(300_000)
        src = tmp_path / "src"
        src.write_bytes(data)

        refuse = always_fail(err)

        monkeypatch.setattr(backend, "copy_file_range_at_positions", refuse)
        monkeypatch.setattr(copy_files, "copyfileobj", refuse)  # must not be reached
        zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert zerocopy.last_method() == "sendfile"

    @pytest.mark.parametrize("err", [errno.EXDEV, errno.EINVAL])
    def test_neither_call_here_falls_back(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
    ) -> None:
        """Neither copy_file_range nor sendfile can start: the general path, from offset 0."""
        data = payload(300_000)
        src = tmp_path / "src"
        src.write_bytes(data)

        refuse = always_fail(err)

        monkeypatch.setattr(backend, "copy_file_range_at_positions", refuse)
        monkeypatch.setattr(backend, "sendfile", refuse)
        general = []
        real_copyfileobj = copy_files.copyfileobj

        def spy(fsrc: Any, fdst: Any) -> int:
            general.append((fsrc.tell(), fdst.tell()))
            return real_copyfileobj(fsrc, fdst)

        monkeypatch.setattr(copy_files, "copyfileobj", spy)
        zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert general == [(0, 0)]  # the general path, from the start of both

    def test_sendfile_failure_part_way(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sendfile failing after bytes moved: its errno, both names, the exact count."""
        data = payload(MiB)
        src = tmp_path / "src"
        src.write_bytes(data)
        calls = 0

        refuse = always_fail(errno.EXDEV)

        def fail_third(out_fd: int, in_fd: int, offset: Any, count: int, tally: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return int(tally.call(os.sendfile, (out_fd, in_fd, offset, 70_000)))

        monkeypatch.setattr(backend, "copy_file_range_at_positions", refuse)
        monkeypatch.setattr(backend, "sendfile", fail_third)
        dst = tmp_path / "dst"
        with pytest.raises(OSError, match="No space left") as info:
            zerocopy.copyfile(src, dst)
        assert zerocopy.bytes_transferred(info.value) == 140_000
        assert dst.read_bytes() == data[:140_000]
        assert (info.value.filename, info.value.filename2) == (str(src), str(dst))
        assert zerocopy.last_method() == "sendfile"
        # The library's private GiveUp never reaches a caller, not even as context.
        assert not isinstance(info.value.__context__, GiveUp)
        assert not isinstance(info.value.__cause__, GiveUp)

    def test_to_a_device_like_shutil(self, backend: ModuleType, tmp_path: Path) -> None:
        """/dev/null as the destination: shutil's result (copy_file_range takes files only)."""
        src = tmp_path / "src"
        src.write_bytes(payload(200_000))
        assert shutil.copyfile(src, "/dev/null") == "/dev/null"
        assert zerocopy.copyfile(src, "/dev/null") == "/dev/null"
        assert zerocopy.last_method() == "sendfile"

    @pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EXDEV])
    def test_failure_part_way_says_what_dst_holds(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
    ) -> None:
        """After bytes moved any errno is the copy's failure, with both names and the count."""
        data = payload(MiB)
        src = tmp_path / "src"
        src.write_bytes(data)
        real = backend.copy_file_range_at_positions
        calls = 0

        def fail_third(sfd: int, dfd: int, count: int) -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(err, os.strerror(err))
            return real(sfd, dfd, 100_000)

        monkeypatch.setattr(backend, "copy_file_range_at_positions", fail_third)
        dst = tmp_path / "dst"
        with pytest.raises(OSError, match=os.strerror(err)) as info:
            zerocopy.copyfile(src, dst)
        assert info.value.errno == err
        assert zerocopy.bytes_transferred(info.value) == 200_000
        assert dst.read_bytes() == data[:200_000]
        assert (info.value.filename, info.value.filename2) == (str(src), str(dst))
        assert zerocopy.last_method() == "copy_file_range"

    def test_uses_the_os_modules_call(self, backend: ModuleType) -> None:
        """The os module's copy_file_range, where it has one (the cheaper call, measured)."""
        if not hasattr(os, "copy_file_range"):
            pytest.skip("this Python's os module has no copy_file_range")
        assert backend.copy_file_range_at_positions is os.copy_file_range

    def test_without_the_os_modules_call(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Where os has no copy_file_range, the backend's call copies the same bytes."""
        data = payload(MiB + 7)
        src = tmp_path / "src"
        src.write_bytes(data)
        monkeypatch.setattr(
            backend,
            "copy_file_range_at_positions",
            lambda sfd, dfd, count: backend.copy_file_range(sfd, dfd, count, None, None),
        )
        monkeypatch.setattr(copy_files, "CHUNK", 300_000)
        zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert zerocopy.last_method() == "copy_file_range"

    @pytest.mark.only_backend("os")
    def test_a_patched_os_sendfile_reaches_it(
        self, backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On the os backend, mock.patch("os.sendfile") reaches copyfile's sendfile (issue 23)."""
        data = payload(300_000)
        src = tmp_path / "src"
        src.write_bytes(data)
        real = os.sendfile
        counts = []

        def spy(out_fd: int, in_fd: int, offset: Any, count: int) -> int:
            counts.append(real(out_fd, in_fd, offset, count))
            return counts[-1]

        monkeypatch.setattr(backend, "copy_file_range_at_positions", always_fail(errno.EXDEV))
        with mock.patch("os.sendfile", spy):
            zerocopy.copyfile(src, tmp_path / "dst")
        assert (tmp_path / "dst").read_bytes() == data
        assert sum(counts) == len(data)
        assert counts[-1] == 0  # to end of file, through the patched call
        assert zerocopy.last_method() == "sendfile"

"""zerocopy._localfs: which files are known to live on a local filesystem.

The reference for a real path's filesystem is util-linux's ``findmnt``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from zerocopy import _localfs

SAMPLE = """\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
31 22 0:45 / /mnt/with\\040space rw shared:5 master:2 - nfs4 srv:/x rw,vers=4.2
32 22 0:46 / /tmp rw - tmpfs tmpfs rw
garbage line
33 22 7:0 / /snap/x ro - squashfs /dev/loop0 ro
34 22 0:47 / /odd rw no-separator-here
"""


def test_mountinfo_parsed(tmp_path: Path) -> None:
    """Devices map to their types; optional fields, escaped mount points and bad lines are borne."""
    f = tmp_path / "mountinfo"
    f.write_text(SAMPLE)
    assert _localfs._read_mountinfo(str(f)) == {
        os.makedev(253, 1): "ext4",
        os.makedev(0, 21): "proc",
        os.makedev(0, 45): "nfs4",
        os.makedev(0, 46): "tmpfs",
        os.makedev(7, 0): "squashfs",
    }


def test_unreadable_mountinfo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No mountinfo (off Linux): nothing is known, and a debug line says why."""
    with caplog.at_level(logging.DEBUG, logger="zerocopy"):
        assert _localfs._read_mountinfo(str(tmp_path / "absent")) == {}
    assert "no filesystem is known local" in caplog.text


@pytest.mark.skipif(shutil.which("findmnt") is None, reason="findmnt (util-linux) is not installed")
def test_fs_type_matches_findmnt(tmp_path: Path) -> None:
    """The type found for a real file's st_dev is the one findmnt reports for its mount."""
    f = tmp_path / "x"
    f.write_bytes(b"x")
    out = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,MAJ:MIN", "-T", str(f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    fstype, majmin = out[0], out[1]
    major, minor = (int(x) for x in majmin.split(":"))
    st = f.stat()
    assert (os.major(st.st_dev), os.minor(st.st_dev)) == (major, minor)
    assert _localfs.fs_type(st.st_dev) == fstype


def test_fs_type_unknown_device() -> None:
    assert _localfs.fs_type(os.makedev(4095, 1048575)) is None


def test_local_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local paths are remembered, the oldest forgotten past the size; others are not kept."""
    types = {1: "ext4", 2: "nfs4"}
    monkeypatch.setattr(_localfs, "fs_type", types.get)
    local = _localfs.LocalFiles(size=2)
    assert local.learn("/a", 1) is True
    assert local.learn("/b", 1) is True
    assert "/a" in local
    assert "/b" in local
    assert local.learn("/c", 1) is True
    assert "/a" not in local
    assert "/b" in local
    assert "/c" in local
    assert local.learn("/b", 2) is False  # it moved to NFS (a symlink changed): forgotten
    assert "/b" not in local
    assert local.learn("/d", 3) is False  # a device no mount has
    assert "/d" not in local

"""Which files may be opened on an event loop: those known to live on a local filesystem.

Opening a file and ``stat``-ing it cost microseconds on a local disk whose
metadata is cached, and can block for seconds on NFS, SMB or a FUSE mount
whose server is slow.  Frameworks therefore open files in a worker thread
(aiohttp's ``FileResponse`` does, twice per response: open and close); on a
server whose cores are busy, that thread waits for a CPU, and the request
with it (docs/server.md, "Under load": 3.0-6.7 ms at p99 beside 4 and 32
downloads, against 2.5-3.6 ms with the open on the loop).

:class:`LocalFiles` remembers the paths that were opened once (in a thread)
and found on a filesystem of :data:`LOCAL_TYPES`, read from
``/proc/self/mountinfo`` by the file's ``st_dev``; later requests for them
open on the loop.  A path not seen yet, a device not in mountinfo (a btrfs
subvolume's anonymous device, say) or a filesystem not in the list keeps
the thread.  Off Linux (no mountinfo), nothing is known local.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["LOCAL_TYPES", "LocalFiles", "fs_type"]

log = logging.getLogger("zerocopy")

#: Filesystems whose opens do not wait on a network peer or a user-space server.
LOCAL_TYPES = frozenset(
    {
        "bcachefs",
        "btrfs",
        "erofs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "hfsplus",
        "iso9660",
        "jfs",
        "nilfs2",
        "ntfs3",
        "overlay",
        "ramfs",
        "reiserfs",
        "squashfs",
        "tmpfs",
        "vfat",
        "xfs",
        "zfs",
    }
)

_MOUNTINFO = "/proc/self/mountinfo"
_types: dict[int, str] = {}
_types_lock = threading.Lock()


def _read_mountinfo(path: str = _MOUNTINFO) -> dict[int, str]:
    """``st_dev`` -> filesystem type of every mount in *path* (proc(5)'s mountinfo format)."""
    found: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                try:
                    major, minor = fields[2].split(":")
                    fstype = fields[fields.index("-") + 1]
                    found[os.makedev(int(major), int(minor))] = fstype
                except (IndexError, ValueError):
                    continue  # not a mount line we understand: that device stays unknown
    except OSError as exc:
        log.debug("%s unreadable (%s): no filesystem is known local", path, exc)
    return found


def fs_type(dev: int) -> str | None:
    """The type of the filesystem mounted from device *dev*, or None if no mount has it.

    mountinfo is read again when *dev* is not in what was read before (a
    filesystem mounted since), so a lookup costs a dict access once known.
    """
    known = _types.get(dev)
    if known is None:
        with _types_lock:
            _types.update(_read_mountinfo())
            known = _types.get(dev)
    return known


class LocalFiles:
    """Paths found on a local filesystem, at most *size* of them (the oldest forgotten first)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._paths: dict[str, None] = {}

    def __contains__(self, path: str) -> bool:
        return path in self._paths

    def learn(self, path: str, dev: int) -> bool:
        """Remember *path* if device *dev* carries a local filesystem; return whether it does."""
        if fs_type(dev) not in LOCAL_TYPES:
            self._paths.pop(path, None)
            return False
        if path not in self._paths:
            if len(self._paths) >= self.size:
                del self._paths[next(iter(self._paths))]
            self._paths[path] = None
        return True

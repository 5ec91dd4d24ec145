"""The zoo: open fds of every kind, for the fuzz tests of every capability.

Each fuzz file that needs it mounts its own (``mounted_zoo``) in a
module-scoped fixture, and checks it after each test.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import select
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from faultkit import KiB

FILE_SIZE = 64 * KiB
PATTERN = bytes(range(256)) * (FILE_SIZE // 256)


def _closed_fd() -> int:
    """An fd number that is, and will stay, closed: just under the fd limit."""
    soft, _ = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    fd = min(soft, 1 << 16) - 1
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    return fd


class Zoo:
    """Open fds of every kind, under stable names, restored between examples."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.fds: dict[str, int] = {}
        self.objects: list[Any] = []  # kept alive: sockets own their fds
        self.drains: list[int] = []  # read ends emptied between examples
        (where / "data").write_bytes(PATTERN)
        (where / "rw").write_bytes(PATTERN)
        (where / "append").write_bytes(b"")
        (where / "empty").write_bytes(b"")
        (where / "dir").mkdir()
        os.mkfifo(where / "fifo")
        os.symlink(where / "data", where / "link")
        os.symlink(where / "nowhere", where / "dangling")
        self.fds["file_ro"] = os.open(where / "data", os.O_RDONLY)
        self.fds["file_rw"] = os.open(where / "rw", os.O_RDWR)
        self.fds["file_append"] = os.open(where / "append", os.O_WRONLY | os.O_APPEND)
        self.fds["file_empty"] = os.open(where / "empty", os.O_RDWR)
        self.fds["dir"] = os.open(where / "dir", os.O_RDONLY | os.O_DIRECTORY)
        for i in (1, 2):
            r, w = os.pipe()
            self.fds[f"pipe{i}_r"], self.fds[f"pipe{i}_w"] = r, w
            self.drains.append(r)
        a, b = socket.socketpair()
        self._keep(a, b)
        self.fds["unix"] = a.fileno()
        self.drains.append(b.fileno())
        with socket.create_server(("127.0.0.1", 0)) as listener:
            c = socket.create_connection(listener.getsockname())
            d, _ = listener.accept()
        self._keep(c, d)
        self.fds["tcp"] = c.fileno()
        self.drains.append(d.fileno())
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listening = socket.create_server(("127.0.0.1", 0))
        self._keep(udp, listening)
        self.fds["udp"] = udp.fileno()
        self.fds["listening"] = listening.fileno()
        self.fds["eventfd"] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        epoll = select.epoll()
        self.objects.append(epoll)
        self.fds["epoll"] = epoll.fileno()
        master, slave = pty.openpty()
        self.fds["tty_master"], self.fds["tty_slave"] = master, slave
        self.drains += [master, slave]
        self.fds["dev_null"] = os.open(os.devnull, os.O_RDWR)
        self.fds["dev_zero"] = os.open("/dev/zero", os.O_RDWR)
        self.fds["proc"] = os.open("/proc/self/stat", os.O_RDONLY)
        memfd = os.memfd_create("zoo", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        os.write(memfd, PATTERN)
        # Sealed against growth: a call copying a memfd into itself stays bounded.
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        self.fds["memfd"] = memfd
        for name, fd in self.fds.items():
            if name not in ("dir", "proc") and not name.startswith("file"):
                os.set_blocking(fd, False)
        for fd in self.drains:
            os.set_blocking(fd, False)
        self.identity = {name: self._ident(fd) for name, fd in self.fds.items()}
        self.closed = _closed_fd()

    def _keep(self, *socks: socket.socket) -> None:
        self.objects.extend(socks)

    @staticmethod
    def _ident(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)

    def reset(self) -> None:
        """Check the last example left the zoo whole; empty pipes and sockets, restore files."""
        self.check()
        for fd in self.drains:
            with contextlib.suppress(OSError):
                while os.read(fd, 1 << 20):
                    pass
        for name in ("data", "rw"):  # copyfile may have written over them
            with open(self.where / name, "r+b") as f:
                f.truncate(0)
                f.write(PATTERN)
        os.ftruncate(self.fds["file_append"], 0)
        os.ftruncate(self.fds["file_empty"], 0)
        for name in ("file_ro", "file_rw", "file_empty", "memfd", "proc", "dev_null"):
            os.lseek(self.fds[name], 0, os.SEEK_SET)

    def check(self) -> None:
        """Every fd is still open and still the same file: nothing closed or replaced it."""
        for name, fd in self.fds.items():
            assert self._ident(fd) == self.identity[name], f"zoo fd {name} ({fd}) changed"
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(self.closed)

    def close(self) -> None:
        for obj in self.objects:
            obj.close()
        for name, fd in self.fds.items():
            if name not in ("unix", "tcp", "udp", "listening", "epoll"):
                os.close(fd)


@contextlib.contextmanager
def mounted_zoo() -> Iterator[Zoo]:
    """The zoo, on an 8 MiB tmpfs (mounted here, unmounted on the way out)."""
    where = Path(tempfile.mkdtemp(prefix="zc-zoo-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        z = Zoo(where)
        try:
            yield z
        finally:
            z.close()
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


class FakeFileno:
    """An object whose fileno() returns (or raises) whatever it was given."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def fileno(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self) -> str:
        return f"FakeFileno({self.value!r})"


ZOO_NAMES = [
    "file_ro",
    "file_rw",
    "file_append",
    "file_empty",
    "dir",
    "pipe1_r",
    "pipe1_w",
    "pipe2_r",
    "pipe2_w",
    "unix",
    "tcp",
    "udp",
    "listening",
    "eventfd",
    "epoll",
    "tty_master",
    "tty_slave",
    "dev_null",
    "dev_zero",
    "proc",
    "memfd",
    "closed",
    "huge",
]
#: /dev/zero never ends: as a source it would make any count real work.
SOURCE_NAMES = [n for n in ZOO_NAMES if n != "dev_zero"]

NOT_FDS = st.sampled_from(
    [
        None,
        -1,
        -(2**40),
        2**31,
        2**64,
        True,
        False,
        3.0,
        "3",
        b"3",
        [],
        object(),
        FakeFileno(-1),
        FakeFileno(2**40),
        FakeFileno("3"),
        FakeFileno(None),
        FakeFileno(True),
        FakeFileno(ValueError("closed file")),
        FakeFileno(io.UnsupportedOperation("fileno")),
        io.BytesIO(b"abc"),
    ]
)


def fd_arg(names: list[str]) -> st.SearchStrategy[Any]:
    """A zoo fd by name (resolved in the test), or something that is not an fd."""
    return st.one_of(st.sampled_from(names).map(lambda n: ("zoo", n)), NOT_FDS)


def resolve(zoo: Zoo, value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "zoo":
        name = value[1]
        if name == "closed":
            return zoo.closed
        if name == "huge":
            return 2**31 - 1
        return zoo.fds[name]
    return value

"""Leaks of send_file: thousands of calls over one socket pair stay flat.

Each test runs one kind of operation many times on both backends and checks
that the process's fds stay exactly the same and its resident set size flat
(:class:`faultkit.flat.Flat`).  Over all the ``tests/test_*_leaks.py`` files
the operations per backend add up to more than 100,000.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import ModuleType

import zerocopy
from faultkit import KiB
from faultkit.flat import Flat


class TestHighLevel:
    def test_send_file(self, backend: ModuleType, tmp_path: Path) -> None:
        """5,000 send_file calls over one socket pair leave fds and memory flat."""
        (tmp_path / "src").write_bytes(os.urandom(8 * KiB))
        a, b = socket.socketpair()
        try:
            with open(tmp_path / "src", "rb") as f:

                def op(i: int) -> None:
                    assert zerocopy.send_file(a, f, i % 1024, 1024) == 1024
                    assert len(b.recv(1024, socket.MSG_WAITALL)) == 1024

                Flat.check("send_file", op, 5_000)
        finally:
            a.close()
            b.close()

"""Leaks of relay: thousands of relays, failures included, stay flat.

Each test runs one kind of operation many times on both backends and checks
that the process's fds stay exactly the same and its resident set size flat
(:class:`faultkit.flat.Flat`).  Over all the ``tests/test_*_leaks.py`` files
the operations per backend add up to more than 100,000.
"""

from __future__ import annotations

import socket
from types import ModuleType

import pytest

import zerocopy
from faultkit.flat import Flat
from zerocopy._pipes import default_pool


class TestHighLevel:
    def test_relay(self, backend: ModuleType) -> None:
        """2,000 relays of short exchanges (fresh sockets each time) leave fds and memory flat."""

        def op(i: int) -> None:
            c, a = socket.socketpair()
            b, s = socket.socketpair()
            with a, b, c, s:
                c.sendall(b"ping")
                c.shutdown(socket.SHUT_WR)
                s.sendall(b"pong!")
                s.shutdown(socket.SHUT_WR)
                assert zerocopy.relay(a, b, timeout=5) == (4, 5)
                assert s.recv(10) == b"ping"
                assert c.recv(10) == b"pong!"

        Flat.check("relay", op, 2_000)

    def test_relay_failures(self, backend: ModuleType) -> None:
        """2,000 relays that fail (a peer gone) leave fds, pooled pipes and memory flat."""

        def op(i: int) -> None:
            c, a = socket.socketpair()
            b, s = socket.socketpair()
            with a, b, c:
                s.close()  # writing towards it fails with EPIPE
                c.sendall(b"x" * 100)
                with pytest.raises(BrokenPipeError):
                    zerocopy.relay(a, b, timeout=5)

        Flat.check("relay failures", op, 2_000)
        assert len(default_pool()) <= default_pool().maxsize

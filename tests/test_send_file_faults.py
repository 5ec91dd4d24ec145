"""Fault injection for send_file (blocking and asyncio), on every backend.

Each test drives a real send_file into a fault: a receiver that resets or
closes at a random point, a signal every millisecond (with a handler that
returns, and one that raises, or an exception just as a delivering call
returns), a non-blocking socket, a socket shut down by another thread, and a
source file truncated or grown while it is sent.

After each, the promises checked are: the error is the documented one,
``bytes_transferred`` equals what reached the destination, the destination
holds exactly the bytes before that point, no fd is leaked (the default pipe
pool's idle pipes aside) and no thread is left behind.  The machinery the
capabilities share (peers, signal scenarios, subprocess harnesses) is in
``tests/faultkit``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType

import pytest

import zerocopy
from faultkit import MiB
from faultkit.peers import (
    SEEDS,
    SLOW,
    Peer,
    assert_prefix,
    check_file_truncated_while_sent,
    check_receiver_gone_mid_file,
    check_socket_shut_down_by_another_thread,
    later,
    random_bytes,
)
from faultkit.signals import (
    check_count_and_position_are_exact,
    check_handler_that_raises,
    check_handler_that_returns,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

# --- peers that go away -------------------------------------------------------------


class TestPeerGone:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("how", ["reset", "close"])
    @pytest.mark.parametrize("api", ["send_file"])
    def test_receiver_gone_mid_file(
        self, backend: ModuleType, tmp_path: Path, api: str, how: str, seed: int
    ) -> None:
        """A receiver that resets or closes at a random point ends the send with an OSError."""
        check_receiver_gone_mid_file(tmp_path, api, how, seed)


# --- a signal every millisecond -----------------------------------------------------


class TestSignals:
    @pytest.mark.parametrize("api", ["send_file"])
    def test_handler_that_returns(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """With SIGALRM every millisecond and a quiet handler, the transfer is byte-exact."""
        check_handler_that_returns(tmp_path, api)

    @pytest.mark.parametrize("api", ["send_file"])
    def test_handler_that_raises(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A handler's exception ends the transfer, with bytes_transferred == bytes delivered."""
        check_handler_that_raises(tmp_path, api)


class TestRaiseRightAfterACall:
    """The signal race made certain: an exception just as a delivering call returns."""

    @pytest.mark.parametrize("nth", [1, 3])
    @pytest.mark.parametrize("api", ["send_file", "aio.send_file"])
    def test_count_and_position_are_exact(
        self,
        backend: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        api: str,
        nth: int,
    ) -> None:
        """Stop raised as the nth delivering call returns: its bytes are counted, none repeated."""
        check_count_and_position_are_exact(backend, tmp_path, monkeypatch, api, nth)


# --- non-blocking fds where blocking ones were expected ---------------------------


class TestNonBlocking:
    def test_send_file_refuses_a_nonblocking_socket(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        """send_file on a non-blocking socket raises ValueError before sending anything."""
        (tmp_path / "src").write_bytes(b"x" * MiB)
        a, b = socket.socketpair()
        with a, b, open(tmp_path / "src", "rb") as f:
            a.setblocking(False)
            f.seek(10)
            with pytest.raises(ValueError, match="non-blocking"):
                zerocopy.send_file(a, f)
            assert f.tell() == 10
            b.setblocking(False)
            with pytest.raises(BlockingIOError):
                b.recv(1)


# --- an fd replaced or shut down by another thread -------------------------------


class TestFdGoneMidTransfer:
    @pytest.mark.parametrize("kind", ["tcp", "unix"])
    @pytest.mark.parametrize("api", ["send_file"])
    def test_socket_shut_down_by_another_thread(
        self, backend: ModuleType, tmp_path: Path, kind: str, api: str
    ) -> None:
        """shutdown() from another thread ends a blocked send: BrokenPipeError, exact counts."""
        check_socket_shut_down_by_another_thread(tmp_path, kind, api)


# --- source files that change under the copy --------------------------------------


class TestSourceChanges:
    @pytest.mark.parametrize("api", ["send_file"])
    def test_file_truncated_while_sent(self, backend: ModuleType, tmp_path: Path, api: str) -> None:
        """A file truncated while it goes to a slow socket ends the send early with exact counts."""
        check_file_truncated_while_sent(tmp_path, api)

    def test_file_grown_while_sent(self, backend: ModuleType, tmp_path: Path) -> None:
        """send_file with count=None sends what the file holds when it reaches the end."""
        data = random_bytes(8 * MiB)
        more = random_bytes(MiB, 5)
        path = tmp_path / "src"
        path.write_bytes(data)
        a, b = socket.socketpair()
        peer = Peer(b, pause=SLOW)
        peer.start()

        def grow() -> None:
            with open(path, "ab") as f:
                f.write(more)

        grower = later(0.02, grow)
        with a, b, open(path, "rb") as f:
            count = zerocopy.send_file(a, f)
            a.shutdown(socket.SHUT_WR)
            got = peer.finish()
        grower.join()
        assert count == len(got)
        assert len(got) in (len(data), len(data) + len(more))
        assert_prefix(got, data + more, "receiver")

"""zerocopy.aio.relay on the asyncio loop (and uvloop)."""

from __future__ import annotations

import asyncio
import socket
import time
from types import ModuleType
from typing import Any

import pytest

from netkit import MiB, Runner, payload, recv_all, registered, reset, tcp_pair, unix_pair

# `name as name`: fixtures, re-exported so that linters count them as used (the
# autouse empty_pool applies to the modules that import it).
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import run as run
from netkit import sockets as sockets
from timekit import scaled
from zerocopy import aio


def pair(kind: str, held: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A connected pair of the given kind ("tcp" or "unix")."""
    return tcp_pair(held) if kind == "tcp" else unix_pair(held)


async def send_and_shut(sock: socket.socket, data: bytes) -> None:
    """Send *data*, then end the stream (SHUT_WR)."""
    await asyncio.get_running_loop().sock_sendall(sock, data)
    sock.shutdown(socket.SHUT_WR)


# --- relay ------------------------------------------------------------------


class Relayed:
    """client <-> (a  relay  b) <-> server, all non-blocking."""

    def __init__(self, kind: str, held: list[socket.socket]) -> None:
        self.client, self.a = pair(kind, held)
        self.b, self.server = pair(kind, held)


class TestRelay:
    """aio.relay: both directions, half-closes, resets, timeouts, cancellation, scale."""

    @pytest.mark.parametrize("kind", ["tcp", "unix"])
    def test_both_directions(
        self,
        backend: ModuleType,
        run: Runner,
        no_fd_leak: None,
        sockets: list[socket.socket],
        kind: str,
    ) -> None:
        """Both directions at once arrive byte-exact; counts are returned."""
        up, down = payload(3 * MiB + 5, 20), payload(2 * MiB + 11, 21)
        r = Relayed(kind, sockets)

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b),
                    send_and_shut(r.client, up),
                    send_and_shut(r.server, down),
                    recv_all(r.server),
                    recv_all(r.client),
                )
            )

        counts, _, _, at_server, at_client = run(main())
        assert counts == (len(up), len(down))
        assert at_server == up
        assert at_client == down

    def test_client_half_closes_first(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """The client ends its stream; the server reads it all, then answers in full."""
        request, response = payload(100_000, 22), payload(5 * MiB, 23)
        r = Relayed("tcp", sockets)

        async def server() -> bytes:
            got = await recv_all(r.server)
            await send_and_shut(r.server, response)
            return got

        async def client() -> bytes:
            await send_and_shut(r.client, request)
            return await recv_all(r.client)

        async def main() -> tuple[Any, ...]:
            return tuple(await asyncio.gather(aio.relay(r.a, r.b), server(), client()))

        counts, at_server, at_client = run(main())
        assert counts == (len(request), len(response))
        assert at_server == request
        assert at_client == response

    def test_server_half_closes_first(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """The server ends its stream first; the client keeps sending and all of it arrives."""
        greeting, upload = payload(1000, 24), payload(5 * MiB + 3, 25)
        r = Relayed("tcp", sockets)

        async def client() -> bytes:
            got = await recv_all(r.client)  # EOF first: the server is done talking
            await send_and_shut(r.client, upload)
            return got

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b),
                    send_and_shut(r.server, greeting),
                    recv_all(r.server),
                    client(),
                )
            )

        counts, _, at_server, at_client = run(main())
        assert counts == (len(upload), len(greeting))
        assert at_client == greeting
        assert at_server == upload

    def test_empty_both_ways(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Two ends that close at once relay (0, 0), and the sockets stay open and non-blocking."""
        r = Relayed("unix", sockets)
        r.client.shutdown(socket.SHUT_WR)
        r.server.shutdown(socket.SHUT_WR)
        assert run(aio.relay(r.a, r.b)) == (0, 0)
        for sock in (r.a, r.b):
            assert sock.fileno() >= 0
            assert sock.gettimeout() == 0.0

    def test_reset_from_server(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A server reset mid-download raises ConnectionResetError; b_to_a is what arrived."""
        r = Relayed("tcp", sockets)
        halfway = asyncio.Event()
        sent: list[bytes] = []

        async def client() -> bytes:
            loop = asyncio.get_running_loop()
            got = bytearray()
            while chunk := await loop.sock_recv(r.client, MiB):
                got += chunk
                if len(got) >= MiB:
                    halfway.set()
            return bytes(got)

        async def server() -> None:
            # Send without end until the client has 1 MiB, then reset: the
            # bytes still queued at the server are lost.
            loop = asyncio.get_running_loop()
            while not halfway.is_set():
                sent.append(payload(64 * 1024, len(sent)))
                await loop.sock_sendall(r.server, sent[-1])
            sockets.remove(r.server)
            reset(r.server)

        async def main() -> tuple[Any, bytes]:
            receiver = asyncio.ensure_future(client())
            results = await asyncio.gather(aio.relay(r.a, r.b), server(), return_exceptions=True)
            r.a.shutdown(socket.SHUT_WR)  # let the client see the end
            return results[0], await receiver

        exc, got = run(main())
        assert isinstance(exc, ConnectionResetError)
        assert exc.b_to_a == len(got)
        data = b"".join(sent)
        assert MiB <= len(got) <= len(data)
        assert got == data[: len(got)]
        assert exc.a_to_b == 0
        assert exc.bytes_transferred == (0, len(got))

    def test_reset_mid_upload(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A server that resets mid-upload raises a reset error; a_to_b covers what it read."""
        data = payload(16 * MiB, 27)
        r = Relayed("tcp", sockets)

        async def server() -> int:
            loop = asyncio.get_running_loop()
            n = 0
            while n < 100_000:
                n += len(await loop.sock_recv(r.server, 65536))
            sockets.remove(r.server)
            reset(r.server)
            return n

        async def client() -> None:
            try:
                await send_and_shut(r.client, data)
            except OSError:
                pass  # the relay stops reading; the test closes a

        async def main() -> tuple[Any, int]:
            sender = asyncio.ensure_future(client())
            results = await asyncio.gather(aio.relay(r.a, r.b), server(), return_exceptions=True)
            sockets.remove(r.a)
            r.a.close()
            await sender
            return results[0], results[1]

        exc, read = run(main())
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert read <= exc.a_to_b < len(data)
        assert exc.b_to_a == 0

    def test_reset_after_half_close_is_noticed(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """A client that half-closed, then resets, stops the relay (no idle timeout wait)."""
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, float]:
            # Scaled together, so the bound below stays under the timeout.
            task = asyncio.ensure_future(aio.relay(r.a, r.b, timeout=scaled(3)))
            await send_and_shut(r.client, b"request")
            assert await recv_all(r.server) == b"request"
            t0 = time.monotonic()
            # The server stays silent: only the reset, on the side whose
            # direction has ended, can end the relay before its timeout.
            sockets.remove(r.client)
            reset(r.client)
            results = await asyncio.gather(task, return_exceptions=True)
            return results[0], time.monotonic() - t0

        exc, elapsed = run(main())
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
        assert elapsed < scaled(2)
        assert getattr(exc, "bytes_transferred", None) == (7, 0)  # (a_to_b, b_to_a)

    def test_idle_timeout(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Nothing moving for timeout seconds raises TimeoutError with the counts so far."""
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, bytes, float]:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(r.client, b"hello")
            t0 = time.monotonic()
            results = await asyncio.gather(
                aio.relay(r.a, r.b, timeout=0.3),
                loop.sock_recv(r.server, 100),
                return_exceptions=True,
            )
            return results[0], results[1], time.monotonic() - t0

        exc, got, elapsed = run(main())
        assert isinstance(exc, TimeoutError)
        assert (exc.a_to_b, exc.b_to_a) == (5, 0)
        assert got == b"hello"
        assert 0.25 <= elapsed < scaled(3)

    def test_timeout_is_idle_time(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Traffic more often than the timeout keeps the relay alive past the timeout."""
        r = Relayed("unix", sockets)

        async def client() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(6):
                await loop.sock_sendall(r.client, b"tick")
                await asyncio.sleep(0.1)
            r.client.shutdown(socket.SHUT_WR)
            r.server.shutdown(socket.SHUT_WR)

        async def main() -> tuple[Any, ...]:
            return tuple(
                await asyncio.gather(
                    aio.relay(r.a, r.b, timeout=0.35), client(), recv_all(r.server)
                )
            )

        counts, _, got = run(main())
        assert counts == (24, 0)
        assert got == b"tick" * 6

    def test_cancel(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """Cancelling reports the counts on CancelledError and leaves no callbacks or fds."""
        data = payload(100_000, 28)
        r = Relayed("tcp", sockets)

        async def main() -> tuple[Any, list[tuple[bool, bool]]]:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(aio.relay(r.a, r.b))
            await loop.sock_sendall(r.client, data)
            got = b""
            while len(got) < len(data):
                got += await loop.sock_recv(r.server, MiB)
            assert got == data
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return info.value, [registered(loop, s) for s in (r.a, r.b)]

        exc, left = run(main())
        assert (exc.a_to_b, exc.b_to_a) == (len(data), 0)
        assert exc.bytes_transferred == (len(data), 0)
        assert left == [(False, False), (False, False)]

    def test_cancel_with_bytes_in_flight(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """Cancelling while the pipe holds bytes closes that pipe instead of pooling it."""
        r = Relayed("tcp", sockets)

        async def main() -> Any:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(aio.relay(r.a, r.b))
            sender = asyncio.ensure_future(loop.sock_sendall(r.client, payload(32 * MiB, 29)))
            await asyncio.sleep(0.1)  # the server never reads: buffers and pipe fill
            task.cancel()
            sender.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return info.value

        exc = run(main())
        assert 0 < exc.a_to_b < 32 * MiB

    def test_argument_errors(
        self, backend: ModuleType, run: Runner, sockets: list[socket.socket]
    ) -> None:
        """Non-sockets, datagram or blocking sockets and negative timeouts are refused."""
        a, b = unix_pair(sockets)
        with pytest.raises(TypeError):
            run(aio.relay(a, object()))  # type: ignore[arg-type]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                run(aio.relay(udp, b))
        with pytest.raises(ValueError, match="timeout"):
            run(aio.relay(a, b, timeout=-1))
        b.settimeout(2.0)
        with pytest.raises(ValueError, match="non-blocking"):
            run(aio.relay(a, b))
        b.setblocking(True)
        with pytest.raises(ValueError, match="non-blocking"):
            run(aio.relay(a, b))

    def test_hundred_concurrent(
        self, backend: ModuleType, run: Runner, no_fd_leak: None, sockets: list[socket.socket]
    ) -> None:
        """100 relays in one loop, 256 KiB-ish each way, all byte-exact."""
        pairs = [Relayed("tcp", sockets) for _ in range(100)]

        async def one(i: int, r: Relayed) -> None:
            up, down = payload(256 * 1024 + i, 100 + i), payload(256 * 1024 - i, 300 + i)
            counts, _, _, at_server, at_client = await asyncio.gather(
                aio.relay(r.a, r.b),
                send_and_shut(r.client, up),
                send_and_shut(r.server, down),
                recv_all(r.server),
                recv_all(r.client),
            )
            assert counts == (len(up), len(down))
            assert at_server == up
            assert at_client == down

        async def main() -> None:
            await asyncio.gather(*(one(i, r) for i, r in enumerate(pairs)))

        run(main())

"""zerocopy.aio.relay between (StreamReader, StreamWriter) pairs, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, ValuesView
from types import ModuleType
from typing import Any

import pytest

from netkit import MiB, payload, recv_all, reset

# `name as name`: fixtures, re-exported so that linters count them as used.
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import run as run
from zerocopy import aio
from zerocopy._relay.direction import Direction

Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def steps(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ValuesView[int]:
    """The bytes each relay direction's splices delivered (kernel-moved bytes), live.

    Read from each direction's ``state`` whenever it gives its pipe back or
    ends, so it counts what ``relay_step`` moved whichever engine stepped it:
    the relay's own rounds, or a hub's C pump.
    """
    moved: dict[Direction, int] = {}  # the directions kept: no id reused
    real = Direction.close

    def close(self: Direction) -> None:
        moved[self] = int(self.state.delivered)
        real(self)

    monkeypatch.setattr(Direction, "close", close)
    return moved.values()


async def echo_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Upstream: answer with b"up:" then every byte received, then end its stream."""
    writer.write(b"up:")
    while data := await reader.read(MiB):
        writer.write(data)
        await writer.drain()
    writer.close()


async def proxy_session(
    upstream_handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    client: Callable[[socket.socket], Awaitable[Any]],
    form: str = "pairs",
    **relay_kw: Any,
) -> tuple[Any, Any]:
    """A proxy that reads a request line, then relays the client's stream and the upstream's.

    *form* "pairs" relays two stream pairs; "mixed" the client's pair and a raw
    socket to the upstream.  Returns the relay's result (or exception) and the client's.
    """
    loop = asyncio.get_running_loop()
    upstream = await asyncio.start_server(upstream_handler, "127.0.0.1", 0)
    up_addr = upstream.sockets[0].getsockname()
    results: list[Any] = []
    done = asyncio.Event()
    raw: list[socket.socket] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            assert line == b"CONNECT\n"
            other: Any
            if form == "pairs":
                other = await asyncio.open_connection(*up_addr)
            else:
                sock = socket.socket()
                sock.setblocking(False)
                raw.append(sock)
                await loop.sock_connect(sock, up_addr)
                other = sock
            results.append(await aio.relay((reader, writer), other, **relay_kw))
        except BaseException as exc:
            results.append(exc)
        finally:
            done.set()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, server.sockets[0].getsockname())
        got = await client(sock)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        sock.close()
        for s in raw:
            s.close()
        server.close()
        upstream.close()
        await server.wait_closed()
        await upstream.wait_closed()
    return results[0], got


def sender(body: bytes, *, half_close: bool = True) -> Callable[[socket.socket], Awaitable[bytes]]:
    """A client that sends the request line and *body* in one write, then reads to the end."""

    async def client(sock: socket.socket) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"CONNECT\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return await recv_all(sock)

    return client


class TestPairs:
    """Relays between stream pairs: bytes, the reader's buffer first, counts, and closed writers."""

    @pytest.mark.parametrize("size", [0, 1, 1000, 5 * MiB + 3])
    @pytest.mark.parametrize("form", ["pairs", "mixed"])
    def test_round_trip(
        self,
        backend: ModuleType,
        run: Any,
        steps: ValuesView[int],
        size: int,
        form: str,
        no_fd_leak: None,
    ) -> None:
        """What the client sent after its request line comes back whole; counts exact."""
        body = payload(size)
        result, got = run(proxy_session(echo_upstream, sender(body), form))
        assert got == b"up:" + body
        assert result == (len(body), len(body) + 3)
        # The bytes the StreamReader had read with the request line were
        # sent from Python; everything else went through the pipes.
        assert sum(steps) <= 2 * len(body) + 3
        if size > MiB:
            assert sum(steps) > len(body)

    def test_reader_buffer_delivered_first(
        self, backend: ModuleType, run: Any, steps: ValuesView[int], no_fd_leak: None
    ) -> None:
        """Bytes the StreamReader read ahead come before those spliced later, in order."""
        first = payload(40_000, seed=3)
        later = payload(3 * MiB, seed=4)

        async def client(sock: socket.socket) -> bytes:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"CONNECT\n" + first)
            await asyncio.sleep(0.1)  # the proxy's reader has taken `first` by now
            await loop.sock_sendall(sock, later)
            sock.shutdown(socket.SHUT_WR)
            return await recv_all(sock)

        result, got = run(proxy_session(echo_upstream, client))
        assert got == b"up:" + first + later
        assert result == (len(first) + len(later), len(first) + len(later) + 3)

    def test_eof_already_read(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A client that ended its stream before the relay began: the end is passed on."""
        body = payload(5000)

        async def client(sock: socket.socket) -> bytes:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"CONNECT\n" + body)
            sock.shutdown(socket.SHUT_WR)
            await asyncio.sleep(0.1)  # the proxy's reader has seen the end by now
            return await recv_all(sock)

        result, got = run(proxy_session(echo_upstream, client))
        assert got == b"up:" + body
        assert result == (len(body), len(body) + 3)

    def test_writers_closed(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """After the relay both writers are closed, and the peers see their streams end."""
        writers: list[asyncio.StreamWriter] = []

        async def main() -> list[bool]:
            async def upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                writers.append(w)
                await r.read()  # until the proxy closes
                w.close()

            up = await asyncio.start_server(upstream, "127.0.0.1", 0)
            a = await asyncio.open_connection(*up.sockets[0].getsockname())
            b = await asyncio.open_connection(*up.sockets[0].getsockname())
            a[1].write_eof()
            b[1].write_eof()
            await asyncio.wait_for(aio.relay(a, b), 10)
            states = [a[1].is_closing(), b[1].is_closing()]
            up.close()
            await up.wait_closed()
            return states

        assert run(main()) == [True, True]

    def test_pending_writes_first(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """What the client's writer still buffers reaches the client before relayed bytes."""
        greeting = payload(12 * MiB, seed=9)

        async def main() -> tuple[tuple[int, int], bytes]:
            loop = asyncio.get_running_loop()
            up = await asyncio.start_server(echo_upstream, "127.0.0.1", 0)
            results: list[Any] = []

            async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(greeting)  # more than the socket takes: buffered
                results.append(writer.transport.get_write_buffer_size())
                other = await asyncio.open_connection(*up.sockets[0].getsockname())
                results.append(await aio.relay((reader, writer), other))

            server = await asyncio.start_server(proxy, "127.0.0.1", 0)
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, server.sockets[0].getsockname())
            await asyncio.sleep(0.2)
            await loop.sock_sendall(sock, b"ping")
            sock.shutdown(socket.SHUT_WR)
            got = await recv_all(sock)
            sock.close()
            for _ in range(100):
                if len(results) == 2:
                    break
                await asyncio.sleep(0.05)
            server.close()
            up.close()
            await server.wait_closed()
            await up.wait_closed()
            assert results[0] > 0  # the case under test did happen
            return results[1], got

        counts, got = run(main())
        assert got == greeting + b"up:ping"
        assert counts == (4, 7)


class TestFailures:
    """Resets, cancellation and timeouts: exact counts, writers closed."""

    def test_client_reset(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A client that resets: the relay raises the reset with a_to_b and b_to_a."""
        body = payload(100_000)

        async def client(sock: socket.socket) -> int:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"CONNECT\n" + body)
            got = await loop.sock_recv(sock, 10)
            await asyncio.sleep(0.05)
            reset(sock)
            return len(got)

        async def upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"hello")
            await r.read()
            w.close()

        exc, _ = run(proxy_session(upstream, client))
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert exc.a_to_b == len(body)
        assert exc.b_to_a == 5

    def test_idle_timeout(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """Nothing moves for the timeout: TimeoutError carrying the counts so far."""

        async def upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"hi")
            await r.read()
            w.close()

        async def client(sock: socket.socket) -> bytes:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"CONNECT\nabc")
            return await recv_all(sock)  # ends when the proxy closes its writer

        exc, got = run(proxy_session(upstream, client, timeout=0.3))
        assert isinstance(exc, TimeoutError)
        assert (exc.a_to_b, exc.b_to_a) == (3, 2)
        assert got == b"hi"

    def test_cancelled(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A cancelled relay: CancelledError with exact counts, both writers closed."""

        async def main() -> tuple[int, int, bool, bool, bytes]:
            loop = asyncio.get_running_loop()
            up = await asyncio.start_server(echo_upstream, "127.0.0.1", 0)
            a = await asyncio.open_connection(*up.sockets[0].getsockname())
            lsock = socket.create_server(("127.0.0.1", 0))
            lsock.setblocking(False)
            peer = socket.create_connection(lsock.getsockname())
            peer.setblocking(False)
            inner, _ = await loop.sock_accept(lsock)
            b = await asyncio.open_connection(sock=inner)
            await loop.sock_sendall(peer, b"xyz")
            task = asyncio.ensure_future(aio.relay(a, b))
            got = b""
            while len(got) < 6:
                got += await loop.sock_recv(peer, 100)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                counts = (exc.a_to_b, exc.b_to_a)  # type: ignore[attr-defined]
            closed = (a[1].is_closing(), b[1].is_closing())
            await asyncio.sleep(0.05)
            peer.close()
            lsock.close()
            up.close()
            await up.wait_closed()
            return (*counts, *closed, got)

        a_to_b, b_to_a, closed_a, closed_b, got = run(main())
        assert got == b"up:xyz"
        assert (a_to_b, b_to_a) == (6, 3)
        assert closed_a
        assert closed_b


class TestRefused:
    """Bad sides are refused before anything moves."""

    def test_wrong_types(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A reader alone, a swapped pair or a list is a TypeError; a closed writer a ValueError."""

        async def main() -> None:
            up = await asyncio.start_server(echo_upstream, "127.0.0.1", 0)
            r, w = await asyncio.open_connection(*up.sockets[0].getsockname())
            r2, w2 = await asyncio.open_connection(*up.sockets[0].getsockname())
            for bad in (r, (w, r), [r, w], (r, w, None)):
                with pytest.raises(TypeError):
                    await aio.relay(bad, (r2, w2))  # type: ignore[arg-type]
            assert w.transport.is_reading()  # nothing was changed
            w2.close()
            with pytest.raises(ValueError, match="closing"):
                await aio.relay((r, w), (r2, w2))
            assert w.transport.is_reading()
            assert not w.is_closing()
            w.close()
            up.close()
            await up.wait_closed()

        run(main())

    def test_reader_with_exception(self, backend: ModuleType, run: Any, no_fd_leak: None) -> None:
        """A reader that holds an exception raises it, before anything moves."""

        async def main() -> None:
            up = await asyncio.start_server(echo_upstream, "127.0.0.1", 0)
            r, w = await asyncio.open_connection(*up.sockets[0].getsockname())
            r2, w2 = await asyncio.open_connection(*up.sockets[0].getsockname())
            r.set_exception(ConnectionResetError("earlier"))
            with pytest.raises(ConnectionResetError, match="earlier"):
                await aio.relay((r, w), (r2, w2))
            w.close()
            w2.close()
            up.close()
            await up.wait_closed()

        run(main())

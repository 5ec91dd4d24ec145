"""zerocopy.anyio.relay on anyio's asyncio and trio backends, over sockets and SocketStreams.

Every test relays ``client <-> a | relay | b <-> server``: *a* and *b* are the
relay's ends (raw non-blocking sockets or anyio streams over them), the client
and server are raw sockets on the far sides.
"""

from __future__ import annotations

import socket
import time
from types import ModuleType
from typing import Any

import anyio
import pytest

import zerocopy
from anyiokit import (
    Counter,
    Run,
    aclose,
    as_stream,
    end_for,
    pair,
    recv_all,
    recv_digest,
    send_all,
    sha,
)
from anyiokit import arun as arun
from anyiokit import splice_counter as splice_counter
from anyiokit import uvloop_warmed as uvloop_warmed
from netkit import MiB, payload, reset
from netkit import empty_pool as empty_pool
from netkit import no_fd_leak as no_fd_leak
from netkit import sockets as sockets
from timekit import scaled
from zerocopy import anyio as zc_anyio
from zerocopy._pipes import default_pool

Sockets = tuple[socket.socket, socket.socket, socket.socket, socket.socket]


def topology(family: str, held: list[socket.socket]) -> Sockets:
    """(client, a, b, server): client<->a and b<->server connected, all non-blocking."""
    client, a = pair(family, held)
    b, server = pair(family, held)
    return client, a, b, server


def counts(exc: BaseException) -> tuple[int, int] | None:
    return zerocopy.relay_counts(exc)


async def relay_error(a: Any, b: Any, **kw: Any) -> BaseException:
    """The exception that ends ``relay(a, b)`` (a failure if it returns)."""
    try:
        result = await zc_anyio.relay(a, b, **kw)
    except Exception as exc:
        return exc
    pytest.fail(f"relay returned {result}")


class TestBytes:
    """Both directions byte-exact, with the counts, carried by splice."""

    @pytest.mark.parametrize(
        ("kind", "family"), [("raw", "tcp"), ("stream", "tcp"), ("stream", "unix")]
    )
    def test_both_directions(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        sockets: list[socket.socket],
        splice_counter: Counter,
        kind: str,
        family: str,
    ) -> None:
        """Both directions at once arrive byte-exact (SHA-256); counts returned; all by splice."""
        up, down = payload(3 * MiB, 1), payload(2 * MiB + 5, 2)
        client, a, b, server = topology(family, sockets)

        async def main() -> tuple[Any, ...]:
            ea, eb = await end_for(kind, a), await end_for(kind, b)
            got: dict[str, Any] = {}
            async with anyio.create_task_group() as tg:

                async def relay() -> None:
                    got["counts"] = await zc_anyio.relay(ea, eb)

                async def side(name: str, sock: socket.socket, data: bytes) -> None:
                    async with anyio.create_task_group() as inner:

                        async def write() -> None:
                            await send_all(sock, data)
                            sock.shutdown(socket.SHUT_WR)

                        inner.start_soon(write)
                        got[name] = await recv_digest(sock)

                tg.start_soon(relay)
                tg.start_soon(side, "at_client", client, up)
                tg.start_soon(side, "at_server", server, down)
            await aclose(ea)
            await aclose(eb)
            return got["counts"], got["at_server"], got["at_client"]

        result, at_server, at_client = arun(main)
        assert result == (len(up), len(down))
        assert at_server == (len(up), sha(up))
        assert at_client == (len(down), sha(down))
        assert splice_counter.calls > 0
        assert splice_counter.moved == len(up) + len(down)
        assert all(pipe.queued() == 0 for pipe in default_pool()._idle)

    def test_half_close_passed_on(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """The client's end of stream reaches the server, which then answers in full."""
        request, response = b"GET / HTTP/1.0\r\n\r\n", payload(500_000, 3)
        client, a, b, server = topology("tcp", sockets)

        async def main() -> tuple[Any, bytes, bytes]:
            ea, eb = await end_for("stream", a), await end_for("stream", b)
            got: dict[str, Any] = {}
            async with anyio.create_task_group() as tg:

                async def relay() -> None:
                    got["counts"] = await zc_anyio.relay(ea, eb)

                async def serve() -> None:
                    got["request"] = await recv_all(server)  # needs the half-close
                    await send_all(server, response)
                    server.shutdown(socket.SHUT_WR)

                tg.start_soon(relay)
                tg.start_soon(serve)
                await send_all(client, request)
                client.shutdown(socket.SHUT_WR)
                got["response"] = await recv_all(client)
            await aclose(ea)
            await aclose(eb)
            return got["counts"], got["request"], got["response"]

        result, at_server, at_client = arun(main)
        assert result == (len(request), len(response))
        assert (at_server, at_client) == (request, response)

    def test_read_ahead_bytes_go_first(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """Bytes a stream read ahead before the relay (asyncio streams do) go first, in order."""
        head, body = b"HEAD\n", payload(200_000, 8)
        client, a, b, server = topology("tcp", sockets)

        async def main() -> tuple[Any, bytes]:
            ea, eb = await as_stream(a.dup()), await as_stream(b.dup())
            await send_all(client, head + body[:1000])
            await anyio.sleep(0.05)  # all of it in a's socket, so one read may take it all
            first = await ea.receive(len(head))
            assert first == head
            got: dict[str, Any] = {}
            async with anyio.create_task_group() as tg:

                async def relay() -> None:
                    got["counts"] = await zc_anyio.relay(ea, eb)

                async def serve() -> None:
                    got["body"] = await recv_all(server)
                    server.shutdown(socket.SHUT_WR)

                tg.start_soon(relay)
                tg.start_soon(serve)
                await send_all(client, body[1000:])
                client.shutdown(socket.SHUT_WR)
                await recv_all(client)
            await ea.aclose()
            await eb.aclose()
            return got["counts"], got["body"]

        result, at_server = arun(main)
        assert result == (len(body), 0)
        assert at_server == body


class TestEnds:
    """Resets, timeouts and cancellation end the relay with exact counts."""

    def test_reset_from_server(
        self,
        no_fd_leak: None,
        backend: ModuleType,
        arun: Run,
        sockets: list[socket.socket],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A server reset ends the relay: ConnectionResetError, the counts, nothing logged."""
        client, a, b, server = topology("tcp", sockets)
        sockets.remove(server)

        async def main() -> BaseException:
            ea, eb = await end_for("stream", a), await end_for("stream", b)
            seen: list[BaseException] = []
            async with anyio.create_task_group() as tg:

                async def cut() -> None:
                    await send_all(client, b"x" * 1000)
                    assert await recv_digest(server, 1000) == (1000, sha(b"x" * 1000))
                    reset(server)

                tg.start_soon(cut)
                seen.append(await relay_error(ea, eb))
            await aclose(ea)
            await aclose(eb)
            return seen[0]

        exc = arun(main)
        assert isinstance(exc, ConnectionResetError)
        assert counts(exc) == (1000, 0)
        assert not caplog.records

    def test_reset_after_half_close_is_noticed(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """A reset on a side whose direction has ended ends the relay at once, not at timeout."""
        client, a, b, server = topology("tcp", sockets)
        sockets.remove(client)

        async def main() -> tuple[BaseException, float]:
            client.shutdown(socket.SHUT_WR)  # a -> b ends at once
            t0 = time.monotonic()
            seen: list[BaseException] = []
            async with anyio.create_task_group() as tg:

                async def cut() -> None:
                    await recv_all(server)  # the half-close arrived
                    reset(client)

                tg.start_soon(cut)
                # Scaled together, so the bound below stays under the timeout.
                seen.append(await relay_error(a, b, timeout=scaled(20)))
            return seen[0], time.monotonic() - t0

        exc, took = arun(main)
        # The error watch reads SO_ERROR: ECONNRESET, or EPIPE once the
        # half-closed side's own shutdown met the reset.
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
        assert counts(exc) == (0, 0)
        assert took < scaled(5)

    def test_idle_timeout(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """Nothing moving for timeout seconds raises TimeoutError with the counts so far."""
        client, a, b, server = topology("unix", sockets)

        async def main() -> tuple[BaseException, float, bytes]:
            ea, eb = await end_for("stream", a), await end_for("stream", b)
            await send_all(client, b"hello")
            t0 = time.monotonic()
            with pytest.raises(TimeoutError) as info:
                await zc_anyio.relay(ea, eb, timeout=0.3)
            took = time.monotonic() - t0
            await aclose(ea)
            await aclose(eb)
            return info.value, took, server.recv(100)

        exc, took, got = arun(main)
        assert counts(exc) == (5, 0)
        assert got == b"hello"
        assert 0.25 <= took < scaled(3)

    def test_cancel_with_bytes_in_flight(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """A cancelled relay reports exactly what the server got; its pipes go back or close."""
        data = payload(8 * MiB, 4)
        client, a, b, server = topology("tcp", sockets)

        async def main() -> tuple[BaseException, int, str]:
            ea, eb = await end_for("stream", a), await end_for("stream", b)
            seen: list[BaseException] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_all, client, data)  # the server does not read yet
                with anyio.move_on_after(0.3):
                    try:
                        await zc_anyio.relay(ea, eb)
                    except BaseException as exc:
                        seen.append(exc)
                        raise
                tg.cancel_scope.cancel()
            await aclose(eb)
            b.shutdown(socket.SHUT_WR)
            got = await recv_digest(server)
            await aclose(ea)
            return seen[0], *got

        exc, n, digest = arun(main)
        assert isinstance(exc, BaseException)
        a_to_b = (counts(exc) or (-1, -1))[0]
        assert counts(exc) == (n, 0)
        assert 0 < a_to_b < len(data)
        assert digest == sha(data[:n])


class TestArguments:
    """Bad input: TypeError or ValueError before any byte moves."""

    def test_errors(
        self, no_fd_leak: None, backend: ModuleType, arun: Run, sockets: list[socket.socket]
    ) -> None:
        """Wrong types, blocking or datagram sockets, closed streams, bad timeouts move nothing."""
        client, a, b, server = topology("tcp", sockets)
        blocking, _ = pair("unix", sockets)
        blocking.setblocking(True)
        dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dgram.setblocking(False)
        sockets.append(dgram)

        async def main() -> None:
            closed = await as_stream(a.dup())
            await closed.aclose()
            # Only now: a stream made by from_socket reads its socket (uvloop's at once).
            client.send(b"waiting")
            await anyio.sleep(0.01)
            cases: list[tuple[Any, Any, dict[str, Any], type[Exception]]] = [
                (a.fileno(), b, {}, TypeError),
                (a, "b", {}, TypeError),
                (blocking, b, {}, ValueError),
                (a, dgram, {}, ValueError),
                (closed, b, {}, ValueError),
                (a, b, {"timeout": -1}, ValueError),
                (a, b, {"timeout": float("nan")}, ValueError),
            ]
            for x, y, kw, error in cases:
                with pytest.raises(error):
                    await zc_anyio.relay(x, y, **kw)
            with pytest.raises(BlockingIOError):
                server.recv(1)  # nothing moved
            assert a.recv(100) == b"waiting"

        arun(main)

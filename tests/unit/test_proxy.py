"""The fault-injection TCP proxy, over real loopback sockets to a small backend server.

What a peer sees when the proxy breaks a connection is what Linux does: after a reset,
``receive_some`` raises ``BrokenResourceError`` (caused by ``ConnectionResetError``)
once the bytes that arrived before it are read; after an orderly close it returns b"".
Waits for something that must *not* happen are bounded by a short ``move_on_after``;
every other wait is bounded only by the test's ``fail_after``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterator
from typing import Literal, final

import pytest
import trio
import trio.testing

from xmppkit.testing import FaultProxy, ProxyConnection, open_proxy

# A pattern, so that a wrong offset in a truncated copy shows.
PAYLOAD = bytes(i % 251 for i in range(200_000))
# A bound on waiting for something that must not happen; never a sleep.
NOT_WITHIN = 0.1

Ending = Literal["eof", "reset"]


@final
class Backend:
    """The server behind the proxy: records what it receives and how each connection ends."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.port = 0
        self.accepted = 0
        self.received = bytearray()
        self._endings_in, self._endings = trio.open_memory_channel[Ending](math.inf)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        ending: Ending = "eof"
        try:
            while data := await stream.receive_some():
                self.received += data
                if self.echo:
                    await stream.send_all(data)
        except trio.BrokenResourceError:
            ending = "reset"
        self._endings_in.send_nowait(ending)

    async def ending(self) -> Ending:
        """How the next connection to end ended."""
        return await self._endings.receive()


@contextlib.asynccontextmanager
async def open_backend(*, echo: bool = True) -> AsyncIterator[Backend]:
    backend = Backend(echo)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, backend.handle, 0, host="127.0.0.1")
        )
        backend.port = listeners[0].socket.getsockname()[1]
        yield backend
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_pair(*, echo: bool = True) -> AsyncIterator[tuple[Backend, FaultProxy]]:
    async with open_backend(echo=echo) as backend, open_proxy("127.0.0.1", backend.port) as proxy:
        yield backend, proxy


async def connect(proxy: FaultProxy) -> trio.SocketStream:
    """A client connection through ``proxy``, once the proxy has accepted it."""
    expected = proxy.accepted + 1
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    await proxy.wait_connections(expected)
    return stream


async def receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await stream.receive_some()
        assert chunk, f"the connection ended after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


async def roundtrip(stream: trio.SocketStream, data: bytes) -> None:
    await stream.send_all(data)
    assert await receive_exactly(stream, len(data)) == data


async def receive_to_end(stream: trio.SocketStream) -> tuple[bytes, Ending]:
    """Everything ``stream`` receives until it ends, and how it ended."""
    data = bytearray()
    try:
        while chunk := await stream.receive_some():
            data += chunk
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
    else:
        return bytes(data), "eof"
    assert isinstance(cause, ConnectionResetError), cause
    return bytes(data), "reset"


async def send_until_reset(stream: trio.SocketStream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(data)


# -- forwarding ---------------------------------------------------------------------------


async def test_forwards_both_ways_and_counts_bytes() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            assert proxy.host == "127.0.0.1"
            assert proxy.port not in (0, backend.port)
            async with await connect(proxy) as client:
                (conn,) = proxy.connections
                await roundtrip(client, b"hello")
                await roundtrip(client, PAYLOAD)  # many chunks each way
                assert backend.received == b"hello" + PAYLOAD
                assert conn.bytes_up == conn.bytes_down == 5 + len(PAYLOAD)
                assert not conn.closed
                assert proxy.accepted == 1


async def test_end_of_stream_from_a_peer_closes_both_sides() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as client:
                (conn,) = proxy.connections
                await roundtrip(client, b"bye")
                await client.send_eof()
                assert await backend.ending() == "eof"
                assert await receive_to_end(client) == (b"", "eof")
                await conn.cut()  # returns once the sockets are closed
                assert conn.closed
                assert proxy.connections == []


async def test_leaving_the_block_closes_every_socket() -> None:
    with trio.fail_after(10):
        async with open_backend() as backend:
            async with open_proxy("127.0.0.1", backend.port) as proxy:
                client = await connect(proxy)
                await roundtrip(client, b"x")
                (conn,) = proxy.connections
            async with client:
                assert conn.closed
                assert await receive_to_end(client) == (b"", "eof")
                assert await backend.ending() == "eof"


async def test_an_error_in_the_block_comes_out_unwrapped() -> None:
    with trio.fail_after(10), pytest.raises(KeyError, match="boom"):
        async with open_proxy("127.0.0.1", 9):
            raise KeyError("boom")


async def test_unreachable_target_closes_the_client() -> None:
    with trio.fail_after(10), trio.socket.socket() as unused:
        # Bound but not listening: connecting to it is refused.
        await unused.bind(("127.0.0.1", 0))
        async with open_proxy("127.0.0.1", unused.getsockname()[1]) as proxy:
            async with await connect(proxy) as client:
                assert await receive_to_end(client) == (b"", "eof")
                assert proxy.accepted == 1
                assert proxy.connections == []


async def test_wait_connections_counts_every_accepted_connection() -> None:
    with trio.fail_after(10):
        async with open_pair() as (_backend, proxy), trio.open_nursery() as nursery:
            reached_two = trio.Event()

            async def wait_for_two() -> None:
                await proxy.wait_connections(2)
                reached_two.set()

            nursery.start_soon(wait_for_two)
            async with await trio.open_tcp_stream(proxy.host, proxy.port) as first:
                await proxy.wait_connections(1)
                assert proxy.accepted == 1
                await trio.testing.wait_all_tasks_blocked()
                assert not reached_two.is_set()
                async with await trio.open_tcp_stream(proxy.host, proxy.port) as second:
                    await reached_two.wait()
                    assert proxy.accepted == 2
                    older, newer = proxy.connections
                    await roundtrip(second, b"2")
                    await roundtrip(first, b"1!")
                    assert (older.bytes_up, newer.bytes_up) == (2, 1)
            await proxy.wait_connections(0)  # already true: returns at once


# -- cutting ------------------------------------------------------------------------------


async def test_cut_rst_resets_both_peers_of_every_connection() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as one, await connect(proxy) as two:
                await roundtrip(one, b"one")
                await roundtrip(two, b"two")
                connections = proxy.connections
                await proxy.cut("rst")
                assert all(conn.closed for conn in connections)
                assert proxy.connections == []
                assert [await backend.ending(), await backend.ending()] == ["reset", "reset"]
                assert await receive_to_end(one) == (b"", "reset")
                assert await receive_to_end(two) == (b"", "reset")
                with pytest.raises(trio.BrokenResourceError):
                    await one.send_all(b"more")  # EPIPE once the reset is seen


async def test_cut_fin_closes_both_peers_in_order() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as client:
                await roundtrip(client, b"hi")
                await proxy.cut("fin")
                assert await backend.ending() == "eof"
                assert await receive_to_end(client) == (b"", "eof")
                assert proxy.connections == []


async def test_connection_cut_leaves_the_others_alone() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as doomed, await connect(proxy) as spared:
                first, second = proxy.connections
                await first.cut("rst")
                assert first.closed
                assert await backend.ending() == "reset"
                assert await receive_to_end(doomed) == (b"", "reset")
                assert proxy.connections == [second]
                await roundtrip(spared, b"still here")


@pytest.mark.parametrize("n", [37, 100_000])
async def test_cut_after_down_forwards_exactly_n_bytes_then_resets(n: int) -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as client, trio.open_nursery() as nursery:
                (conn,) = proxy.connections
                conn.cut_after(n, direction="down")
                nursery.start_soon(send_until_reset, client, PAYLOAD)
                assert await receive_to_end(client) == (PAYLOAD[:n], "reset")
                assert conn.bytes_down == n
                assert conn.closed
                assert await backend.ending() == "reset"


@pytest.mark.parametrize("n", [37, 100_000])
async def test_cut_after_up_forwards_exactly_n_bytes_then_resets(n: int) -> None:
    with trio.fail_after(10):
        async with open_pair(echo=False) as (backend, proxy):
            async with await connect(proxy) as client, trio.open_nursery() as nursery:
                (conn,) = proxy.connections
                conn.cut_after(n)  # "up" by default
                nursery.start_soon(send_until_reset, client, PAYLOAD)
                assert await backend.ending() == "reset"
                assert backend.received == PAYLOAD[:n]
                assert conn.bytes_up == n
                assert await receive_to_end(client) == (b"", "reset")


async def test_cut_after_zero_resets_at_once() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as client:
                await roundtrip(client, b"x")
                (conn,) = proxy.connections
                conn.cut_after(0, direction="down")
                assert await receive_to_end(client) == (b"", "reset")
                assert await backend.ending() == "reset"
                assert conn.bytes_down == 1


# -- black hole, delay, refuse ------------------------------------------------------------


async def test_blackhole_holds_everything_until_restore() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as client:
                (conn,) = proxy.connections
                await roundtrip(client, b"before")
                proxy.blackhole()
                await client.send_all(b"held")
                async with await connect(proxy) as late:  # new connections too
                    await late.send_all(b"late")
                    with trio.move_on_after(NOT_WITHIN):
                        data = await client.receive_some()
                        pytest.fail(f"received {data!r} through a black hole")
                    assert backend.received == b"before"
                    assert (conn.bytes_up, conn.bytes_down) == (6, 6)
                    assert not conn.closed

                    proxy.restore()
                    # Nothing was dropped: the held bytes come through, in order.
                    assert await receive_exactly(client, 4) == b"held"
                    assert await receive_exactly(late, 4) == b"late"
                    await roundtrip(client, b"after")
                    assert conn.bytes_up == len(b"before" + b"held" + b"after")


async def test_blackhole_makes_a_writer_block() -> None:
    # The point of a black hole: a peer that keeps writing fills the kernel's buffers
    # and blocks, as behind a dead link (what liveness detection must notice).
    with trio.fail_after(10):
        async with open_pair(echo=False) as (backend, proxy):
            async with await connect(proxy) as client:
                (conn,) = proxy.connections
                proxy.blackhole()
                # Far more than loopback send and receive buffers hold (a few MiB each).
                with trio.move_on_after(NOT_WITHIN) as blocked:
                    await client.send_all(bytes(64 * 1024 * 1024))
                assert blocked.cancelled_caught
                assert conn.bytes_up == 0
                assert backend.received == b""


async def test_delay_holds_each_chunk() -> None:
    with trio.fail_after(10):
        async with open_pair() as (_backend, proxy):
            async with await connect(proxy) as client:
                proxy.delay = 0.05
                start = trio.current_time()
                await roundtrip(client, b"slow")
                # 0.05 s up, then 0.05 s down (with slack for float rounding).
                assert trio.current_time() - start >= 0.099
                proxy.restore()
                assert proxy.delay == 0
                await roundtrip(client, b"fast")


async def test_refuse_resets_new_connections_only() -> None:
    with trio.fail_after(10):
        async with open_pair() as (backend, proxy):
            async with await connect(proxy) as live:
                proxy.refuse = True
                async with await connect(proxy) as refused:
                    assert await receive_to_end(refused) == (b"", "reset")
                assert proxy.accepted == 2
                assert len(proxy.connections) == 1
                assert backend.accepted == 1  # the refused one never reached it
                await roundtrip(live, b"unaffected")

                proxy.refuse = False
                async with await connect(proxy) as welcome:
                    await roundtrip(welcome, b"back up")
                assert proxy.accepted == 3


async def test_bad_arguments_are_refused() -> None:
    with trio.fail_after(10):
        async with open_pair() as (_backend, proxy):
            async with await connect(proxy) as _client:
                conn: ProxyConnection = proxy.connections[0]
                with pytest.raises(ValueError, match="how"):
                    await proxy.cut("gently")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="how"):
                    await conn.cut("gently")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="direction"):
                    conn.cut_after(1, "sideways")  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="n_bytes"):
                    conn.cut_after(-1)
                with pytest.raises(ValueError, match="delay"):
                    proxy.delay = -1
                assert not conn.closed

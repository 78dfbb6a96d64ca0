"""A fault-injection TCP proxy: cut, stall and slow down real connections in tests.

Theory of operation
-------------------
:func:`open_proxy` listens on an ephemeral port and, for every client it accepts, opens
a TCP connection to the target and runs two *pumps*: ``up`` copies client -> server,
``down`` server -> client. Each connection's pumps run in a nursery of their own inside
the proxy's nursery, so leaving ``open_proxy`` cancels and joins every task and closes
every socket.

A connection ends in one place, its handler's ``finally``. Whatever ends it (a pump
seeing end-of-stream or a broken socket, a cut, the proxy closing) cancels the
connection's scope, and the ``finally`` closes both sockets: after ``SO_LINGER`` with a
zero timeout for a reset, so that both peers get an RST, or plainly, so that both get a
FIN. A FIN from one side is thus mirrored as a close of the other (no half-close). The
closing is synchronous, so it happens under cancellation too, and by the time a peer
can see the end the connection is marked closed and gone from the proxy's list.
(Linux sends an RST rather than a FIN when a socket closes with unread bytes, so even
a "fin" cut resets a peer whose bytes the proxy had not yet read.)

Faults are state that the pumps consult at every chunk:

* **Black hole** (:meth:`FaultProxy.blackhole`): the pumps stop *reading*. A pump waiting
  in ``receive_some`` is cancelled (trio loses no data when a receive is cancelled) and
  parks until :meth:`FaultProxy.restore`; a chunk already read is held back. The unread
  bytes stay in the kernel, so a peer that keeps writing fills its send buffer and
  blocks, as it would behind a dead link. After ``restore()`` the held bytes flow on,
  as TCP's retransmissions would deliver them once a link heals; nothing is dropped,
  so the byte stream is never corrupted.
* **Delay** (:attr:`FaultProxy.delay`): every chunk waits that long before it is passed
  on. The chunks of one direction are handled one after another, so a delay also
  throttles a direction that sends many small chunks.
* **Cut after n bytes** (:meth:`ProxyConnection.cut_after`): a byte budget for one
  direction. The chunk that exhausts it is truncated, then the connection is reset.
* **Refuse** (:attr:`FaultProxy.refuse`): new connections are accepted and reset at once.

Byte counts are taken when a chunk is handed to the other side's socket, so by the time
a peer has received some bytes they are counted.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, final

import trio

__all__ = ["FaultProxy", "ProxyConnection", "open_proxy"]

#: ``"up"``: client -> server; ``"down"``: server -> client.
Direction = Literal["up", "down"]
#: ``"rst"``: reset both sockets (``SO_LINGER`` 0, then close); ``"fin"``: close them.
CutHow = Literal["rst", "fin"]

_CHUNK = 65536
# struct linger {int l_onoff; int l_linger;}: on, zero seconds -> close() sends an RST.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _check_how(how: str) -> None:
    if how not in ("rst", "fin"):
        raise ValueError(f'how must be "rst" or "fin", not {how!r}')


def _check_direction(direction: str) -> None:
    if direction not in ("up", "down"):
        raise ValueError(f'direction must be "up" or "down", not {direction!r}')


def _arm_reset(stream: trio.SocketStream | None) -> None:
    """Make closing ``stream`` send an RST instead of a FIN."""
    if stream is None:
        return
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass  # already closed (or reset by the peer): there is nothing left to reset


@final
class ProxyConnection:
    """One client's connection through a :class:`FaultProxy`.

    Attributes:
        bytes_up: bytes forwarded client -> server so far.
        bytes_down: bytes forwarded server -> client so far.
    """

    def __init__(self, proxy: FaultProxy, client: trio.SocketStream) -> None:
        self._proxy = proxy
        self._client = client
        self._server: trio.SocketStream | None = None
        self._scope = trio.CancelScope()
        self._ending: CutHow | None = None  # None: close plainly (a pump saw the end)
        self._done = trio.Event()
        self._budget: dict[Direction, int | None] = {"up": None, "down": None}
        self.bytes_up = 0
        self.bytes_down = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ProxyConnection {state} up={self.bytes_up} down={self.bytes_down}>"

    @property
    def closed(self) -> bool:
        """Whether both of this connection's sockets are closed."""
        return self._done.is_set()

    async def cut(self, how: CutHow = "rst") -> None:
        """Cut this connection and wait until both sockets are closed.

        Args:
            how: ``"rst"`` resets both peers; ``"fin"`` closes both sockets in order.

        Raises:
            ValueError: ``how`` is neither.
        """
        _check_how(how)
        self._end(how)
        await self._done.wait()

    def cut_after(self, n_bytes: int, direction: Direction = "up") -> None:
        """Forward exactly ``n_bytes`` more in ``direction``, then reset the connection.

        The chunk that reaches the budget is truncated, so this cuts in the middle of
        whatever is flowing. ``n_bytes == 0`` resets the connection at once.

        Args:
            n_bytes: how many more bytes to forward (counted from now).
            direction: ``"up"`` (client -> server) or ``"down"`` (server -> client).

        Raises:
            ValueError: ``n_bytes`` is negative or ``direction`` is unknown.
        """
        _check_direction(direction)
        if n_bytes < 0:
            raise ValueError(f"n_bytes must not be negative, not {n_bytes}")
        self._budget[direction] = n_bytes
        if n_bytes == 0:
            self._end("rst")

    def _end(self, how: CutHow | None) -> None:
        # The first explicit cut decides how the sockets close; ending for any other
        # reason closes them plainly unless a cut has asked otherwise.
        if how is not None and self._ending is None:
            self._ending = how
        self._scope.cancel()

    async def _run(self, target_host: str, target_port: int) -> None:
        try:
            with self._scope:
                try:
                    self._server = await trio.open_tcp_stream(target_host, target_port)
                except OSError:
                    return  # the target is unreachable: closing the client says so
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, "up", self._client, self._server)
                    nursery.start_soon(self._pump, "down", self._server, self._client)
        finally:
            self._close()

    def _close(self) -> None:
        # Synchronous (no checkpoint) so that it happens even when the proxy is being
        # cancelled, and so that by the time a peer sees the end, the connection is
        # already closed and out of the proxy's list.
        if self._ending == "rst":
            _arm_reset(self._client)
            _arm_reset(self._server)
        self._client.socket.close()
        if self._server is not None:
            self._server.socket.close()
        self._proxy._connections.remove(self)
        self._done.set()

    async def _pump(
        self, direction: Direction, src: trio.SocketStream, dst: trio.SocketStream
    ) -> None:
        proxy = self._proxy
        try:
            while True:
                chunk = await self._read(src)
                if not chunk:
                    return  # end of stream: mirrored by closing both sides
                if proxy.delay > 0:
                    await trio.sleep(proxy.delay)
                await proxy._flowing.wait()  # a black hole holds a chunk already read
                budget = self._budget[direction]
                if budget is not None:
                    chunk = chunk[:budget]
                    self._budget[direction] = budget - len(chunk)
                if direction == "up":
                    self.bytes_up += len(chunk)
                else:
                    self.bytes_down += len(chunk)
                await dst.send_all(chunk)
                if self._budget[direction] == 0:
                    self._end("rst")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a side broke or was closed: the connection ends
        finally:
            self._scope.cancel()

    async def _read(self, src: trio.SocketStream) -> bytes:
        """The next chunk from ``src``; b"" at its end. Parks while black-holed."""
        proxy = self._proxy
        while True:
            await proxy._flowing.wait()
            with trio.CancelScope() as scope:
                proxy._reads.add(scope)
                try:
                    return await src.receive_some(_CHUNK)
                finally:
                    proxy._reads.discard(scope)
            # blackhole() cancelled the receive before it read anything: wait for restore()


@final
class FaultProxy:
    """A TCP proxy that breaks its connections on demand; made by :func:`open_proxy`.

    Attributes:
        host: the address clients connect to.
        port: the port clients connect to.
        target_host: where connections are forwarded.
        target_port: where connections are forwarded.
        accepted: how many client connections were accepted so far (refused ones too).
        refuse: when true, new connections are accepted and reset at once, as if the
            server were down; live connections are left alone.
    """

    def __init__(self, host: str, port: int, target_host: str, target_port: int) -> None:
        self.host = host
        self.port = port
        self.target_host = target_host
        self.target_port = target_port
        self.accepted = 0
        self.refuse = False
        self._delay = 0.0
        self._connections: list[ProxyConnection] = []
        self._accepted_changed = trio.Event()
        self._flowing = trio.Event()  # cleared while black-holed
        self._flowing.set()
        self._reads: set[trio.CancelScope] = set()  # pumps waiting in receive_some

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {self.host}:{self.port} -> {self.target_host}:{self.target_port}"
            f" live={len(self._connections)} accepted={self.accepted}>"
        )

    @property
    def connections(self) -> list[ProxyConnection]:
        """The live connections, oldest first (a copy)."""
        return list(self._connections)

    @property
    def delay(self) -> float:
        """Seconds every forwarded chunk is held back, in both directions (0: none)."""
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"delay must be a number of seconds >= 0, not {seconds!r}")
        self._delay = seconds

    async def wait_connections(self, n: int) -> None:
        """Wait until at least ``n`` connections have ever been accepted."""
        if self.accepted >= n:
            await trio.lowlevel.checkpoint()
        while self.accepted < n:
            await self._accepted_changed.wait()

    async def cut(self, how: CutHow = "rst") -> None:
        """Cut every live connection and wait until their sockets are closed.

        Args:
            how: ``"rst"`` resets both peers; ``"fin"`` closes both sockets in order.

        Raises:
            ValueError: ``how`` is neither.
        """
        _check_how(how)
        connections = list(self._connections)
        for connection in connections:
            connection._end(how)
        for connection in connections:
            await connection._done.wait()

    def blackhole(self) -> None:
        """Stop forwarding in both directions, on live and new connections alike.

        The sockets stay open and nothing more is read from them, so a peer that keeps
        sending eventually blocks on its full send buffer. :meth:`restore` lets the
        held bytes through.
        """
        if self._flowing.is_set():
            self._flowing = trio.Event()
        for scope in self._reads:
            scope.cancel()

    def restore(self) -> None:
        """Undo :meth:`blackhole` and set :attr:`delay` back to 0."""
        self._delay = 0.0
        self._flowing.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        self._accepted_changed.set()
        self._accepted_changed = trio.Event()
        if self.refuse:
            _arm_reset(client)
            client.socket.close()
            await trio.lowlevel.checkpoint()
            return
        connection = ProxyConnection(self, client)
        self._connections.append(connection)
        await connection._run(self.target_host, self.target_port)


@asynccontextmanager
async def open_proxy(
    target_host: str, target_port: int, *, listen_host: str = "127.0.0.1"
) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` to ``target_host:target_port`` for the ``async with`` block.

    ``async with open_proxy("127.0.0.1", port) as proxy`` listens on an ephemeral port
    (``proxy.host``, ``proxy.port``); leaving the block cancels every task of the proxy
    and closes all of its sockets. An exception from the block comes out as itself, not
    inside an exception group.

    Args:
        target_host: where to forward connections.
        target_port: where to forward connections.
        listen_host: the address to listen on; a literal address, so that there is one
            listening socket.

    Raises:
        OSError: the listening socket could not be made.
    """
    escaped: BaseException | None = None
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host=listen_host)
        address = listeners[0].socket.getsockname()
        proxy = FaultProxy(str(address[0]), int(address[1]), target_host, target_port)
        await nursery.start(functools.partial(trio.serve_listeners, proxy._handle, listeners))
        try:
            yield proxy
        except BaseException as exc:
            # Re-raised below, outside the nursery, so that users never unwrap a group.
            escaped = exc
        finally:
            nursery.cancel_scope.cancel()
    if escaped is not None:
        raise escaped

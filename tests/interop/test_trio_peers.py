"""wskit's Trio front end (``wskit.trio``) against other implementations, over real sockets on
127.0.0.1, in both directions.

- wskit.trio server, with clients from websockets (asyncio and Trio), aiohttp and
  trio-websocket;
- wskit.trio client, with servers from websockets (asyncio and Trio) and trio-websocket.

Each pair covers text and binary messages, 1 MiB messages, fragmented messages (sent by wskit
to every peer; sent by the peer when its API can: websockets can, aiohttp and trio-websocket
cannot), permessage-deflate on and off (the Sec-WebSocket-Extensions header of the handshake on
both ends, and the bytes on the wire; trio-websocket has no compression, so it is absent there
whatever wskit offers), a subprotocol, a close code and reason sent by either side, and a peer
that sends a message over wskit's ``max_size`` (1009).

Every test runs in ``trio.run`` under a deadline (no pytest-trio). The asyncio peers live on an
event loop in a background thread (:class:`AsyncioThread`); the test drives them from Trio
through ``trio.to_thread``. Each peer is wrapped in a small adapter (:class:`WebsocketsPeer`,
:class:`AiohttpPeer`, :class:`TrioWebsocketPeer`) with one interface, so that each scenario is
written once and parametrized over the peers. A server's handler never asserts: it hands a
:class:`Report` of what it saw to the test, which asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
import trio
import trio_websocket
import websockets.asyncio.client
import websockets.asyncio.server
from aiohttp import WSMsgType
from websockets.exceptions import ConnectionClosed as WebsocketsClosed

import wskit.trio
from tests.interop import (
    CLOSE_CODE,
    COMPRESSED_BOUND,
    COMPRESSIBLE_SIZE,
    COMPRESSION,
    LARGE_MAX_SIZE,
    PEER_REASON,
    SMALL_MAX_SIZE,
    STEP,
    TEST_DEADLINE,
    WSKIT_REASON,
    Payloads,
    ws_url,
)
from wskit.exceptions import ConnectionClosed, ConnectionClosedError

try:
    import websockets.trio.client as wst_client
    import websockets.trio.server as wst_server
except ImportError as exc:  # websockets too old, or a Python it no longer supports
    wst_client = wst_server = None  # type: ignore[assignment]
    WEBSOCKETS_TRIO_MISSING: str | None = f"peer websockets.trio is not available: {exc}"
else:
    WEBSOCKETS_TRIO_MISSING = None

T = TypeVar("T")

#: Commands a test sends to a server's handler (anything else is echoed).
CLOSE_PLEASE = "close please"
FRAGMENTS_PLEASE = "fragments please"
OVERSIZED_PLEASE = "oversized please"
#: Asks the wskit server to count the bytes it receives from now on: it answers once it has
#: read the counter, so the next message cannot be read before the count starts.
MARK_PLEASE = "mark please"

TEXT_FRAGMENTS = ["fragmented ", "text ✓ ", "message"]
BINARY_FRAGMENTS = [b"\x00\x01", b"\xfe\xff" * 100, b"end"]

#: The subprotocols of the subprotocol tests: the server speaks the second one offered.
SERVER_SUBPROTOCOLS = ["chat.v2"]
CLIENT_OFFER = ["chat.v1", "chat.v2"]

#: aiohttp's ``compress``: the window bits it offers, 0 for no compression.
AIOHTTP_COMPRESS = {"deflate": 15, None: 0}


def trio_run(main: Callable[[], Awaitable[T]], timeout: float = TEST_DEADLINE) -> T:
    """Run ``main`` in a new Trio run with a deadline, so that a hang fails the test."""

    async def bounded() -> T:
        with trio.fail_after(timeout):
            return await main()

    return trio.run(bounded)


async def direct(awaitable: Awaitable[T]) -> T:
    """The runner of a peer on Trio's own loop: await the call right here."""
    with trio.fail_after(STEP):
        return await awaitable


async def direct_asyncio(awaitable: Awaitable[T]) -> T:
    """The runner of a peer on the asyncio thread's loop, called from that loop."""
    return await asyncio.wait_for(awaitable, STEP)


class AsyncioThread:
    """An asyncio event loop in a background thread, for the asyncio peers.

    ``await thread.run(coroutine)`` runs the coroutine on that loop and returns its result (or
    raises its exception) to the Trio task, which waits in a worker thread meanwhile.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="trio-interop-asyncio", daemon=True
        )
        self.thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = STEP) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return await trio.to_thread.run_sync(future.result, timeout, abandon_on_cancel=True)
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(STEP)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STEP)
        assert not self.thread.is_alive(), "the asyncio peers' thread did not stop"
        self.loop.close()


@pytest.fixture
def asyncio_thread() -> Iterator[AsyncioThread]:
    thread = AsyncioThread()
    yield thread
    thread.stop()


# --------------------------------------------------------------------------- peer adapters


class PeerClosed(Exception):
    """A peer's connection closed; ``code`` and ``reason`` of the Close frame it received."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"peer received {code} ({reason!r})")
        self.code = code
        self.reason = reason


Runner = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]


class WebsocketsPeer:
    """A websockets connection (asyncio or Trio, client or server side)."""

    fragments = True

    def __init__(self, ws: Any, runner: Runner = direct) -> None:
        self.ws = ws
        self.run = runner
        self.subprotocol: str | None = ws.subprotocol
        # The response the client received, or the one the server sent.
        self.extensions: str | None = ws.response.headers.get("Sec-WebSocket-Extensions")

    async def send(self, message: str | bytes) -> None:
        await self.run(self.ws.send(message))

    async def send_fragments(self, fragments: Sequence[str | bytes]) -> None:
        await self.run(self.ws.send(list(fragments)))

    async def recv(self) -> str | bytes:
        try:
            message: str | bytes = await self.run(self.ws.recv())
        except WebsocketsClosed as exc:
            rcvd = exc.rcvd
            closed = PeerClosed(1006, "") if rcvd is None else PeerClosed(rcvd.code, rcvd.reason)
            raise closed from None
        return message

    async def close(self, code: int, reason: str) -> None:
        # websockets.trio closes with aclose(); websockets.asyncio with close().
        close = getattr(self.ws, "aclose", None) or self.ws.close
        await self.run(close(code, reason))


class AiohttpPeer:
    """An aiohttp client WebSocket on the asyncio thread."""

    fragments = False  # aiohttp has no API to send a fragmented message

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, runner: Runner) -> None:
        self.ws = ws
        self.run = runner
        self.subprotocol: str | None = ws.protocol
        # aiohttp keeps the handshake's response only privately; its public ``compress``
        # (the negotiated window bits, 0 without deflate) must agree with it.
        self.extensions: str | None = ws._response.headers.get("Sec-WebSocket-Extensions")
        assert bool(ws.compress) is (self.extensions is not None)

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self.run(self.ws.send_str(message))
        else:
            await self.run(self.ws.send_bytes(message))

    async def send_fragments(self, fragments: Sequence[str | bytes]) -> None:
        raise NotImplementedError("aiohttp cannot send a fragmented message")

    async def recv(self) -> str | bytes:
        msg = await self.run(self.ws.receive(timeout=STEP))
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: str | bytes = msg.data
            return data
        if msg.type is WSMsgType.CLOSE:
            raise PeerClosed(int(msg.data), msg.extra or "")
        raise PeerClosed(self.ws.close_code or 1006, "")

    async def close(self, code: int, reason: str) -> None:
        await self.run(self.ws.close(code=code, message=reason.encode()))


class TrioWebsocketPeer:
    """A trio-websocket connection (client or server side)."""

    fragments = False  # send_message() takes str or bytes only

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.subprotocol: str | None = ws.subprotocol
        # The client's handshake_headers are the response's headers; the server sends none.
        headers = dict(ws.handshake_headers) if ws.is_client else {}
        value = headers.get(b"sec-websocket-extensions")
        self.extensions: str | None = None if value is None else value.decode()

    async def send(self, message: str | bytes) -> None:
        with trio.fail_after(STEP):
            await self.ws.send_message(message)

    async def send_fragments(self, fragments: Sequence[str | bytes]) -> None:
        raise NotImplementedError("trio-websocket cannot send a fragmented message")

    async def recv(self) -> str | bytes:
        try:
            with trio.fail_after(STEP):
                return await self.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise PeerClosed(exc.reason.code, exc.reason.reason or "") from None

    async def close(self, code: int, reason: str) -> None:
        with trio.fail_after(STEP):
            await self.ws.aclose(code, reason)


Peer = WebsocketsPeer | AiohttpPeer | TrioWebsocketPeer


# --------------------------------------------------------------------------- peer clients


@contextlib.asynccontextmanager
async def websockets_asyncio_client(
    thread: AsyncioThread,
    url: str,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[Peer]:
    async def open_() -> Any:
        return await websockets.asyncio.client.connect(
            url,
            compression=compression,
            subprotocols=subprotocols or None,  # type: ignore[arg-type]
            max_size=max_size,
            ping_interval=None,
        )

    ws = await thread.run(open_())
    try:
        yield WebsocketsPeer(ws, thread.run)
    finally:
        await thread.run(ws.close())


@contextlib.asynccontextmanager
async def websockets_trio_client(
    thread: AsyncioThread,
    url: str,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[Peer]:
    assert wst_client is not None
    async with wst_client.connect(
        url,
        compression=compression,
        subprotocols=subprotocols or None,  # type: ignore[arg-type]
        max_size=max_size,
        ping_interval=None,
    ) as ws:
        yield WebsocketsPeer(ws)


@contextlib.asynccontextmanager
async def aiohttp_client(
    thread: AsyncioThread,
    url: str,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[Peer]:
    async def open_() -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                url,
                protocols=subprotocols,
                compress=AIOHTTP_COMPRESS[compression],
                max_msg_size=max_size or 0,
            )
        except BaseException:
            await session.close()
            raise
        return session, ws

    async def close(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            await ws.close()
        finally:
            await session.close()

    session, ws = await thread.run(open_())
    try:
        yield AiohttpPeer(ws, thread.run)
    finally:
        await thread.run(close(session, ws))


@contextlib.asynccontextmanager
async def trio_websocket_client(
    thread: AsyncioThread,
    url: str,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[Peer]:
    # trio-websocket has no compression: it offers no extension whatever ``compression`` is.
    async with trio_websocket.open_websocket_url(
        url,
        subprotocols=subprotocols or None,
        max_message_size=max_size or 2**62,
    ) as ws:
        yield TrioWebsocketPeer(ws)
    # trio-websocket 0.12.2's client never closes its socket when the server closed first: its
    # reader task ends without closing the stream, and aclose() returns early once a close
    # reason is set. Close it here, or a ResourceWarning fails a later test.
    await trio.aclose_forcefully(ws._stream)


# --------------------------------------------------------------------------- peer servers

#: A server's handler, whatever the library: it gets the adapted connection.
PeerHandler = Callable[[Peer], Awaitable[None]]


@contextlib.asynccontextmanager
async def websockets_asyncio_server(
    thread: AsyncioThread,
    handler: PeerHandler,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[str]:
    async def ws_handler(ws: Any) -> None:
        await handler(WebsocketsPeer(ws, direct_asyncio))

    async def start() -> Any:
        return await websockets.asyncio.server.serve(
            ws_handler,
            "127.0.0.1",
            0,
            compression=compression,
            subprotocols=subprotocols or None,  # type: ignore[arg-type]
            max_size=max_size,
            ping_interval=None,
        )

    async def stop(server: Any) -> None:
        server.close()
        await server.wait_closed()

    server = await thread.run(start())
    try:
        yield ws_url(server.sockets[0].getsockname()[1])
    finally:
        await thread.run(stop(server))


@contextlib.asynccontextmanager
async def websockets_trio_server(
    thread: AsyncioThread,
    handler: PeerHandler,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[str]:
    assert wst_server is not None
    serve = wst_server.serve

    async def ws_handler(ws: Any) -> None:
        await handler(WebsocketsPeer(ws))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                serve,
                ws_handler,
                0,
                host="127.0.0.1",
                compression=compression,
                subprotocols=subprotocols or None,
                max_size=max_size,
                ping_interval=None,
            )
        )
        async with server:
            yield ws_url(server.listeners[0].socket.getsockname()[1])


@contextlib.asynccontextmanager
async def trio_websocket_server(
    thread: AsyncioThread,
    handler: PeerHandler,
    *,
    compression: str | None,
    subprotocols: list[str],
    max_size: int | None,
) -> AsyncIterator[str]:
    async def tw_handler(request: trio_websocket.WebSocketRequest) -> None:
        offered = request.proposed_subprotocols
        chosen = next((p for p in subprotocols if p in offered), None)
        ws = await request.accept(subprotocol=chosen)
        await handler(TrioWebsocketPeer(ws))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket,
                tw_handler,
                "127.0.0.1",
                0,
                None,
                max_message_size=max_size or 2**62,
            )
        )
        try:
            yield ws_url(server.port)
        finally:
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- the peers


@dataclass(frozen=True)
class PeerKind:
    """One implementation, as client or server: how to open it and what it can do."""

    open: Callable[..., AbstractAsyncContextManager[Any]]
    #: It speaks permessage-deflate.
    deflate: bool
    #: It can send a fragmented message.
    fragments: bool


def websockets_trio_param(kind: PeerKind) -> Any:
    return pytest.param(
        kind,
        id="websockets-trio",
        marks=pytest.mark.skipif(
            WEBSOCKETS_TRIO_MISSING is not None, reason=WEBSOCKETS_TRIO_MISSING or ""
        ),
    )


CLIENT_PEERS = [
    pytest.param(PeerKind(websockets_asyncio_client, True, True), id="websockets-asyncio"),
    websockets_trio_param(PeerKind(websockets_trio_client, True, True)),
    pytest.param(PeerKind(aiohttp_client, True, False), id="aiohttp"),
    pytest.param(PeerKind(trio_websocket_client, False, False), id="trio-websocket"),
]

SERVER_PEERS = [
    pytest.param(PeerKind(websockets_asyncio_server, True, True), id="websockets-asyncio"),
    websockets_trio_param(PeerKind(websockets_trio_server, True, True)),
    pytest.param(PeerKind(trio_websocket_server, False, False), id="trio-websocket"),
]


# --------------------------------------------------------------------------- handlers


@dataclass
class Report:
    """What one server-side connection saw, handed to the test."""

    subprotocol: str | None = None
    #: Sec-WebSocket-Extensions of the request (wskit server only) and of the response.
    offered: str | None = None
    negotiated: str | None = None
    #: (message length, bytes received for it) of each message after MARK_PLEASE (wskit server).
    wire: list[tuple[int, int]] = field(default_factory=list)
    #: Code and reason of the Close frame the server received.
    close: tuple[int | None, str | None] | None = None
    #: What ended the handler's receive loop, if it was not a close it asked for.
    error: BaseException | None = None


async def next_report(reports: queue.Queue[Report]) -> Report:
    """The next report of a server handler (from any thread)."""
    return await trio.to_thread.run_sync(reports.get, True, STEP, abandon_on_cancel=True)


def wskit_handler(
    reports: queue.Queue[Report],
) -> Callable[[wskit.trio.WebSocketServerConnection], Awaitable[None]]:
    """The wskit.trio server's handler: echo, and obey the commands."""

    async def handler(ws: wskit.trio.WebSocketServerConnection) -> None:
        report = Report(
            subprotocol=ws.subprotocol,
            offered=ws.request.headers.get("Sec-WebSocket-Extensions"),
            negotiated=ws.response.headers.get("Sec-WebSocket-Extensions"),  # type: ignore[union-attr]
        )
        mark: int | None = None
        try:
            while True:
                message = await ws.recv()
                if message == CLOSE_PLEASE:
                    await ws.aclose(CLOSE_CODE, WSKIT_REASON)
                    break
                if message == FRAGMENTS_PLEASE:
                    await ws.send(TEXT_FRAGMENTS)
                    await ws.send(BINARY_FRAGMENTS)
                    continue
                if message == MARK_PLEASE:
                    mark = ws.statistics().bytes_received
                elif mark is not None:
                    report.wire.append((len(message), ws.statistics().bytes_received - mark))
                    mark = None
                await ws.send(message)
        except ConnectionClosed as exc:
            report.error = exc
        finally:
            report.close = (ws.close_code, ws.close_reason)
            reports.put(report)

    return handler


def peer_handler(reports: queue.Queue[Report], oversized: str | bytes) -> PeerHandler:
    """The peer servers' handler, on whatever loop the peer runs: echo, and obey."""

    async def handler(peer: Peer) -> None:
        report = Report(subprotocol=peer.subprotocol, negotiated=peer.extensions)
        try:
            while True:
                message = await peer.recv()
                if message == CLOSE_PLEASE:
                    await peer.close(CLOSE_CODE, PEER_REASON)
                    break
                if message == FRAGMENTS_PLEASE:
                    await peer.send_fragments(TEXT_FRAGMENTS)
                    await peer.send_fragments(BINARY_FRAGMENTS)
                elif message == OVERSIZED_PLEASE:
                    await peer.send(oversized)
                else:
                    await peer.send(message)
        except PeerClosed as exc:
            report.close = (exc.code, exc.reason)
        except Exception as exc:
            report.error = exc
        finally:
            reports.put(report)

    return handler


def assert_negotiated(header: str | None, expected: bool) -> None:
    """``header`` is a Sec-WebSocket-Extensions header agreeing on deflate, or None."""
    if expected:
        assert header is not None and header.startswith("permessage-deflate"), header
    else:
        assert header is None, header


async def recv(ws: wskit.trio.Connection) -> str | bytes:
    with trio.fail_after(STEP):
        return await ws.recv()


def wskit_serve(reports: queue.Queue[Report], **kwargs: Any) -> wskit.trio.serve:
    kwargs.setdefault("ping_interval", None)
    return wskit.trio.serve(wskit_handler(reports), "127.0.0.1", 0, **kwargs)


# --------------------------------------------------------------------------- wskit server


@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("peer", CLIENT_PEERS)
def test_wskit_server_messages(
    peer: PeerKind, compression: str | None, payloads: Payloads, asyncio_thread: AsyncioThread
) -> None:
    deflate = compression is not None and peer.deflate
    echoed = [payloads.text, payloads.binary, payloads.text_1mib, payloads.binary_1mib]

    async def main() -> Report:
        reports: queue.Queue[Report] = queue.Queue()
        async with wskit_serve(reports, compression=compression, max_size=LARGE_MAX_SIZE) as server:
            async with peer.open(
                asyncio_thread,
                ws_url(server.port),
                compression=compression,
                subprotocols=[],
                max_size=LARGE_MAX_SIZE,
            ) as client:
                assert_negotiated(client.extensions, deflate)
                for message in echoed:
                    await client.send(message)
                    assert await client.recv() == message
                if peer.fragments:
                    await client.send_fragments(TEXT_FRAGMENTS)
                    assert await client.recv() == "".join(TEXT_FRAGMENTS)
                await client.send(FRAGMENTS_PLEASE)
                assert await client.recv() == "".join(TEXT_FRAGMENTS)
                assert await client.recv() == b"".join(BINARY_FRAGMENTS)
                await client.send(MARK_PLEASE)
                assert await client.recv() == MARK_PLEASE
                await client.send(payloads.compressible)
                assert await client.recv() == payloads.compressible
                await client.close(1000, "")
            return await next_report(reports)

    report = trio_run(main)
    assert_negotiated(report.negotiated, deflate)
    if not peer.deflate:
        assert report.offered is None  # the peer did not even offer it
    assert report.close == (1000, "")
    ((size, wire),) = report.wire
    assert size == COMPRESSIBLE_SIZE
    assert wire < COMPRESSED_BOUND if deflate else wire > COMPRESSIBLE_SIZE


@pytest.mark.parametrize("peer", CLIENT_PEERS)
def test_wskit_server_subprotocol_and_close_from_each_side(
    peer: PeerKind, asyncio_thread: AsyncioThread
) -> None:
    async def main() -> tuple[Report, Report]:
        reports: queue.Queue[Report] = queue.Queue()
        async with wskit_serve(reports, subprotocols=SERVER_SUBPROTOCOLS) as server:
            url = ws_url(server.port)
            options = {"compression": None, "max_size": None}
            async with peer.open(
                asyncio_thread, url, subprotocols=CLIENT_OFFER, **options
            ) as client:
                assert client.subprotocol == "chat.v2"
                await client.send(CLOSE_PLEASE)
                with pytest.raises(PeerClosed) as info:
                    await client.recv()
                assert (info.value.code, info.value.reason) == (CLOSE_CODE, WSKIT_REASON)
            first = await next_report(reports)
            # A client that offers no subprotocol is served without one.
            async with peer.open(asyncio_thread, url, subprotocols=[], **options) as client:
                assert client.subprotocol is None
                await client.send("wait")
                assert await client.recv() == "wait"
                await client.close(CLOSE_CODE, PEER_REASON)
            second = await next_report(reports)
        return first, second

    first, second = trio_run(main)
    assert first.subprotocol == "chat.v2"
    assert second.subprotocol is None
    assert second.close == (CLOSE_CODE, PEER_REASON)
    assert isinstance(second.error, ConnectionClosedError)


@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("peer", CLIENT_PEERS)
def test_wskit_server_closes_an_oversized_message_with_1009(
    peer: PeerKind, compression: str | None, payloads: Payloads, asyncio_thread: AsyncioThread
) -> None:
    deflate = compression is not None and peer.deflate

    async def main() -> tuple[int, Report]:
        reports: queue.Queue[Report] = queue.Queue()
        async with wskit_serve(reports, compression=compression, max_size=SMALL_MAX_SIZE) as server:
            async with peer.open(
                asyncio_thread,
                ws_url(server.port),
                compression=compression,
                subprotocols=[],
                max_size=None,
            ) as client:
                assert_negotiated(client.extensions, deflate)
                await client.send(payloads.oversized("deflate" if deflate else None))
                with pytest.raises(PeerClosed) as info:
                    await client.recv()
            return info.value.code, await next_report(reports)

    code, report = trio_run(main)
    assert code == 1009
    assert isinstance(report.error, ConnectionClosedError)
    assert report.error.sent_code == 1009
    assert report.wire == []  # nothing was echoed


# --------------------------------------------------------------------------- wskit client


@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("peer", SERVER_PEERS)
def test_wskit_client_messages(
    peer: PeerKind, compression: str | None, payloads: Payloads, asyncio_thread: AsyncioThread
) -> None:
    deflate = compression is not None and peer.deflate
    echoed = [payloads.text, payloads.binary, payloads.text_1mib, payloads.binary_1mib]

    async def main() -> tuple[str | None, int, Report]:
        reports: queue.Queue[Report] = queue.Queue()
        async with (
            peer.open(
                asyncio_thread,
                peer_handler(reports, b""),
                compression=compression,
                subprotocols=[],
                max_size=LARGE_MAX_SIZE,
            ) as url,
            wskit.trio.connect(
                url, compression=compression, max_size=LARGE_MAX_SIZE, ping_interval=None
            ) as ws,
        ):
            header = ws.response.headers.get("Sec-WebSocket-Extensions")  # type: ignore[union-attr]
            for message in echoed:
                await ws.send(message)
                assert await recv(ws) == message
            await ws.send(TEXT_FRAGMENTS)
            assert await recv(ws) == "".join(TEXT_FRAGMENTS)
            await ws.send(BINARY_FRAGMENTS)
            assert await recv(ws) == b"".join(BINARY_FRAGMENTS)
            if peer.fragments:
                await ws.send(FRAGMENTS_PLEASE)
                assert await recv(ws) == "".join(TEXT_FRAGMENTS)
                assert await recv(ws) == b"".join(BINARY_FRAGMENTS)
            before = ws.statistics().bytes_sent
            await ws.send(payloads.compressible)
            assert await recv(ws) == payloads.compressible
            wire = ws.statistics().bytes_sent - before
            await ws.aclose()
            assert ws.close_code == 1000
            return header, wire, await next_report(reports)

    header, wire, report = trio_run(main)
    assert_negotiated(header, deflate)
    if peer.deflate:
        assert report.negotiated == header  # the response the server sent
    assert wire < COMPRESSED_BOUND if deflate else wire > COMPRESSIBLE_SIZE
    assert report.close is not None and report.close[0] == 1000
    assert report.error is None


@pytest.mark.parametrize("peer", SERVER_PEERS)
def test_wskit_client_subprotocol_and_close_from_each_side(
    peer: PeerKind, asyncio_thread: AsyncioThread
) -> None:
    async def main() -> tuple[Report, Report]:
        reports: queue.Queue[Report] = queue.Queue()
        async with peer.open(
            asyncio_thread,
            peer_handler(reports, b""),
            compression=None,
            subprotocols=SERVER_SUBPROTOCOLS,
            max_size=None,
        ) as url:
            async with wskit.trio.connect(url, subprotocols=CLIENT_OFFER) as ws:
                assert ws.subprotocol == "chat.v2"
                await ws.send(CLOSE_PLEASE)
                with pytest.raises(ConnectionClosedError) as info:
                    await recv(ws)
                assert (info.value.code, info.value.reason) == (CLOSE_CODE, PEER_REASON)
                assert (ws.close_code, ws.close_reason) == (CLOSE_CODE, PEER_REASON)
            first = await next_report(reports)
            # websockets refuses a client that offers none of its subprotocols: offer one.
            async with wskit.trio.connect(url, subprotocols=SERVER_SUBPROTOCOLS) as ws:
                await ws.send("wait")
                assert await recv(ws) == "wait"
                with trio.fail_after(STEP):
                    await ws.aclose(CLOSE_CODE, WSKIT_REASON)
            second = await next_report(reports)
        return first, second

    first, second = trio_run(main)
    assert first.subprotocol == "chat.v2"
    assert second.close == (CLOSE_CODE, WSKIT_REASON)


@pytest.mark.parametrize("compression", COMPRESSION)
@pytest.mark.parametrize("peer", SERVER_PEERS)
def test_wskit_client_closes_on_an_oversized_message_with_1009(
    peer: PeerKind, compression: str | None, payloads: Payloads, asyncio_thread: AsyncioThread
) -> None:
    deflate = compression is not None and peer.deflate

    async def main() -> tuple[ConnectionClosedError, Report]:
        reports: queue.Queue[Report] = queue.Queue()
        oversized = payloads.oversized("deflate" if deflate else None)
        async with (
            peer.open(
                asyncio_thread,
                peer_handler(reports, oversized),
                compression=compression,
                subprotocols=[],
                max_size=None,
            ) as url,
            wskit.trio.connect(url, compression=compression, max_size=SMALL_MAX_SIZE) as ws,
        ):
            assert_negotiated(ws.response.headers.get("Sec-WebSocket-Extensions"), deflate)  # type: ignore[union-attr]
            await ws.send(OVERSIZED_PLEASE)
            with pytest.raises(ConnectionClosedError) as info:
                await recv(ws)
            return info.value, await next_report(reports)

    error, report = trio_run(main)
    assert error.sent_code == 1009
    assert report.close is not None and report.close[0] == 1009

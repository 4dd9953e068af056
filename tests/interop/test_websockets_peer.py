"""wskit against websockets (>= 14, the ``websockets.asyncio`` API), in both directions.

The first half runs a wskit server with a websockets client, the second half a websockets
server with a wskit client. Each half covers text and binary messages, 1 MiB messages,
fragmented messages both ways, permessage-deflate on and off (the negotiated header on both
ends and the bytes on the wire), subprotocols, a close code and reason sent by either side,
and a peer that sends a message over wskit's ``max_size`` (1009 seen on both ends).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect as peer_connect
from websockets.asyncio.server import ServerConnection as PeerServerConnection
from websockets.asyncio.server import serve as peer_serve
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.exceptions import ConnectionClosedError as PeerClosedError
from websockets.typing import Subprotocol

import wskit.asyncio
from tests.interop import (
    CLOSE_CODE,
    COMPRESSED_BOUND,
    COMPRESSIBLE_SIZE,
    COMPRESSION,
    LARGE_MAX_SIZE,
    PEER_REASON,
    SMALL_MAX_SIZE,
    WSKIT_REASON,
    Payloads,
    Seen,
    recv_error,
    step,
    ws_url,
)
from wskit.asyncio import ConnectionStatistics, WebSocketServerConnection
from wskit.exceptions import ConnectionClosedError, PayloadTooBig

Run = Callable[..., Any]

TEXT_FRAGMENTS = ["fragmented ", "text ✓ ", "message"]
BINARY_FRAGMENTS = [b"\x00\x01", b"\xfe\xff" * 100, b"end"]

#: (server compression, client compression): permessage-deflate is used only when both want it.
NEGOTIATION = [
    pytest.param("deflate", "deflate", id="both"),
    pytest.param("deflate", None, id="server-only"),
    pytest.param(None, "deflate", id="client-only"),
    pytest.param(None, None, id="neither"),
]

#: (server subprotocols, client offer, agreed subprotocol).
SUBPROTOCOLS = [
    pytest.param(["chat.v2"], ["chat.v1", "chat.v2"], "chat.v2", id="one-in-common"),
    pytest.param(["chat.v2", "chat.v1"], ["chat.v1"], "chat.v1", id="server-lists-two"),
    pytest.param([], ["chat.v1"], None, id="server-speaks-none"),
]


async def wskit_echo(ws: WebSocketServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def peer_echo(ws: PeerServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@contextlib.asynccontextmanager
async def websockets_server(handler: Any, **kwargs: Any) -> AsyncIterator[int]:
    """A websockets server on a free port of 127.0.0.1; yields the port."""
    async with peer_serve(handler, "127.0.0.1", 0, **kwargs) as server:
        yield server.sockets[0].getsockname()[1]


def assert_deflate_header(value: str | None, negotiated: bool) -> None:
    """``value`` is a Sec-WebSocket-Extensions response header that agrees on deflate, or None."""
    if negotiated:
        assert value is not None
        assert value.split(";")[0].strip() == "permessage-deflate"
    else:
        assert value is None


def assert_wire_size(stats: ConnectionStatistics, negotiated: bool) -> None:
    """One compressible message went each way: deflate shrinks it, or it crosses whole."""
    for wire in (stats.bytes_received, stats.bytes_sent):
        if negotiated:
            assert wire < COMPRESSED_BOUND
        else:
            assert wire > COMPRESSIBLE_SIZE


# ---------------------------------------------------------------- wskit server, websockets client


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_text_and_binary(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def main() -> None:
        async with (
            wskit.asyncio.serve(wskit_echo, "127.0.0.1", 0, compression=compression) as server,
            peer_connect(ws_url(server.port), compression=compression) as client,
        ):
            await client.send(payloads.text)
            reply = await step(client.recv())
            assert isinstance(reply, str)
            assert reply == payloads.text
            await client.send(payloads.binary)
            reply = await step(client.recv())
            assert isinstance(reply, bytes)
            assert reply == payloads.binary

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_1mib_messages(run: Run, payloads: Payloads, compression: str | None) -> None:
    async def main() -> None:
        async with (
            wskit.asyncio.serve(
                wskit_echo, "127.0.0.1", 0, compression=compression, max_size=LARGE_MAX_SIZE
            ) as server,
            peer_connect(
                ws_url(server.port), compression=compression, max_size=LARGE_MAX_SIZE
            ) as client,
        ):
            await client.send(payloads.text_1mib)
            assert await step(client.recv()) == payloads.text_1mib
            await client.send(payloads.binary_1mib)
            assert await step(client.recv()) == payloads.binary_1mib

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_fragmented_messages(run: Run, compression: str | None) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, Any]:
        text = await ws.recv()
        data = await ws.recv()
        await ws.send(TEXT_FRAGMENTS)
        await ws.send(iter(BINARY_FRAGMENTS))
        await ws.send(TEXT_FRAGMENTS)
        return text, data

    async def main() -> None:
        seen: Seen[tuple[Any, Any]] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body), "127.0.0.1", 0, compression=compression
            ) as server,
            peer_connect(ws_url(server.port), compression=compression) as client,
        ):
            # websockets sends an iterable as one fragmented message, a frame per item.
            await client.send(TEXT_FRAGMENTS)
            await client.send(BINARY_FRAGMENTS)
            # recv_streaming() yields a frame at a time: wskit sent a frame per item (and
            # possibly an empty final frame), and websockets reassembles them in recv().
            text_frames = [f async for f in client.recv_streaming()]
            binary_frames = [f async for f in client.recv_streaming()]
            assert [f for f in text_frames if f] == TEXT_FRAGMENTS
            assert [f for f in binary_frames if f] == BINARY_FRAGMENTS
            assert await step(client.recv()) == "".join(TEXT_FRAGMENTS)
            text, data = await seen.result()
        assert text == "".join(TEXT_FRAGMENTS)
        assert data == b"".join(BINARY_FRAGMENTS)

    run(main)


@pytest.mark.parametrize(("server_compression", "client_compression"), NEGOTIATION)
def test_wskit_server_compression_negotiation(
    run: Run, payloads: Payloads, server_compression: str | None, client_compression: str | None
) -> None:
    negotiated = server_compression is not None and client_compression is not None

    async def body(ws: WebSocketServerConnection) -> tuple[str | None, ConnectionStatistics]:
        await ws.send(await ws.recv())
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions"), ws.statistics()

    async def main() -> None:
        seen: Seen[tuple[str | None, ConnectionStatistics]] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body), "127.0.0.1", 0, compression=server_compression
            ) as server,
            peer_connect(ws_url(server.port), compression=client_compression) as client,
        ):
            assert client.response is not None
            client_header = client.response.headers.get("Sec-WebSocket-Extensions")
            assert_deflate_header(client_header, negotiated)
            names = [extension.name for extension in client.protocol.extensions]
            assert names == (["permessage-deflate"] if negotiated else [])
            await client.send(payloads.compressible)
            assert await step(client.recv()) == payloads.compressible
            server_header, stats = await seen.result()
        assert server_header == client_header
        # The totals include the opening handshake, a few hundred bytes.
        assert_wire_size(stats, negotiated)

    run(main)


@pytest.mark.parametrize(("server_protocols", "offer", "agreed"), SUBPROTOCOLS)
def test_wskit_server_subprotocols(
    run: Run, server_protocols: list[str], offer: list[str], agreed: str | None
) -> None:
    async def body(ws: WebSocketServerConnection) -> str | None:
        return ws.subprotocol

    async def main() -> None:
        seen: Seen[str | None] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body), "127.0.0.1", 0, subprotocols=server_protocols
            ) as server,
            peer_connect(
                ws_url(server.port), subprotocols=[Subprotocol(p) for p in offer]
            ) as client,
        ):
            assert client.subprotocol == agreed
            assert await seen.result() == agreed

    run(main)


def test_wskit_server_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        await ws.close(CLOSE_CODE, WSKIT_REASON)
        exc = await recv_error(ws)
        return ws.close_code, ws.close_reason, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with (
            wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server,
            peer_connect(ws_url(server.port)) as client,
        ):
            with pytest.raises(PeerClosedError) as info:
                await step(client.recv())
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (CLOSE_CODE, WSKIT_REASON)
            assert (client.close_code, client.close_reason) == (CLOSE_CODE, WSKIT_REASON)
            code, reason, exc = await seen.result()
        # websockets echoes the whole Close frame, reason included.
        assert (code, reason) == (CLOSE_CODE, WSKIT_REASON)
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, WSKIT_REASON, CLOSE_CODE)

    run(main)


def test_websockets_client_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        exc = await recv_error(ws)
        await ws.wait_closed()
        return ws.close_code, ws.close_reason, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server:
            async with peer_connect(ws_url(server.port)) as client:
                await step(client.close(CLOSE_CODE, PEER_REASON))
                # wskit echoes the code (RFC 6455 5.5.1).
                assert client.close_code == CLOSE_CODE
            code, reason, exc = await seen.result()
        assert (code, reason) == (CLOSE_CODE, PEER_REASON)
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, PEER_REASON, CLOSE_CODE)

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_websockets_client_sends_over_max_size(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        first = await ws.recv()
        exc = await recv_error(ws)
        return first, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body),
                "127.0.0.1",
                0,
                compression=compression,
                max_size=SMALL_MAX_SIZE,
            ) as server,
            peer_connect(ws_url(server.port), compression=compression) as client,
        ):
            await client.send("x" * SMALL_MAX_SIZE)  # at the limit: accepted
            await client.send(payloads.oversized(compression))
            with pytest.raises(PeerClosedError) as info:
                await step(client.recv())
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1009
            assert client.close_code == 1009
            first, exc = await seen.result()
        assert first == "x" * SMALL_MAX_SIZE
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent_code == 1009
        assert isinstance(exc.__cause__, PayloadTooBig)

    run(main)


def test_wskit_server_ping_pong(run: Run) -> None:
    """Pings both ways: wskit answers websockets' ping, websockets answers wskit's."""

    async def body(ws: WebSocketServerConnection) -> float:
        await ws.recv()  # the client's ping was answered
        pong = await ws.ping(b"from wskit")
        return await pong

    async def main() -> None:
        seen: Seen[float] = Seen()
        async with (
            wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server,
            peer_connect(ws_url(server.port)) as client,
        ):
            pong = await client.ping(b"from websockets")
            assert await step(pong) >= 0
            await client.send("your turn")
            assert await seen.result() >= 0

    run(main)


# ---------------------------------------------------------------- websockets server, wskit client


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_text_and_binary(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def main() -> None:
        async with (
            websockets_server(peer_echo, compression=compression) as port,
            wskit.asyncio.connect(ws_url(port), compression=compression) as client,
        ):
            await client.send(payloads.text)
            reply = await step(client.recv())
            assert isinstance(reply, str)
            assert reply == payloads.text
            await client.send(payloads.binary)
            reply = await step(client.recv())
            assert isinstance(reply, bytes)
            assert reply == payloads.binary

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_1mib_messages(run: Run, payloads: Payloads, compression: str | None) -> None:
    async def main() -> None:
        async with (
            websockets_server(peer_echo, compression=compression, max_size=LARGE_MAX_SIZE) as port,
            wskit.asyncio.connect(
                ws_url(port), compression=compression, max_size=LARGE_MAX_SIZE
            ) as client,
        ):
            await client.send(payloads.text_1mib)
            assert await step(client.recv()) == payloads.text_1mib
            await client.send(payloads.binary_1mib)
            assert await step(client.recv()) == payloads.binary_1mib

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_fragmented_messages(run: Run, compression: str | None) -> None:
    async def body(ws: PeerServerConnection) -> tuple[list[Any], list[Any]]:
        text_frames = [f async for f in ws.recv_streaming()]
        binary_frames = [f async for f in ws.recv_streaming()]
        await ws.send(TEXT_FRAGMENTS)
        await ws.send(BINARY_FRAGMENTS)
        return text_frames, binary_frames

    async def main() -> None:
        seen: Seen[tuple[list[Any], list[Any]]] = Seen()
        async with (
            websockets_server(seen.handler(body), compression=compression) as port,
            wskit.asyncio.connect(ws_url(port), compression=compression) as client,
        ):
            await client.send(TEXT_FRAGMENTS)
            await client.send(iter(BINARY_FRAGMENTS))
            # wskit reassembles websockets' fragments into one message each.
            assert await step(client.recv()) == "".join(TEXT_FRAGMENTS)
            assert await step(client.recv()) == b"".join(BINARY_FRAGMENTS)
            text_frames, binary_frames = await seen.result()
        # websockets saw a frame per item (and possibly an empty final frame).
        assert [f for f in text_frames if f] == TEXT_FRAGMENTS
        assert [f for f in binary_frames if f] == BINARY_FRAGMENTS

    run(main)


@pytest.mark.parametrize(("server_compression", "client_compression"), NEGOTIATION)
def test_wskit_client_compression_negotiation(
    run: Run, payloads: Payloads, server_compression: str | None, client_compression: str | None
) -> None:
    negotiated = server_compression is not None and client_compression is not None

    async def body(ws: PeerServerConnection) -> tuple[str | None, list[str]]:
        await ws.send(await ws.recv())
        assert ws.response is not None
        names = [str(extension.name) for extension in ws.protocol.extensions]
        return ws.response.headers.get("Sec-WebSocket-Extensions"), names

    async def main() -> None:
        seen: Seen[tuple[str | None, list[str]]] = Seen()
        async with (
            websockets_server(seen.handler(body), compression=server_compression) as port,
            wskit.asyncio.connect(ws_url(port), compression=client_compression) as client,
        ):
            assert client.response is not None
            client_header = client.response.headers.get("Sec-WebSocket-Extensions")
            assert_deflate_header(client_header, negotiated)
            await client.send(payloads.compressible)
            assert await step(client.recv()) == payloads.compressible
            assert_wire_size(client.statistics(), negotiated)
            server_header, names = await seen.result()
        assert server_header == client_header
        assert names == (["permessage-deflate"] if negotiated else [])

    run(main)


@pytest.mark.parametrize(("server_protocols", "offer", "agreed"), SUBPROTOCOLS)
def test_wskit_client_subprotocols(
    run: Run, server_protocols: list[str], offer: list[str], agreed: str | None
) -> None:
    async def body(ws: PeerServerConnection) -> str | None:
        return ws.subprotocol

    async def main() -> None:
        seen: Seen[str | None] = Seen()
        async with (
            websockets_server(seen.handler(body), subprotocols=server_protocols or None) as port,
            wskit.asyncio.connect(ws_url(port), subprotocols=offer) as client,
        ):
            assert client.subprotocol == agreed
            assert await seen.result() == agreed

    run(main)


def test_wskit_client_ping_pong(run: Run) -> None:
    """Pings both ways: websockets answers wskit's ping, wskit answers websockets'."""

    async def body(ws: PeerServerConnection) -> float:
        await ws.recv()  # the client's ping was answered
        pong = await ws.ping(b"from websockets")
        return await pong

    async def main() -> None:
        seen: Seen[float] = Seen()
        async with (
            websockets_server(seen.handler(body)) as port,
            wskit.asyncio.connect(ws_url(port)) as client,
        ):
            pong = await client.ping(b"from wskit")
            assert await step(pong) >= 0
            assert client.latency is not None
            await client.send("your turn")
            assert await seen.result() >= 0

    run(main)


def test_wskit_client_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: PeerServerConnection) -> tuple[Any, ...]:
        exc = await recv_error(ws)
        return exc, ws.close_code, ws.close_reason

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with websockets_server(seen.handler(body)) as port:
            client = await wskit.asyncio.connect(ws_url(port))
            await step(client.close(CLOSE_CODE, WSKIT_REASON))
            # websockets echoes the whole Close frame, reason included.
            assert (client.close_code, client.close_reason) == (CLOSE_CODE, WSKIT_REASON)
            with pytest.raises(ConnectionClosedError) as info:
                await client.recv()
            assert info.value.sent_code == CLOSE_CODE
            exc, code, reason = await seen.result()
        assert isinstance(exc, PeerClosed)
        assert exc.rcvd is not None
        assert (exc.rcvd.code, exc.rcvd.reason) == (CLOSE_CODE, WSKIT_REASON)
        assert (code, reason) == (CLOSE_CODE, WSKIT_REASON)

    run(main)


def test_websockets_server_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: PeerServerConnection) -> tuple[Any, ...]:
        await ws.close(CLOSE_CODE, PEER_REASON)
        return ws.close_code, ws.close_reason

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with (
            websockets_server(seen.handler(body)) as port,
            wskit.asyncio.connect(ws_url(port)) as client,
        ):
            with pytest.raises(ConnectionClosedError) as info:
                await step(client.recv())
            exc = info.value
            assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, PEER_REASON, CLOSE_CODE)
            await step(client.wait_closed())
            assert (client.close_code, client.close_reason) == (CLOSE_CODE, PEER_REASON)
            code, _ = await seen.result()
        # wskit echoes the code (RFC 6455 5.5.1).
        assert code == CLOSE_CODE

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_websockets_server_sends_over_max_size(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def body(ws: PeerServerConnection) -> Any:
        await ws.send("x" * SMALL_MAX_SIZE)  # at the limit: accepted
        await ws.send(payloads.oversized(compression))
        return await recv_error(ws)

    async def main() -> None:
        seen: Seen[Any] = Seen()
        async with (
            websockets_server(seen.handler(body), compression=compression) as port,
            wskit.asyncio.connect(
                ws_url(port), compression=compression, max_size=SMALL_MAX_SIZE
            ) as client,
        ):
            assert await step(client.recv()) == "x" * SMALL_MAX_SIZE
            with pytest.raises(ConnectionClosedError) as info:
                await step(client.recv())
            assert info.value.sent_code == 1009
            assert isinstance(info.value.__cause__, PayloadTooBig)
            exc = await seen.result()
        assert isinstance(exc, PeerClosed)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1009

    run(main)

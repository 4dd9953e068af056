"""wskit against aiohttp, in both directions.

The first half runs a wskit server with ``aiohttp.ClientSession.ws_connect``, the second half
an ``aiohttp.web`` application whose handler uses ``WebSocketResponse``, with a wskit client.
Each half covers text and binary messages, 1 MiB messages, fragmented messages sent by wskit
(aiohttp has no API to send one), permessage-deflate on and off (aiohttp's ``compress=15`` /
``compress=0``, the negotiated header and the bytes on the wire), subprotocols
(``protocols=``), a close code and reason sent by either side, and a peer that sends a message
over wskit's ``max_size`` (1009 seen on both ends).

aiohttp does not echo the code of a Close frame it receives: it answers with 1000. RFC 6455
5.5.1 only says an endpoint "typically echos the status code it received", so where aiohttp
answers a close started by wskit, either code is accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

import wskit.asyncio
from tests.interop import (
    CLOSE_CODE,
    COMPRESSED_BOUND,
    COMPRESSIBLE_SIZE,
    COMPRESSION,
    LARGE_MAX_SIZE,
    PEER_REASON,
    SMALL_MAX_SIZE,
    STEP,
    WSKIT_REASON,
    Payloads,
    Seen,
    recv_error,
    step,
    ws_url,
)
from wskit.asyncio import ConnectionStatistics, WebSocketServerConnection
from wskit.exceptions import ConnectionClosedError, PayloadTooBig

if TYPE_CHECKING:
    AiohttpWebSocket = aiohttp.ClientWebSocketResponse[Any] | web.WebSocketResponse[Any]

Run = Callable[..., Any]

#: aiohttp's ``compress``: the window bits it offers or accepts, 0 for no compression.
AIOHTTP_COMPRESS = {"deflate": 15, None: 0}

TEXT_FRAGMENTS = ["fragmented ", "text ✓ ", "message"]
BINARY_FRAGMENTS = [b"\x00\x01", b"\xfe\xff" * 100, b"end"]

#: The code aiohttp answers any Close frame with.
AIOHTTP_CLOSE_ANSWER = 1000

#: (wskit compression, aiohttp compression): permessage-deflate only when both want it.
NEGOTIATION = [
    pytest.param("deflate", "deflate", id="both"),
    pytest.param("deflate", None, id="wskit-only"),
    pytest.param(None, "deflate", id="aiohttp-only"),
    pytest.param(None, None, id="neither"),
]

#: (server subprotocols, client offer, agreed subprotocol).
SUBPROTOCOLS = [
    pytest.param(["chat.v2"], ["chat.v1", "chat.v2"], "chat.v2", id="one-in-common"),
    pytest.param(["chat.v2", "chat.v1"], ["chat.v1"], "chat.v1", id="server-lists-two"),
    pytest.param([], ["chat.v1"], None, id="server-speaks-none"),
]


async def receive_data(ws: AiohttpWebSocket) -> str | bytes:
    """The next message of an aiohttp WebSocket; fails on anything but text or binary."""
    msg = await ws.receive(timeout=STEP)
    assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
    data: str | bytes = msg.data
    return data


async def receive_close(ws: AiohttpWebSocket) -> tuple[int, str]:
    """Wait for the peer's Close frame; return its code and reason as aiohttp reports them."""
    msg = await ws.receive(timeout=STEP)
    assert msg.type is WSMsgType.CLOSE, msg
    return int(msg.data), msg.extra or ""


async def wskit_echo(ws: WebSocketServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def aiohttp_echo(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)


@contextlib.asynccontextmanager
async def aiohttp_client(
    url: str, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientWebSocketResponse[Any]]:
    """``ClientSession.ws_connect(url, **kwargs)``, closing the session afterwards."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url, **kwargs) as ws:
        yield ws


@contextlib.asynccontextmanager
async def aiohttp_server(
    body: Callable[[web.WebSocketResponse], Awaitable[None]], **ws_kwargs: Any
) -> AsyncIterator[int]:
    """An aiohttp application on a free port of 127.0.0.1 whose one route upgrades to a
    ``WebSocketResponse(**ws_kwargs)`` and runs ``body`` on it; yields the port."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(**ws_kwargs)
        await ws.prepare(request)
        await body(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


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


# ---------------------------------------------------------------- wskit server, aiohttp client


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_text_and_binary(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def main() -> None:
        async with (
            wskit.asyncio.serve(wskit_echo, "127.0.0.1", 0, compression=compression) as server,
            aiohttp_client(ws_url(server.port), compress=AIOHTTP_COMPRESS[compression]) as client,
        ):
            await client.send_str(payloads.text)
            reply = await receive_data(client)
            assert isinstance(reply, str)
            assert reply == payloads.text
            await client.send_bytes(payloads.binary)
            reply = await receive_data(client)
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
            aiohttp_client(
                ws_url(server.port),
                compress=AIOHTTP_COMPRESS[compression],
                max_msg_size=LARGE_MAX_SIZE,
            ) as client,
        ):
            await client.send_str(payloads.text_1mib)
            assert await receive_data(client) == payloads.text_1mib
            await client.send_bytes(payloads.binary_1mib)
            assert await receive_data(client) == payloads.binary_1mib

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_sends_fragmented_messages(run: Run, compression: str | None) -> None:
    async def body(ws: WebSocketServerConnection) -> None:
        await ws.send(TEXT_FRAGMENTS)
        await ws.send(iter(BINARY_FRAGMENTS))
        await ws.recv()

    async def main() -> None:
        seen: Seen[None] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body), "127.0.0.1", 0, compression=compression
            ) as server,
            aiohttp_client(ws_url(server.port), compress=AIOHTTP_COMPRESS[compression]) as client,
        ):
            # aiohttp reassembles each fragmented message into one.
            assert await receive_data(client) == "".join(TEXT_FRAGMENTS)
            assert await receive_data(client) == b"".join(BINARY_FRAGMENTS)
            await client.send_str("done")
            await seen.result()

    run(main)


@pytest.mark.parametrize(("wskit_compression", "aiohttp_compression"), NEGOTIATION)
def test_wskit_server_compression_negotiation(
    run: Run,
    payloads: Payloads,
    wskit_compression: str | None,
    aiohttp_compression: str | None,
) -> None:
    negotiated = wskit_compression is not None and aiohttp_compression is not None

    async def body(ws: WebSocketServerConnection) -> tuple[str | None, ConnectionStatistics]:
        await ws.send(await ws.recv())
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions"), ws.statistics()

    async def main() -> None:
        seen: Seen[tuple[str | None, ConnectionStatistics]] = Seen()
        async with (
            wskit.asyncio.serve(
                seen.handler(body), "127.0.0.1", 0, compression=wskit_compression
            ) as server,
            aiohttp_client(
                ws_url(server.port), compress=AIOHTTP_COMPRESS[aiohttp_compression]
            ) as client,
        ):
            # aiohttp's compress is the negotiated window size, 0 when deflate is off.
            assert bool(client.compress) is negotiated
            await client.send_str(payloads.compressible)
            assert await receive_data(client) == payloads.compressible
            header, stats = await seen.result()
        assert_deflate_header(header, negotiated)
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
            aiohttp_client(ws_url(server.port), protocols=offer) as client,
        ):
            assert client.protocol == agreed
            assert await seen.result() == agreed

    run(main)


def test_wskit_server_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        await ws.close(CLOSE_CODE, WSKIT_REASON)
        exc = await recv_error(ws)
        return ws.close_code, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with (
            wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server,
            aiohttp_client(ws_url(server.port)) as client,
        ):
            assert await receive_close(client) == (CLOSE_CODE, WSKIT_REASON)
            assert client.close_code == CLOSE_CODE
            code, exc = await seen.result()
        assert code in (CLOSE_CODE, AIOHTTP_CLOSE_ANSWER)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent_code == CLOSE_CODE

    run(main)


def test_aiohttp_client_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        exc = await recv_error(ws)
        await ws.wait_closed()
        return ws.close_code, ws.close_reason, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server:
            async with aiohttp_client(ws_url(server.port)) as client:
                await step(client.close(code=CLOSE_CODE, message=PEER_REASON.encode()))
                # wskit echoes the code (RFC 6455 5.5.1).
                assert client.close_code == CLOSE_CODE
            code, reason, exc = await seen.result()
        assert (code, reason) == (CLOSE_CODE, PEER_REASON)
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, PEER_REASON, CLOSE_CODE)

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_aiohttp_client_sends_over_max_size(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        first = await ws.recv()
        exc = await recv_error(ws)
        return first, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        oversized = payloads.oversized(compression)
        async with (
            wskit.asyncio.serve(
                seen.handler(body),
                "127.0.0.1",
                0,
                compression=compression,
                max_size=SMALL_MAX_SIZE,
            ) as server,
            aiohttp_client(ws_url(server.port), compress=AIOHTTP_COMPRESS[compression]) as client,
        ):
            await client.send_str("x" * SMALL_MAX_SIZE)  # at the limit: accepted
            if isinstance(oversized, str):
                await client.send_str(oversized)
            else:
                await client.send_bytes(oversized)
            code, _ = await receive_close(client)
            assert code == 1009
            assert client.close_code == 1009
            first, exc = await seen.result()
        assert first == "x" * SMALL_MAX_SIZE
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent_code == 1009
        assert isinstance(exc.__cause__, PayloadTooBig)

    run(main)


# ---------------------------------------------------------------- aiohttp server, wskit client


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_text_and_binary(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    async def main() -> None:
        async with (
            aiohttp_server(aiohttp_echo, compress=compression is not None) as port,
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
            aiohttp_server(
                aiohttp_echo, compress=compression is not None, max_msg_size=LARGE_MAX_SIZE
            ) as port,
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
def test_wskit_client_sends_fragmented_messages(run: Run, compression: str | None) -> None:
    async def main() -> None:
        async with (
            aiohttp_server(aiohttp_echo, compress=compression is not None) as port,
            wskit.asyncio.connect(ws_url(port), compression=compression) as client,
        ):
            await client.send(TEXT_FRAGMENTS)
            await client.send(iter(BINARY_FRAGMENTS))
            # aiohttp reassembled each message: its echo is the whole message.
            assert await step(client.recv()) == "".join(TEXT_FRAGMENTS)
            assert await step(client.recv()) == b"".join(BINARY_FRAGMENTS)

    run(main)


@pytest.mark.parametrize(("wskit_compression", "aiohttp_compression"), NEGOTIATION)
def test_wskit_client_compression_negotiation(
    run: Run,
    payloads: Payloads,
    wskit_compression: str | None,
    aiohttp_compression: str | None,
) -> None:
    negotiated = wskit_compression is not None and aiohttp_compression is not None

    async def body(ws: web.WebSocketResponse) -> tuple[str | None, int | bool]:
        await aiohttp_echo(ws)
        return ws.headers.get("Sec-WebSocket-Extensions"), ws.compress

    async def main() -> None:
        seen: Seen[tuple[str | None, int | bool]] = Seen()
        async with aiohttp_server(
            seen.handler(body), compress=aiohttp_compression is not None
        ) as port:
            async with wskit.asyncio.connect(ws_url(port), compression=wskit_compression) as client:
                assert client.response is not None
                client_header = client.response.headers.get("Sec-WebSocket-Extensions")
                assert_deflate_header(client_header, negotiated)
                await client.send(payloads.compressible)
                assert await step(client.recv()) == payloads.compressible
                assert_wire_size(client.statistics(), negotiated)
            server_header, compress = await seen.result()
        assert server_header == client_header
        assert bool(compress) is negotiated

    run(main)


@pytest.mark.parametrize(("server_protocols", "offer", "agreed"), SUBPROTOCOLS)
def test_wskit_client_subprotocols(
    run: Run, server_protocols: list[str], offer: list[str], agreed: str | None
) -> None:
    async def body(ws: web.WebSocketResponse) -> str | None:
        return ws.ws_protocol

    async def main() -> None:
        seen: Seen[str | None] = Seen()
        async with (
            aiohttp_server(seen.handler(body), protocols=server_protocols) as port,
            wskit.asyncio.connect(ws_url(port), subprotocols=offer) as client,
        ):
            assert client.subprotocol == agreed
            assert await seen.result() == agreed

    run(main)


def test_wskit_client_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: web.WebSocketResponse) -> tuple[int, str]:
        return await receive_close(ws)

    async def main() -> None:
        seen: Seen[tuple[int, str]] = Seen()
        async with aiohttp_server(seen.handler(body)) as port:
            client = await wskit.asyncio.connect(ws_url(port))
            await step(client.close(CLOSE_CODE, WSKIT_REASON))
            assert client.close_code in (CLOSE_CODE, AIOHTTP_CLOSE_ANSWER)
            with pytest.raises(ConnectionClosedError) as info:
                await client.recv()
            assert info.value.sent_code == CLOSE_CODE
            assert await seen.result() == (CLOSE_CODE, WSKIT_REASON)

    run(main)


def test_aiohttp_server_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: web.WebSocketResponse) -> int | None:
        await ws.close(code=CLOSE_CODE, message=PEER_REASON.encode())
        return ws.close_code

    async def main() -> None:
        seen: Seen[int | None] = Seen()
        async with (
            aiohttp_server(seen.handler(body)) as port,
            wskit.asyncio.connect(ws_url(port)) as client,
        ):
            with pytest.raises(ConnectionClosedError) as info:
                await step(client.recv())
            exc = info.value
            assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, PEER_REASON, CLOSE_CODE)
            await step(client.wait_closed())
            assert (client.close_code, client.close_reason) == (CLOSE_CODE, PEER_REASON)
            # wskit echoes the code (RFC 6455 5.5.1).
            assert await seen.result() == CLOSE_CODE

    run(main)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_aiohttp_server_sends_over_max_size(
    run: Run, payloads: Payloads, compression: str | None
) -> None:
    oversized = payloads.oversized(compression)

    async def body(ws: web.WebSocketResponse) -> tuple[int, str]:
        await ws.send_str("x" * SMALL_MAX_SIZE)  # at the limit: accepted
        if isinstance(oversized, str):
            await ws.send_str(oversized)
        else:
            await ws.send_bytes(oversized)
        return await receive_close(ws)

    async def main() -> None:
        seen: Seen[tuple[int, str]] = Seen()
        async with (
            aiohttp_server(seen.handler(body), compress=compression is not None) as port,
            wskit.asyncio.connect(
                ws_url(port), compression=compression, max_size=SMALL_MAX_SIZE
            ) as client,
        ):
            assert await step(client.recv()) == "x" * SMALL_MAX_SIZE
            with pytest.raises(ConnectionClosedError) as info:
                await step(client.recv())
            assert info.value.sent_code == 1009
            assert isinstance(info.value.__cause__, PayloadTooBig)
            code, _ = await seen.result()
        assert code == 1009

    run(main)

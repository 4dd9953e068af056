"""wskit's server against a wsproto client, driven by hand over asyncio streams.

wsproto is sans-I/O: :class:`WsprotoClient` moves its bytes over a TCP connection to a wskit
server on 127.0.0.1. Covered: the opening handshake with and without permessage-deflate
(offered by wsproto, accepted or not by wskit), a text and a binary message, a fragmented
message sent by wsproto, a compressible message whose wire size shows deflate is applied,
subprotocol negotiation, and a close with a code and a reason started by either side.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

import wskit.asyncio
from tests.interop import (
    CLOSE_CODE,
    COMPRESSED_BOUND,
    COMPRESSIBLE_SIZE,
    PEER_REASON,
    STEP,
    WSKIT_REASON,
    Payloads,
    Seen,
    recv_error,
)
from wskit.asyncio import WebSocketServerConnection
from wskit.exceptions import ConnectionClosedError

Run = Callable[..., Any]

#: Bytes read from the socket at a time.
READ_SIZE = 64 * 1024

#: (wskit server compression, wsproto offers permessage-deflate).
NEGOTIATION = [
    pytest.param("deflate", True, id="both"),
    pytest.param("deflate", False, id="wskit-only"),
    pytest.param(None, True, id="wsproto-only"),
    pytest.param(None, False, id="neither"),
]

TEXT_FRAGMENTS = ["fragmented ", "text ✓ ", "message"]


class WsprotoClient:
    """A wsproto client connection over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.eof = False

    @classmethod
    async def open(
        cls, port: int, *, deflate: bool = False, subprotocols: list[str] | None = None
    ) -> tuple[WsprotoClient, AcceptConnection]:
        """Connect and run the opening handshake; return the client and wsproto's accept event."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.send(
            Request(
                host=f"127.0.0.1:{port}",
                target="/",
                extensions=[PerMessageDeflate()] if deflate else [],
                subprotocols=subprotocols or [],
            )
        )
        event = await client.next_event()
        assert isinstance(event, AcceptConnection), event
        return client, event

    async def send(self, event: Event) -> None:
        self.writer.write(self.conn.send(event))
        await self.writer.drain()

    async def next_event(self) -> Event:
        """The next event; answers pings on the way. Raises EOFError at the end of the stream."""
        while True:
            while self.pending:
                event = self.pending.popleft()
                if isinstance(event, Ping):
                    await self.send(event.response())
                    continue
                assert not isinstance(event, RejectConnection), event
                return event
            if self.eof:
                raise EOFError("the server closed the TCP connection")
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), STEP)
            if not data:
                # Not fed to wsproto: it would report the EOF as a CloseConnection(1006) event,
                # indistinguishable here from a Close frame that carried 1006.
                self.eof = True
                continue
            self.conn.receive_data(data)
            self.pending.extend(self.conn.events())

    async def receive_message(self) -> str | bytes:
        """The next whole message, joined from the pieces wsproto hands out."""
        parts: list[Any] = []
        while True:
            event = await self.next_event()
            assert isinstance(event, (TextMessage, BytesMessage)), event
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    return "".join(parts)
                return b"".join(parts)

    async def wait_eof(self) -> None:
        """Read until the server closes TCP; fail on any other event."""
        with pytest.raises(EOFError):
            event = await self.next_event()
            raise AssertionError(f"unexpected event before EOF: {event}")
        self.writer.close()
        await self.writer.wait_closed()

    def abort(self) -> None:
        self.writer.close()


async def wskit_echo(ws: WebSocketServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.parametrize(("server_compression", "deflate"), NEGOTIATION)
def test_handshake_and_messages(
    run: Run, payloads: Payloads, server_compression: str | None, deflate: bool
) -> None:
    negotiated = server_compression is not None and deflate

    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        await wskit_echo(ws)
        assert ws.response is not None
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        return header, ws.statistics(), ws.close_code

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with wskit.asyncio.serve(
            seen.handler(body), "127.0.0.1", 0, compression=server_compression
        ) as server:
            client, accept = await WsprotoClient.open(server.port, deflate=deflate)
            try:
                names = [extension.name for extension in accept.extensions]
                assert names == (["permessage-deflate"] if negotiated else [])
                await client.send(Message(data=payloads.text))
                assert await client.receive_message() == payloads.text
                await client.send(Message(data=payloads.binary))
                assert await client.receive_message() == payloads.binary
                # A fragmented message: wskit joins the fragments into one.
                for i, fragment in enumerate(TEXT_FRAGMENTS):
                    last = i == len(TEXT_FRAGMENTS) - 1
                    await client.send(Message(data=fragment, message_finished=last))
                assert await client.receive_message() == "".join(TEXT_FRAGMENTS)
                await client.send(Message(data=payloads.compressible))
                assert await client.receive_message() == payloads.compressible
                await client.send(CloseConnection(code=1000))
                event = await client.next_event()
                assert isinstance(event, CloseConnection)
                assert event.code == 1000
                await client.wait_eof()
            finally:
                client.abort()
            header, stats, code = await seen.result()
        if negotiated:
            assert header is not None
            assert header.split(";")[0].strip() == "permessage-deflate"
        else:
            assert header is None
        assert code == 1000
        # The compressible message went both ways; every other message is small.
        small = len(payloads.text.encode()) + len(payloads.binary) + 1_000
        for wire in (stats.bytes_received, stats.bytes_sent):
            if negotiated:
                assert wire < COMPRESSED_BOUND + small
            else:
                assert wire > COMPRESSIBLE_SIZE

    run(main)


def test_subprotocol(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> str | None:
        return ws.subprotocol

    async def main() -> None:
        seen: Seen[str | None] = Seen()
        async with wskit.asyncio.serve(
            seen.handler(body), "127.0.0.1", 0, subprotocols=["chat.v2"]
        ) as server:
            client, accept = await WsprotoClient.open(
                server.port, subprotocols=["chat.v1", "chat.v2"]
            )
            try:
                assert accept.subprotocol == "chat.v2"
                assert await seen.result() == "chat.v2"
                # The handler returned: wskit closes with 1000.
                event = await client.next_event()
                assert isinstance(event, CloseConnection)
                assert event.code == 1000
                await client.send(event.response())
                await client.wait_eof()
            finally:
                client.abort()

    run(main)


def test_wsproto_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        exc = await recv_error(ws)
        await ws.wait_closed()
        return ws.close_code, ws.close_reason, exc

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server:
            client, _ = await WsprotoClient.open(server.port, deflate=True)
            try:
                await client.send(CloseConnection(code=CLOSE_CODE, reason=PEER_REASON))
                event = await client.next_event()
                # wskit echoes the code (RFC 6455 5.5.1) and then closes TCP (7.1.1).
                assert isinstance(event, CloseConnection)
                assert event.code == CLOSE_CODE
                await client.wait_eof()
            finally:
                client.abort()
            code, reason, exc = await seen.result()
        assert (code, reason) == (CLOSE_CODE, PEER_REASON)
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason, exc.sent_code) == (CLOSE_CODE, PEER_REASON, CLOSE_CODE)

    run(main)


def test_wskit_server_closes_with_code_and_reason(run: Run) -> None:
    async def body(ws: WebSocketServerConnection) -> tuple[Any, ...]:
        await ws.close(CLOSE_CODE, WSKIT_REASON)
        return ws.close_code, ws.close_reason

    async def main() -> None:
        seen: Seen[tuple[Any, ...]] = Seen()
        async with wskit.asyncio.serve(seen.handler(body), "127.0.0.1", 0) as server:
            client, _ = await WsprotoClient.open(server.port, deflate=True)
            try:
                event = await client.next_event()
                assert isinstance(event, CloseConnection)
                assert (event.code, event.reason) == (CLOSE_CODE, WSKIT_REASON)
                # wsproto's answer echoes the code and the reason.
                await client.send(event.response())
                await client.wait_eof()
            finally:
                client.abort()
            assert await seen.result() == (CLOSE_CODE, WSKIT_REASON)

    run(main)

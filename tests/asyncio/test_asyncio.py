"""The asyncio front end over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.asyncio.helpers import (
    count_writes,
    flood_with_pings,
    open_raw,
    open_silent,
    ping_and_read_until_answered,
    read_response,
    send_request,
    small_buffers,
    wait_until,
)
from wskit.asyncio import (
    BroadcastResult,
    Connection,
    WebSocketServerConnection,
    accept,
    broadcast,
    connect,
    serve,
)
from wskit.asyncio.connection import READ_BUFFER_SIZE
from wskit.core import ClientConnection, Request, Response, ServerConnection, State
from wskit.core.connection import encode_message
from wskit.core.events import Ping, Text
from wskit.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    LocalProtocolError,
)

#: Bound on every wait of the tests that could otherwise hang (seconds).
WAIT = 10.0


async def echo(ws: Connection) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: object, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"  # type: ignore[attr-defined]


async def raw_exchange(port: int, data: bytes, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), read_timeout)
    writer.close()
    return received


UPGRADE = (
    "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n"
    "{extra}\r\n"
)


# --------------------------------------------------------------------------- messages


async def test_echo_text_binary_and_iteration() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send(bytearray(b"ba"))
        assert await ws.recv() == b"ba"
        big = os.urandom(1 << 20)
        await ws.send(big)
        assert await ws.recv() == big
    assert ws.close_code == 1000 and ws.state is State.CLOSED


async def test_sends_wait_while_another_task_sends_a_fragmented_message() -> None:
    # Messages do not interleave: a send() from another task, whole or fragmented, waits for
    # the fragmented message in progress to end (it raised LocalProtocolError, "a fragmented
    # message is in progress", naming a core method).
    async def slow() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(0.2)
        yield "b"

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        first = asyncio.ensure_future(ws.send(slow()))
        await asyncio.sleep(0.05)  # the first frame is out; the iterator waits
        second = asyncio.ensure_future(ws.send("x"))
        third = asyncio.ensure_future(ws.send(["y", "z"]))
        await asyncio.wait_for(asyncio.gather(first, second, third), WAIT)
        assert [await ws.recv() for _ in range(3)] == ["ab", "x", "yz"]


async def test_fragmented_send_from_iterables() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        await ws.send(["frag", "men", "ted"])
        assert await ws.recv() == "fragmented"
        await ws.send(chunks())
        assert await ws.recv() == b"abc"
        await ws.send([])  # an empty iterable sends nothing
        await ws.send("after")
        assert await ws.recv() == "after"
        with pytest.raises(TypeError):
            await ws.send(42)  # type: ignore[arg-type]


async def test_fragment_size_and_per_message_compression() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        sent, received = ws.statistics().bytes_sent, ws.statistics().bytes_received
        await ws.send("z" * 10_000)
        assert await ws.recv() == "z" * 10_000
        # Compressed both ways.
        assert ws.statistics().bytes_sent - sent < 200
        assert ws.statistics().bytes_received - received < 200
        sent, received = ws.statistics().bytes_sent, ws.statistics().bytes_received
        await ws.send("z" * 10_000, compress=False)
        assert await ws.recv() == "z" * 10_000
        # What we sent went out whole; the server still compressed its echo.
        assert ws.statistics().bytes_sent - sent > 10_000
        assert ws.statistics().bytes_received - received < 200
    async with (
        serve(echo, "127.0.0.1", 0, compression=None) as server,
        connect(url(server), compression=None, fragment_size=1000) as ws,
    ):
        # 11 frames of at most 1000 bytes, each with a 4-byte header and a 4-byte mask.
        sent = ws.statistics().bytes_sent
        await ws.send(b"q" * 10_500)
        assert await ws.recv() == b"q" * 10_500
        assert ws.statistics().bytes_sent - sent == 10_500 + 11 * 8


async def test_iteration_ends_quietly_on_normal_close() -> None:
    async def two_then_close(ws: Connection) -> None:
        await ws.send("1")
        await ws.send("2")

    async with serve(two_then_close, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        assert [m async for m in ws] == ["1", "2"]
        assert ws.close_code == 1000


async def test_handler_error_closes_with_1011_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ws: Connection) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="wskit"):
        async with serve(broken, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
    assert info.value.code == 1011
    assert "connection handler failed" in caplog.text


async def test_close_codes_and_reasons_both_ways() -> None:
    seen: list[tuple[int | None, str | None]] = []

    async def closer(ws: Connection) -> None:
        message = await ws.recv()
        if message == "close please":
            await ws.close(4001, "server says bye")
        else:
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            seen.append((ws.close_code, ws.close_reason))

    async with serve(closer, "127.0.0.1", 0) as server:
        async with connect(url(server)) as ws:
            await ws.send("close please")
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4001, "server says bye")
        async with connect(url(server)) as ws:
            await ws.send("wait")
            await ws.close(4002, "client says bye")
        await asyncio.sleep(0.05)
    assert seen == [(4002, "client says bye")]


async def test_send_after_close_raises_connection_closed() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        ws = await connect(url(server))
        await ws.close()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("late")
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        with pytest.raises(ConnectionClosed):
            await ws.ping()


async def test_two_concurrent_recv_raise_concurrency_error() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        first = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            await ws.recv()
        await ws.send("x")
        assert await first == "x"


async def test_cancelled_recv_loses_no_message() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        task = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        # A message arrives for the waiting recv(), which is cancelled before it resumes.
        frame = encode_message("kept")
        ws.get_buffer(-1)[: len(frame)] = frame
        ws.buffer_updated(len(frame))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await ws.recv() == "kept"


async def test_close_gives_up_on_a_silent_peer_after_close_timeout() -> None:
    async with serve(echo, "127.0.0.1", 0, close_timeout=0.2) as server:
        core = ClientConnection(url(server))
        core.send_request()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"".join(core.data_to_send()))
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)
        # The client never answers the server's Close frame: after close_timeout the server
        # drops the TCP connection.
        server.close()
        await asyncio.wait_for(server.wait_closed(), 3)
        assert (await asyncio.wait_for(reader.read(), 3)).startswith(b"\x88")
        writer.close()


async def test_closing_tcp_to_a_peer_that_reads_nothing_ends_after_close_timeout() -> None:
    """The peer sends Close and stops reading while the server's write buffer is full: the
    server answers and closes TCP, which waits for the buffer to drain, for ever unless
    close_timeout bounds it. The connection ends and leaves ``server.connections``."""
    connections: list[Connection] = []

    async def flood(ws: Connection) -> None:
        connections.append(ws)
        with contextlib.suppress(ConnectionClosed):
            while True:  # ends when the connection does: each send waits once buffers fill
                await ws.send(b"x" * 65536)

    async with serve(flood, "127.0.0.1", 0, compression=None, close_timeout=0.3) as server:
        client, _reader, writer = await open_raw(server.port)  # it reads nothing more
        await asyncio.sleep(0.2)  # the buffers fill up
        client.send_close(1000)
        writer.write(b"".join(client.data_to_send()))
        (ws,) = connections
        await asyncio.wait_for(ws.wait_closed(), 3)
        assert ws.close_code == 1000 and ws not in server.connections
        writer.close()


async def test_process_request_error_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        raise RuntimeError("bug in the hook")

    with caplog.at_level(logging.ERROR, logger="wskit"):
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server))
    assert info.value.response.status == 500
    assert "opening handshake failed" in caplog.text


async def test_messages_before_a_bad_frame_are_answered_first() -> None:
    """A peer sends a message and a bad frame in one write, right behind its 101: the
    application gets the message and its answer goes out before the 1002 Close frame."""
    seen: list[bytes] = []

    async def bad_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        core = ServerConnection()
        core.receive_data(await reader.readuntil(b"\r\n\r\n"))
        (request,) = core.events()
        core.send_response(core.accept(request))
        head = b"".join(core.data_to_send())
        # "hi" as text, then a frame with the reserved opcode 0x3.
        writer.write(head + b"\x81\x02hi" + b"\x83\x00")
        seen.append(await asyncio.wait_for(reader.read(), 5))
        writer.close()

    server = await asyncio.start_server(bad_server, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            assert await ws.recv() == "hi"
            await ws.send("answer")
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.sent_code == 1002
        await asyncio.sleep(0.05)
    (data,) = seen
    # Decode what the client sent after the handshake: the answer, then the Close frame.
    assert data[0] == 0x81 and data[1] == 0x80 | 6
    answer = bytes(b ^ data[2 + i % 4] for i, b in enumerate(data[6:12]))
    assert answer == b"answer"
    assert data[12] == 0x88


async def test_pongs_wait_in_the_core_while_writing_is_paused() -> None:
    """A peer that pings without reading: above the write buffer's high-water mark the
    pongs the core owes stay in the core (at most MAX_PENDING_PONGS) instead of piling up in
    the transport's buffer, and the connection keeps reading (a message behind the flood
    arrives). They go out once the peer reads again."""
    async with small_buffers() as (server_sock, client_sock, port):
        client = await send_request(client_sock, port)
        accepting = asyncio.create_task(
            accept(
                server_sock,
                compression=None,
                ping_interval=None,
                close_timeout=0.5,
                write_limit=4096,
            )
        )
        await read_response(client, client_sock)
        ws = await asyncio.wait_for(accepting, WAIT)
        await flood_with_pings(client, client_sock, "after the flood")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "after the flood"
        # The high-water mark (4 KiB) plus one read's pongs at most; before: 2 KiB per read.
        assert ws.transport.get_write_buffer_size() < 16 * 1024
        await ping_and_read_until_answered(client, client_sock)  # everything owed goes out
        await ws.close()


async def test_ping_returns_round_trip_time() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        waiter = await ws.ping(b"abc")
        rtt = await waiter
        assert 0 <= rtt < 5 and ws.latency == rtt
        with pytest.raises(ConcurrencyError):
            await ws.ping(b"abc") and await ws.ping(b"abc")
        # Control frames carry at most 125 bytes (RFC 6455 5.5): the caller's error, on an
        # open connection, for ping() and pong() alike.
        for send_control in (ws.ping, ws.pong):
            with pytest.raises(LocalProtocolError):
                await send_control(b"x" * 126)
        assert ws.state is State.OPEN


async def test_connections_share_one_read_buffer() -> None:
    """An idle connection must not hold a read buffer of its own (256 KiB each)."""
    async with (
        serve(echo, "127.0.0.1", 0) as server,
        connect(url(server)) as a,
        connect(url(server)) as b,
    ):
        await a.send("x")
        await b.send("y")
        assert (await a.recv(), await b.recv()) == ("x", "y")
        (s1, s2) = server.connections
        assert a._read_view is b._read_view is s1._read_view is s2._read_view


async def test_broadcast_encodes_once_and_skips_slow_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import wskit.asyncio.connection as asyncio_connection

    encoded: list[object] = []
    real_encode = asyncio_connection.encode_message

    def counting_encode(message: str | bytes) -> bytes:
        encoded.append(message)
        return real_encode(message)

    monkeypatch.setattr(asyncio_connection, "encode_message", counting_encode)
    hold = asyncio.Event()

    async def wait(ws: Connection) -> None:
        await hold.wait()

    async with serve(wait, "127.0.0.1", 0, write_limit=64 * 1024) as server:
        fast = [await connect(url(server)) for _ in range(2)]
        plain = await connect(url(server), compression=None)
        slow = await connect(url(server), compression=None, max_queue=1)
        gone = await connect(url(server))
        await gone.close()
        await asyncio.sleep(0.05)
        result = broadcast(server.connections, "news")
        assert result == BroadcastResult(sent=4, skipped_closed=0, skipped_slow=0)
        assert encoded == ["news"]
        for ws in (*fast, plain, slow):
            assert await ws.recv() == "news"
        # The slow client stops reading (max_queue=1): its server-side buffer fills up and
        # broadcasts skip it, while the readers get every message that was sent to them.
        received = {id(ws): 0 for ws in (*fast, plain)}

        async def read(ws: Connection) -> None:
            async for _ in ws:
                received[id(ws)] += 1

        readers = [asyncio.ensure_future(read(ws)) for ws in (*fast, plain)]
        big = b"x" * 100_000
        results = []
        for _ in range(300):  # bounded: the slow reader fills its buffers within a few MB
            results.append(broadcast(server.connections, big))
            await asyncio.sleep(0.001)
            if results[-1].skipped_slow:
                break
        assert results[-1] == BroadcastResult(sent=3, skipped_closed=0, skipped_slow=1)
        # Every reader gets every broadcast (the last ones may still be on their way).
        await wait_until(lambda: list(received.values()) == [len(results)] * 3, WAIT)
        for task in readers:
            task.cancel()
        # A closed connection still in the set is counted, not written to.
        (conn,) = [c for c in server.connections if c.remote_address == plain.local_address]
        await plain.close()
        assert broadcast([conn], "late") == BroadcastResult(0, 1, 0)
        hold.set()
        for ws in fast:
            await ws.close()
        slow.transport.abort()  # it stopped reading on purpose: no closing handshake


async def test_broadcast_from_clients_masks_each_frame() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        clients = [await connect(url(server)) for _ in range(3)]
        assert broadcast(clients, b"up") == BroadcastResult(3, 0, 0)
        for ws in clients:
            assert await ws.recv() == b"up"
            await ws.close()


async def test_statistics_count_messages_and_bytes() -> None:
    async with serve(echo, "127.0.0.1", 0) as server, connect(url(server), compression=None) as ws:
        for _ in range(3):
            await ws.send("abcd")
            await ws.recv()
        stats = ws.statistics()
        assert stats.messages_sent == 3 and stats.messages_received == 3
        assert stats.bytes_received >= 3 * 6 and stats.bytes_sent >= 3 * 10


# --------------------------------------------------------------------------- handshake


async def test_request_is_exposed_to_the_handler() -> None:
    seen: list[Request] = []

    async def handler(ws: Connection) -> None:
        assert ws.request is not None
        seen.append(ws.request)

    async with (
        serve(handler, "127.0.0.1", 0) as server,
        connect(url(server, "/room?id=7"), extra_headers={"X-Token": "t"}) as ws,
    ):
        await ws.wait_closed()
    (request,) = seen
    assert request.path == "/room" and request.query == {"id": "7"}
    assert request.headers["X-Token"] == "t"
    assert request.remote_address[0] == "127.0.0.1"  # type: ignore[index]


async def test_process_request_answers_with_http() -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return ws.respond(200, "OK\n")
        if request.headers.get("Authorization") != "Bearer good":
            return ws.respond(401, "no token\n", [("WWW-Authenticate", "Bearer")])
        return None

    async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        health = await raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b"OK\n")
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.response.status == 401
        assert info.value.response.body == b"no token\n"
        assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
        async with connect(url(server), extra_headers={"Authorization": "Bearer good"}) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_user_agent_can_be_replaced_or_omitted() -> None:
    agents: list[str | None] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        agents.append(ws.request.headers.get("User-Agent"))

    async with serve(handler, "127.0.0.1", 0) as server:
        for user_agent in ("custom/1.0", None):
            async with connect(url(server), user_agent=user_agent) as ws:
                await ws.wait_closed()
        async with connect(url(server)) as ws:
            await ws.wait_closed()
    assert agents[:2] == ["custom/1.0", None]
    assert agents[2] is not None and agents[2].startswith("wskit/")


async def test_health_check_passes_an_origin_allow_list() -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        return ws.respond(200, "OK\n") if request.path == "/healthz" else None

    async with serve(
        echo, "127.0.0.1", 0, origins=["https://app.example"], process_request=process_request
    ) as server:
        answer = await raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.response.status == 403


async def test_connections_lists_only_open_websockets() -> None:
    gate = asyncio.Event()

    async def handler(ws: Connection) -> None:
        await gate.wait()

    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        return ws.respond(404) if request.path == "/nope" else None

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.port
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # no handshake yet
        with pytest.raises(InvalidStatus):
            await connect(url(server, "/nope"))
        async with connect(url(server)):
            await asyncio.sleep(0.05)
            assert len(server.connections) == 1
            (conn,) = server.connections
            assert conn.state is State.OPEN
            gate.set()
        writer.close()
    assert server.port == port  # still known after the server closed


async def test_handler_ending_on_connection_closed_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def producer(ws: Connection) -> None:
        while True:  # ends with ConnectionClosedOK once the client leaves
            await ws.send("tick")
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG, logger="wskit"):
        async with serve(producer, "127.0.0.1", 0) as server:
            async with connect(url(server)) as ws:
                assert await ws.recv() == "tick"
            await asyncio.sleep(0.1)
    assert "connection handler ended" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_connection_closed_from_another_connection_is_a_handler_error() -> None:
    async with serve(echo, "127.0.0.1", 0) as other_server:
        other = await connect(url(other_server))
        await other.close()

        async def handler(ws: Connection) -> None:
            await other.send("to a closed connection")  # raises ConnectionClosedOK

        async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1011


async def test_async_process_request() -> None:
    async def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        await asyncio.sleep(0)
        return ws.respond(404)

    async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server))
        assert info.value.response.status == 404


async def test_origins_allow_list() -> None:
    async with serve(echo, "127.0.0.1", 0, origins=["https://good.example"]) as server:
        async with connect(url(server), origin="https://good.example") as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server), origin="https://evil.example")
        assert info.value.response.status == 403
        with pytest.raises(InvalidStatus):
            await connect(url(server))  # no Origin at all: not in the list


async def test_subprotocol_negotiation() -> None:
    async def report(ws: Connection) -> None:
        await ws.send(str(ws.subprotocol))

    async with serve(report, "127.0.0.1", 0, subprotocols=["chat.v2", "chat.v1"]) as server:
        async with connect(url(server), subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v1" and await ws.recv() == "chat.v1"
        async with connect(url(server), subprotocols=["other"]) as ws:
            assert ws.subprotocol is None and await ws.recv() == "None"

    def pick_last(ws: WebSocketServerConnection, offered: object) -> str:
        return list(offered)[-1]  # type: ignore[call-overload,no-any-return]

    async with (
        serve(report, "127.0.0.1", 0, select_subprotocol=pick_last) as server,
        connect(url(server), subprotocols=["a", "b"]) as ws,
    ):
        assert ws.subprotocol == "b"


async def test_wrong_version_gets_426() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        answer = await raw_exchange(server.port, UPGRADE.format(version="8", extra="").encode())
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13\r\n" in answer


async def test_oversized_head_gets_431() -> None:
    junk = "".join(f"X-Junk-{i}: {'y' * 100}\r\n" for i in range(200))
    async with serve(echo, "127.0.0.1", 0) as server:
        answer = await raw_exchange(server.port, UPGRADE.format(version="13", extra=junk).encode())
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_a_refusal_survives_the_unread_rest_of_the_request() -> None:
    # The server refuses a 600 KiB head (more than one read) after 16 KiB; closing with the
    # rest unread would reset the connection, and a client that had not read the 431 yet
    # would lose it. The server half-closes and drains instead: the answer is still there.
    junk = "".join(f"X-Junk-{i}: {'y' * 100}\r\n" for i in range(6000))
    head = UPGRADE.format(version="13", extra=junk).encode()

    def slow_reader(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head)
            time.sleep(0.3)  # the server answered and closed its side meanwhile
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
            return b"".join(chunks)

    async with serve(echo, "127.0.0.1", 0) as server:
        answer = await asyncio.to_thread(slow_reader, server.port)
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_a_refused_client_that_reads_nothing_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a refusal the server lingers, then closes; a client that reads nothing would
    keep that close waiting for the write buffer to drain: it is dropped close_timeout later
    (LINGER_TIMEOUT shortened here)."""
    import wskit.asyncio.connection

    monkeypatch.setattr(wskit.asyncio.connection, "LINGER_TIMEOUT", 0.1)

    refused: list[WebSocketServerConnection] = []

    def refuse(ws: WebSocketServerConnection, request: Request) -> Response:
        refused.append(ws)
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the answer waits in wskit
        return ws.respond(403, "." * 1024 * 1024)

    async with serve(echo, "127.0.0.1", 0, process_request=refuse, close_timeout=0.2) as server:
        writer = await open_silent(server.port)  # never reads the answer
        await wait_until(lambda: refused)
        await asyncio.wait_for(refused[0].wait_closed(), 3)  # the connection is gone
        writer.close()


async def test_not_a_websocket_request_gets_400() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        answer = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await raw_exchange(server.port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405 ")


async def test_silent_client_is_dropped_after_open_timeout() -> None:
    async with serve(echo, "127.0.0.1", 0, open_timeout=0.2) as server:
        loop = asyncio.get_running_loop()
        start = loop.time()
        answer = await raw_exchange(server.port, b"GET / HTTP/1.1\r\n")
        assert answer == b"" and loop.time() - start < 3
        assert not server.connections


async def test_connect_times_out_on_a_silent_server() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)
    finally:
        listener.close()


async def test_connect_to_a_non_websocket_server_fails_clearly() -> None:
    async def http_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http_only, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port}/")
        assert info.value.response.status == 200 and info.value.response.body == b"hi"
        assert isinstance(info.value, InvalidHandshake)


# --------------------------------------------------------------------------- limits


async def test_message_over_max_size_closes_with_1009() -> None:
    closed: list[int | None] = []

    async def handler(ws: Connection) -> None:
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        closed.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, max_size=1000) as server:
        async with connect(url(server)) as ws:
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009
        await asyncio.sleep(0.05)
    assert closed == [1006]  # the server failed the connection: it received no Close frame


async def test_max_queue_applies_backpressure() -> None:
    release = asyncio.Event()
    received: list[bytes] = []

    async def slow(ws: Connection) -> None:
        await release.wait()
        received.extend([m async for m in ws])  # type: ignore[misc]

    message = b"x" * 65536
    async with serve(slow, "127.0.0.1", 0, max_queue=2, compression=None) as server:
        async with connect(url(server), compression=None) as ws:
            sent = 0

            async def flood() -> None:
                nonlocal sent
                for _ in range(500):
                    await ws.send(message)
                    sent += 1

            task = asyncio.ensure_future(flood())
            await asyncio.sleep(0.5)
            # The server stopped reading, so TCP buffers filled and send() now waits.
            assert not task.done() and sent < 500
            (conn,) = server.connections
            # Reading paused at max_queue; the read that crossed it may have parsed a few
            # more, at most one read buffer's worth.
            queued = conn.statistics().messages_queued
            assert queued >= 2 and (queued - 2) * len(message) <= READ_BUFFER_SIZE
            release.set()
            await asyncio.wait_for(task, 10)
            await ws.close()
        await asyncio.sleep(0.05)
    assert len(received) == 500


async def test_keepalive_fails_a_silent_peer_with_1011() -> None:
    closed: list[int | None] = []

    async def handler(ws: Connection) -> None:
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        closed.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=0.1) as server:
        # A client that completes the handshake, then never reads or answers anything.
        core = ClientConnection(url(server))
        core.send_request()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"".join(core.data_to_send()))
        core.receive_data(await reader.readuntil(b"\r\n\r\n"))
        assert isinstance(core.events()[0], Response)
        data = await asyncio.wait_for(reader.read(), 5)  # until the server closes TCP
        core.receive_data(data)
        events = core.events()
        assert any(isinstance(e, Ping) for e in events)
        assert events[-1].code == 1011  # type: ignore[union-attr]
        writer.close()
    assert closed == [1006]


async def test_keepalive_keeps_an_answering_peer() -> None:
    async with (
        serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.05) as server,
        connect(url(server), ping_interval=None) as ws,
    ):
        await asyncio.sleep(0.4)
        await ws.send("still here")
        assert await ws.recv() == "still here"


# --------------------------------------------------------------------------- server life


async def test_server_close_sends_1001_to_every_client() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        clients = [await connect(url(server)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert len(server.connections) == 3
        server.close()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1001
        await server.wait_closed()
        assert not server.connections


async def test_server_wait_closed_waits_for_the_handlers_to_return() -> None:
    """A handler that cleans up after its connection closed has returned when aclose() does
    (docs/server.md); before, it was still running, or cancelled with the event loop."""
    log: list[str] = []

    async def handler(ws: Connection) -> None:
        async for _ in ws:
            pass
        log.append("connection ended")
        await asyncio.sleep(0.3)  # cleanup after the close, e.g. saving state
        log.append("handler returned")

    server = await serve(handler, "127.0.0.1", 0)
    client = await connect(url(server))
    await asyncio.wait_for(server.aclose(), WAIT)
    assert log == ["connection ended", "handler returned"]
    await client.close()


async def test_close_while_max_queue_pauses_reading_completes_the_handshake() -> None:
    """The client reads nothing and its queue is full, so reading is paused: close() reads
    on until the server's Close (before, the Close stayed unread and close() ended 1006
    after close_timeout); what came meanwhile beyond max_queue is dropped."""

    async def flood(ws: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            for index in range(100):
                await ws.send(f"m{index}")
            await ws.wait_closed()

    async with serve(flood, "127.0.0.1", 0, close_timeout=5) as server:
        ws = await connect(url(server), max_queue=4, close_timeout=5)
        await wait_until(lambda: ws._reading_paused)
        await asyncio.wait_for(ws.close(), 2)  # well within close_timeout
        assert ws.close_code == 1000
        assert await ws.recv() == "m0"  # what was queued before the close is kept


async def test_a_handler_returning_while_max_queue_pauses_reading_closes_at_once() -> None:
    """The handler returns (close 1000) with its queue full: reading resumes, so the
    client's Close is read and both sides end 1000 at once (before: close_timeout, 1006)."""
    connections: list[Connection] = []

    async def handler(ws: Connection) -> None:
        connections.append(ws)
        await wait_until(lambda: ws._reading_paused)

    async with serve(handler, "127.0.0.1", 0, max_queue=2, close_timeout=5) as server:
        ws = await connect(url(server))
        for index in range(10):
            await ws.send(f"m{index}")
        await asyncio.wait_for(ws.wait_closed(), 2)  # well within close_timeout
        await asyncio.wait_for(connections[0].wait_closed(), 2)
        assert ws.close_code == 1000 and connections[0].close_code == 1000


async def test_wait_closed_from_a_handler_does_not_wait_for_that_handler() -> None:
    """An admin command that shuts the server down from a handler: aclose() returns (it
    waited for the handlers, the caller among them, through wait_for's task too)."""
    result: list[str] = []

    async def handler(ws: Connection) -> None:
        async for message in ws:
            if message == "shutdown":
                await asyncio.wait_for(servers[0].aclose(), WAIT)
                result.append("aclose returned")
                return

    servers = [await serve(handler, "127.0.0.1", 0)]
    async with connect(url(servers[0])) as ws:
        await ws.send("shutdown")
        await asyncio.wait_for(ws.wait_closed(), WAIT)
    await asyncio.wait_for(servers[0].wait_closed(), WAIT)
    assert result == ["aclose returned"]


async def test_a_process_request_that_never_returns_does_not_block_wait_closed() -> None:
    """open_timeout drops the client while process_request still awaits (a stuck auth
    backend): the awaiting task is cancelled, so aclose() returns."""
    started = asyncio.Event()

    async def process_request(ws: WebSocketServerConnection, request: Request) -> None:
        started.set()
        await asyncio.Event().wait()

    server = await serve(echo, "127.0.0.1", 0, process_request=process_request, open_timeout=0.2)
    client = ClientConnection(url(server))
    client.send_request()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"".join(client.data_to_send()))
    await asyncio.wait_for(started.wait(), WAIT)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # dropped after open_timeout
    await asyncio.wait_for(server.aclose(), WAIT)
    writer.close()


async def test_serve_forever_returns_when_closed() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    task = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0.05)
    server.close()
    await asyncio.wait_for(task, 5)
    await server.wait_closed()


async def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        async with serve(echo, unix_path=path), connect("ws://localhost/", unix_path=path) as ws:
            await ws.send("over unix")
            assert await ws.recv() == "over unix"


async def test_tls() -> None:
    import trustme  # the [test] extra: missing means failing, not skipping

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server:
        async with connect(f"wss://localhost:{server.port}/", ssl=client_ctx) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
            await ws.send(b"x" * 300_000)
            assert await ws.recv() == b"x" * 300_000
        with pytest.raises(ssl.SSLError):
            await connect(f"wss://localhost:{server.port}/")  # untrusted certificate


async def test_answers_to_a_backlog_are_written_together() -> None:
    """recv() + send() through twenty queued messages: the answers go out in one write
    (one system call) when the burst yields, not a write each."""
    counters: list[list[int]] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        counters.append(count_writes(ws.transport))
        await echo(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        client, reader, writer = await open_raw(server.port)
        for i in range(20):
            client.send_text(f"message {i}")
        writer.write(b"".join(client.data_to_send()))  # one segment on loopback
        answers: list[object] = []
        while len(answers) < 20:
            client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
            answers += client.events()
        assert [getattr(a, "data", None) for a in answers] == [f"message {i}" for i in range(20)]
        writer.close()
    # The answer to the last message flushes the others with it (or the event loop does):
    # twenty answers, one or two writes (one more if the first recv() found no backlog yet).
    (writes,) = counters
    assert 1 <= len(writes) <= 2, writes


async def test_an_answer_sent_during_a_backlog_is_not_held_back() -> None:
    """A handler answers the first of two queued messages, then waits for something else:
    its answer still goes out at once (the deferred write is flushed by the event loop)."""
    release = asyncio.Event()

    async def handler(ws: WebSocketServerConnection) -> None:
        first = await ws.recv()
        await ws.send(f"got {first}")  # "b" is still queued: this write is deferred
        await release.wait()
        await ws.recv()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        client, reader, writer = await open_raw(server.port)
        client.send_text("a")
        client.send_text("b")
        writer.write(b"".join(client.data_to_send()))
        client.receive_data(await asyncio.wait_for(reader.read(65536), 2))
        assert client.events() == [Text("got a")]
        release.set()
        writer.close()


def test_the_front_ends_pick_zlib_ng_when_installed() -> None:
    """compression="deflate" runs on zlib-ng when it is there, on zlib with
    WSKIT_NO_EXTENSIONS=1 (only wskit's own pure Python and the standard library)."""
    code = (
        "import asyncio, wskit.asyncio as a, wskit._zlib as z\n"
        "async def main():\n"
        "    s = await a.serve(lambda ws: ws.wait_closed(), '127.0.0.1', 0)\n"
        "    print(z.NAME, s.extensions[0].zlib_module.__name__)\n"
        "    await s.aclose()\n"
        "asyncio.run(main())\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    env.pop("WSKIT_NO_EXTENSIONS", None)
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["zlib-ng", "zlib_ng.zlib_ng"], out.stderr
    env["WSKIT_NO_EXTENSIONS"] = "1"
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["zlib", "zlib"], out.stderr


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda ws: (403, [], b"no"), id="not-a-response"),
        pytest.param(lambda ws: ws.respond(101), id="forged-101"),
    ],
)
async def test_a_bad_process_request_answer_gets_500_and_the_server_serves_on(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Any:
        return bad(ws) if request.path == "/bad" else None

    with caplog.at_level(logging.ERROR, "wskit.server"):
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, "/bad"))
            assert info.value.response.status == 500
            async with connect(url(server)) as ws:
                await ws.send("still served")
                assert await ws.recv() == "still served"
    assert any("opening handshake failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("how", ["mixed", "raises", "cancelled"])
async def test_an_interrupted_fragmented_send_fails_the_connection_with_1011(how: str) -> None:
    # Once its first frame went out a message cannot be completed; the peer must not take a
    # part for the whole (nor wait for the rest forever), so the connection fails with 1011.
    async def fragments() -> AsyncIterator[str | bytes]:
        yield "first "
        if how == "mixed":
            yield b"bytes"
        elif how == "raises":
            raise ValueError("the producer failed")
        else:
            await asyncio.sleep(3600)

    async def handler(ws: Connection) -> None:
        await ws.recv()
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(ws.send(fragments()), 0.2)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        await ws.send("go")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()  # no message, only the Close frame
        assert info.value.code == 1011


async def test_a_fragmented_send_cancelled_while_its_first_frame_drains_fails_with_1011() -> None:
    # The first frame is queued, then send() waits for a peer that reads nothing: cancelled
    # there, the message is as unfinishable as after any later frame (it used to leave the
    # connection open with every later send refused: "a fragmented message is in progress").
    outcome: list[Any] = []

    async def fragments() -> AsyncIterator[bytes]:
        yield b"x" * (4 * 1024 * 1024)  # far above write_limit
        yield b"the rest"

    async def handler(ws: Connection) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ws.send(fragments()), 0.3)
        outcome.append(ws.writing_paused)
        with pytest.raises(ConnectionClosedError) as info:
            await ws.send("next")
        outcome.append(info.value.sent_code)

    async with serve(handler, "127.0.0.1", 0, compression=None, close_timeout=0.5) as server:
        writer = await open_silent(server.port)
        await wait_until(lambda: len(outcome) == 2)
        writer.close()
    assert outcome == [True, 1011]


async def test_a_send_waiting_for_the_buffer_raises_when_the_connection_is_dropped() -> None:
    # The peer reads nothing: a send() waits for the buffer to drain, then close() gives up
    # after close_timeout and drops TCP. The waiting send's bytes went with the transport, so
    # it raises (it used to return as if they were sent).
    outcome: list[Any] = []

    async def handler(ws: Connection) -> None:
        async def sender() -> None:
            try:
                while True:
                    await ws.send(b"x" * 65536)
                    outcome.append("sent")
            except ConnectionClosed as exc:
                outcome.append(type(exc).__name__)

        task = asyncio.ensure_future(sender())
        await wait_until(lambda: ws.writing_paused)
        del outcome[:]  # what was sent before the buffer filled
        await ws.close()  # the peer never answers: dropped after close_timeout
        await asyncio.wait_for(task, 3)

    async with serve(handler, "127.0.0.1", 0, compression=None, close_timeout=0.3) as server:
        writer = await open_silent(server.port)
        await wait_until(lambda: outcome and outcome[-1] != "sent")
        writer.close()
    assert outcome == ["ConnectionClosedError"]


async def test_send_waits_for_a_slow_reader_also_while_messages_are_queued() -> None:
    # A received message waits in the queue (pipelined requests), so send() defers its
    # writes to batch the answers; a large reply must still meet flow control and wait for a
    # peer that reads nothing (before, the whole reply piled up in the core, send() never
    # waited and the event loop never ran).
    sent: list[int] = []

    async def handler(ws: Connection) -> None:
        await ws.recv()  # the first request; the second stays queued
        await wait_until(lambda: ws._messages)
        with contextlib.suppress(ConnectionClosed):
            for index in range(64):  # 4 MiB: far more than the buffers take
                await ws.send(b"x" * 65536)
                sent.append(index)

    async with serve(handler, "127.0.0.1", 0, compression=None, close_timeout=0.2) as server:
        writer = await open_silent(server.port, "request 1", "request 2")
        await wait_until(lambda: sent)  # the reply has started
        await asyncio.sleep(0.3)
        assert len(sent) < 64  # send() is waiting for the buffer to drain
        writer.close()


async def test_a_bad_frame_fails_the_connection_even_if_recv_is_never_called_again() -> None:
    # A bad frame is held back behind messages recv() has not taken (so that the answers go
    # out first); a send-only handler never takes them, and the hold ends after
    # HELD_ERROR_TIMEOUT: the connection fails with 1002 (it used to stay held, the client's
    # Close ignored).
    async def feed(ws: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send("tick")
                await asyncio.sleep(0.1)

    async with serve(feed, "127.0.0.1", 0, compression=None) as server:
        client, reader, writer = await open_raw(server.port)
        client.send_text("hello")
        writer.write(b"".join(client.data_to_send()) + b"\x83\x80\x00\x00\x00\x00")

        async def read_until_close() -> None:
            while client.close_rcvd is None:
                data = await reader.read(65536)
                if not data:
                    break
                client.receive_data(data)

        await asyncio.wait_for(read_until_close(), 5)
        writer.close()
    assert client.close_rcvd is not None and client.close_rcvd[0] == 1002

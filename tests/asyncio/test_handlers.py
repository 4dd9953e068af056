"""Class-based handlers (wskit.handlers.Handler) on the asyncio front end, over real sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import websockets

from tests.asyncio.helpers import count_writes, open_raw, wait_until
from wskit.asyncio import connect, serve
from wskit.core import ClientConnection, ServerConnection
from wskit.core.events import Closed, Response, Text
from wskit.exceptions import ConcurrencyError, ConnectionClosed, ConnectionClosedOK
from wskit.handlers import Handler


def url(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}/"


class Recorder(Handler):
    """Echoes every message and records every hook call in ``log``."""

    log: list[tuple[Any, ...]]

    def __init__(self) -> None:
        self.log = []
        Recorder.instances.append(self)

    instances: list[Recorder] = []

    def on_open(self) -> None:
        self.log.append(("open", self.connection.request.path))  # type: ignore[union-attr]

    def on_message(self, message: str | bytes) -> None:
        self.log.append(("message", message))
        self.send(message)

    def on_ping(self, payload: bytes) -> None:
        self.log.append(("ping", payload))

    def on_pong(self, payload: bytes) -> None:
        self.log.append(("pong", payload))

    def on_close(self, code: int, reason: str) -> None:
        self.log.append(("close", code, reason))


@pytest.fixture(autouse=True)
def fresh_recorders() -> None:
    Recorder.instances = []


async def raw_session(port: int, frames: list[tuple[str, Any]]) -> list[Any]:
    """Open a raw TCP connection, write the handshake and ``frames`` in ONE write (so they
    arrive together), and return the events a client core parses from everything the server
    sends until it closes."""
    client = ClientConnection(f"ws://127.0.0.1:{port}/raw")
    client.send_request()
    head = b"".join(client.data_to_send())
    # Frame the payloads with a second core, put in the open state by a fake handshake, so
    # they can go out in the same write as the request.
    framer = ClientConnection(f"ws://127.0.0.1:{port}/raw")
    framer.state = framer.state.__class__.OPEN
    data = [head]
    for kind, payload in frames:
        if kind == "text":
            framer.send_text(payload)
        elif kind == "binary":
            framer.send_binary(payload)
        data += framer.data_to_send()
        if kind == "raw":
            data.append(payload)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(data))
    received = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    client.receive_data(received)
    client.receive_eof()
    return client.events()


async def test_echo_hooks_in_order_with_a_websockets_client() -> None:
    async with serve(Recorder, "127.0.0.1", 0, compression=None) as server:
        async with websockets.connect(url(server) + "chat", max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(big)
            assert await ws.recv() == big
            pong = await ws.ping(b"are you there")
            await pong
            await ws.close(4001, "done here")
        await asyncio.sleep(0.05)
    (handler,) = Recorder.instances
    assert handler.log == [
        ("open", "/chat"),
        ("message", "hello"),
        ("message", big),
        ("ping", b"are you there"),
        ("close", 4001, "done here"),
    ]


async def test_compression_and_a_wskit_client_handler() -> None:
    """A client handler opens, sends from on_open, gets the echo, closes from a hook."""
    got: list[Any] = []

    class Client(Handler):
        def on_open(self) -> None:
            self.send("x" * 10_000)

        def on_message(self, message: str | bytes) -> None:
            got.append(message)
            self.close(4002, "enough")

        def on_close(self, code: int, reason: str) -> None:
            got.append((code, reason))

    async with serve(Recorder, "127.0.0.1", 0, compression="deflate") as server:
        ws = await connect(url(server), handler=Client, compression="deflate")
        assert isinstance(ws.handler, Client)
        assert ws.response is not None
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.wait_closed()
        assert got == ["x" * 10_000, (4002, "")]  # the server echoes the code, no reason
        await asyncio.sleep(0.05)
    (server_side,) = Recorder.instances
    assert server_side.log[-1] == ("close", 4002, "enough")


async def test_client_handler_against_a_websockets_server() -> None:
    got: list[Any] = []
    done = asyncio.get_running_loop().create_future()

    class Client(Handler):
        def on_open(self) -> None:
            self.send(b"\x00\x01")
            self.ping(b"p1")

        def on_message(self, message: str | bytes) -> None:
            got.append(message)
            if len(got) == 2:
                done.set_result(None)

        def on_pong(self, payload: bytes) -> None:
            got.append(("pong", payload))
            if len(got) == 2:
                done.set_result(None)

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", handler=Client) as ws:
            await done
            # websockets answers the ping from its reader, before its handler echoes.
            assert len(got) == 2 and b"\x00\x01" in got and ("pong", b"p1") in got
            with pytest.raises(ConcurrencyError):
                await ws.recv()


async def test_server_handler_pings_and_sees_the_pong() -> None:
    class Pinger(Recorder):
        def on_open(self) -> None:
            super().on_open()
            self.ping(b"hb")

    async with serve(Pinger, "127.0.0.1", 0) as server:
        async with websockets.connect(url(server)) as ws:
            # websockets answers the ping while it waits for a message.
            await ws.send("after")
            assert await ws.recv() == "after"
        await asyncio.sleep(0.05)
    (handler,) = Recorder.instances
    assert ("pong", b"hb") in handler.log


async def test_hook_error_closes_with_1011_and_the_server_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Fragile(Recorder):
        def on_message(self, message: str | bytes) -> None:
            if message == "boom":
                raise ValueError("bad message")
            super().on_message(message)

    with caplog.at_level(logging.ERROR, logger="wskit"):
        async with serve(Fragile, "127.0.0.1", 0) as server:
            async with connect(url(server)) as ws:
                await ws.send("boom")
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.code == 1011
            # Another connection to the same server still works.
            async with connect(url(server)) as ws:
                await ws.send("fine")
                assert await ws.recv() == "fine"
    assert "connection handler failed" in caplog.text
    assert "bad message" in caplog.text
    # on_close still ran, once, for the failed connection.
    assert Recorder.instances[0].log[-1][0] == "close"
    assert [entry[0] for entry in Recorder.instances[0].log].count("close") == 1


async def test_on_open_error_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    class BadOpen(Handler):
        def on_open(self) -> None:
            raise RuntimeError("no")

    with caplog.at_level(logging.ERROR, logger="wskit"):
        async with serve(BadOpen, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1011


async def test_messages_behind_the_request_come_after_on_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Frames in the same TCP write as the request: on_open runs first, then each message.

    The Close frame came in that write too, so the server answered it at once and the
    echoes find the connection closing: send() raises ConnectionClosed, which ends the hook
    quietly (as it ends a coroutine handler), not as a handler error.
    """
    with caplog.at_level(logging.DEBUG, logger="wskit"):
        async with serve(Recorder, "127.0.0.1", 0, compression=None) as server:
            events = await raw_session(
                server.port,
                [("text", "one"), ("binary", b"two"), ("raw", b"\x88\x80\x00\x00\x00\x00")],
            )
    (handler,) = Recorder.instances
    assert handler.log == [
        ("open", "/raw"),
        ("message", "one"),
        ("message", b"two"),
        ("close", 1005, ""),
    ]
    assert [type(e) for e in events] == [Response, Closed]
    assert "connection handler failed" not in caplog.text
    assert "received 1005" in caplog.text  # the debug line says why the echo was not sent


async def test_answers_go_out_before_the_close_for_a_bad_frame() -> None:
    """A message and a bad frame (reserved opcode 0x3) in one read: the handler's answer
    precedes the 1002 Close frame, as it does for recv() users."""
    async with serve(Recorder, "127.0.0.1", 0, compression=None) as server:
        events = await raw_session(
            server.port, [("text", "first"), ("raw", b"\x83\x80\x00\x00\x00\x00")]
        )
    assert [type(e) for e in events] == [Response, Text, Closed]
    assert events[1] == Text("first")
    closed = events[2]
    assert isinstance(closed, Closed) and closed.code == 1002


async def test_writing_hooks_pace_a_producer() -> None:
    """A producer stops in on_pause_writing and goes on in on_resume_writing: every message
    arrives, in order, and the write buffer never holds more than one message past the
    high-water mark."""
    chunk = b"z" * 65536
    total = 64
    seen: dict[str, int] = {"paused": 0, "resumed": 0, "max_buffer": 0}

    class Producer(Handler):
        sent = 0

        def on_open(self) -> None:
            self.produce()

        def produce(self) -> None:
            while self.sent < total and not self.connection.writing_paused:
                self.send(self.sent.to_bytes(4, "big") + chunk)
                self.sent += 1
                transport = self.connection.transport  # type: ignore[attr-defined]
                size = transport.get_write_buffer_size()
                seen["max_buffer"] = max(seen["max_buffer"], size)
            if self.sent == total:
                self.close()

        def on_pause_writing(self) -> None:
            seen["paused"] += 1

        def on_resume_writing(self) -> None:
            seen["resumed"] += 1
            self.produce()

    numbers = []
    async with (
        serve(Producer, "127.0.0.1", 0, compression=None, write_limit=65536) as server,
        connect(url(server), compression=None, max_queue=2) as ws,
    ):
        async for message in ws:
            assert isinstance(message, bytes)
            numbers.append(int.from_bytes(message[:4], "big"))
            await asyncio.sleep(0.001)  # a slow reader
    assert numbers == list(range(total))
    assert seen["paused"] >= 1 and seen["resumed"] >= 1
    assert seen["max_buffer"] < 65536 + 2 * len(chunk) + 64


async def test_pause_reading_delays_delivery_and_loses_nothing() -> None:
    got: list[Any] = []

    class Slow(Handler):
        def on_message(self, message: str | bytes) -> None:
            got.append(message)
            if message == "0":
                self.connection.pause_reading()
                asyncio.get_running_loop().call_later(0.2, self.connection.resume_reading)

    async with serve(Slow, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        # Sent back to back, the five usually arrive in one read: the four behind the
        # pause wait although they are parsed already; any read later is not made.
        for i in range(5):
            await ws.send(str(i))
        await asyncio.sleep(0.1)
        assert got == ["0"]  # reading is paused
        await asyncio.sleep(0.3)
        assert got == ["0", "1", "2", "3", "4"]


async def test_a_held_bad_frame_and_a_lost_connection_while_reading_is_paused() -> None:
    """A message and a bad frame in one read; the handler pauses reading on the message, the
    connection is lost, then reading resumes: the held frame went with the connection (the
    resume used to recurse without end, a crash when compiled) and on_close sees 1006."""
    got: list[Any] = []
    resumed = asyncio.Event()

    class PausesThenLoses(Handler):
        def on_message(self, message: str | bytes) -> None:
            got.append(message)
            connection = self.connection
            connection.pause_reading()
            loop = asyncio.get_running_loop()
            loop.call_soon(connection.transport.abort)

            def resume() -> None:
                connection.resume_reading()
                resumed.set()

            loop.call_later(0.1, resume)

        def on_close(self, code: int, reason: str) -> None:
            got.append(("closed", code))

    errors: list[dict[str, Any]] = []  # what failed inside the event loop's callbacks
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    async with serve(PausesThenLoses, "127.0.0.1", 0, compression=None) as server:
        client, _reader, writer = await open_raw(server.port)
        client.send_text("first")
        writer.write(b"".join(client.data_to_send()) + b"\x83\x80\x00\x00\x00\x00")
        await asyncio.wait_for(resumed.wait(), 10)
        await asyncio.sleep(0.05)  # what resume_reading() scheduled has run
        assert got == ["first", ("closed", 1006)]
        writer.close()
    assert errors == []


async def test_closing_a_paused_handler_reads_the_peers_close_and_runs_on_close() -> None:
    """A handler that pauses reading on every message: server.close() (1001) reads on and
    completes the closing handshake at once, and on_close runs (before, the peer's Close
    stayed unread, TCP was dropped after close_timeout and on_close never ran)."""
    closed: list[Any] = []

    class PausesOnEveryMessage(Handler):
        def on_message(self, message: str | bytes) -> None:
            self.connection.pause_reading()  # e.g. waits for some work before resuming

        def on_close(self, code: int, reason: str) -> None:
            closed.append(code)

    server = await serve(PausesOnEveryMessage, "127.0.0.1", 0, close_timeout=5)
    async with connect(url(server)) as ws:
        await ws.send("one")
        await ws.send("two")  # waits unread behind the pause
        await wait_until(lambda: server.connections)
        await asyncio.sleep(0.1)
        await asyncio.wait_for(server.aclose(), 2)  # well within close_timeout
        assert closed == [1001]
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_a_connection_lost_while_a_handler_paused_delivers_what_was_held() -> None:
    """Two messages in one read; the handler pauses on the first, and the connection is lost
    before it resumes: the second message and on_close are delivered then (on_close never ran
    before: the Closed event waited behind the pause for good)."""
    got: list[Any] = []

    class PausesThenIsLost(Handler):
        def on_message(self, message: str | bytes) -> None:
            got.append(message)
            if message == "one":
                self.connection.pause_reading()
                asyncio.get_running_loop().call_soon(self.connection.transport.abort)

        def on_close(self, code: int, reason: str) -> None:
            got.append(("closed", code))

    async with serve(PausesThenIsLost, "127.0.0.1", 0, compression=None) as server:
        client, _reader, writer = await open_raw(server.port)
        client.send_text("one")
        client.send_text("two")
        writer.write(b"".join(client.data_to_send()))  # one write: usually one read
        await wait_until(lambda: got and got[-1][0] == "closed", 5)
        writer.close()
    assert got in (["one", "two", ("closed", 1006)], ["one", ("closed", 1006)])
    assert got[-1] == ("closed", 1006)


@pytest.mark.parametrize("how", ["close", "raise"])
async def test_on_close_runs_last_when_a_hook_closes_before_a_bad_frame(how: str) -> None:
    """Two messages and a bad frame in one read; on_message closes on the first (or fails:
    1011): the second message is still delivered before on_close (on_close ran in between,
    from the close's nested dispatch that released the bad frame)."""
    calls: list[Any] = []

    class ClosesOnFirst(Handler):
        def on_message(self, message: str | bytes) -> None:
            calls.append(message)
            if message == "A":
                if how == "close":
                    self.close()
                else:
                    raise RuntimeError("the hook failed")

        def on_close(self, code: int, reason: str) -> None:
            calls.append("on_close")

    async with serve(ClosesOnFirst, "127.0.0.1", 0, compression=None, close_timeout=0.5) as server:
        client, _reader, writer = await open_raw(server.port)
        client.send_text("A")
        client.send_text("B")
        writer.write(b"".join(client.data_to_send()) + b"\x83\x80\x00\x00\x00\x00")
        await wait_until(lambda: "on_close" in calls, 5)
        writer.close()
    assert calls == ["A", "B", "on_close"]


async def test_pause_reading_in_on_open_holds_the_messages_behind_the_request() -> None:
    """Messages that came in the same read as the upgrade request wait for resume_reading()
    when on_open pauses (the first was delivered at once)."""
    got: list[Any] = []

    class PausesInOnOpen(Handler):
        def on_open(self) -> None:
            self.connection.pause_reading()
            asyncio.get_running_loop().call_later(0.2, self.connection.resume_reading)

        def on_message(self, message: str | bytes) -> None:
            got.append((message, self.connection._reading_paused))

    async with serve(PausesInOnOpen, "127.0.0.1", 0, compression=None) as server:
        client = ClientConnection(url(server))
        client.send_request()
        framer = ClientConnection(url(server))  # frames for the same write (see raw_session)
        framer.state = framer.state.__class__.OPEN
        framer.send_text("one")
        framer.send_text("two")
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"".join([*client.data_to_send(), *framer.data_to_send()]))
        await asyncio.sleep(0.1)
        assert got == []  # paused in on_open: nothing delivered
        await wait_until(lambda: len(got) == 2, 5)
        writer.close()
    assert got == [("one", False), ("two", False)]


async def test_a_hook_that_pauses_then_fails_closes_with_1011_at_once() -> None:
    """pause_reading() then an exception in on_message: the 1011 close reads on, so the
    client's Close is seen and on_close runs at once (before: after close_timeout, 1006)."""
    closed: list[int] = []

    class PausesThenFails(Handler):
        def on_message(self, message: str | bytes) -> None:
            self.connection.pause_reading()
            raise RuntimeError("the hook failed")

        def on_close(self, code: int, reason: str) -> None:
            closed.append(code)

    async with serve(PausesThenFails, "127.0.0.1", 0, close_timeout=5) as server:
        ws = await connect(url(server))
        await ws.send("a")
        await asyncio.wait_for(ws.wait_closed(), 2)  # well within close_timeout
        assert ws.close_code == 1011
        await wait_until(lambda: closed, 2)
    assert closed == [1011]


async def test_a_client_on_open_that_closes_gets_the_message_behind_the_101_first() -> None:
    """A server writes the 101, a message and a bad frame at once; the client's on_open
    closes: on_message runs for the message, then on_close (it ran first)."""
    calls: list[Any] = []

    class ClosesInOnOpen(Handler):
        def on_open(self) -> None:
            calls.append("on_open")
            self.close()

        def on_message(self, message: str | bytes) -> None:
            calls.append(message)

        def on_close(self, code: int, reason: str) -> None:
            calls.append("on_close")

    async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server = ServerConnection()
            server.receive_data(await reader.readuntil(b"\r\n\r\n"))
            (request,) = server.events()
            server.send_response(server.accept(request))
            server.send_text("hi")
            writer.write(b"".join(server.data_to_send()) + b"\x83\x00")  # then opcode 3
            await asyncio.wait_for(reader.read(), 5)  # until the client closes
        finally:
            writer.close()

    listener = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        ws = await connect(f"ws://127.0.0.1:{port}/", handler=ClosesInOnOpen, close_timeout=0.3)
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert calls == ["on_open", "hi", "on_close"]


async def test_server_shutdown_reaches_on_close_and_no_task_per_connection() -> None:
    tasks_before = len(asyncio.all_tasks())
    server = await serve(Recorder, "127.0.0.1", 0)
    clients = [await connect(url(server)) for _ in range(20)]
    for ws in clients:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    # The hooks run from the read callback: no task was left per connection.
    assert len(asyncio.all_tasks()) == tasks_before, asyncio.all_tasks()
    assert len(server.connections) == 20
    await server.aclose()
    for ws in clients:
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1001
    assert len(Recorder.instances) == 20
    assert all(h.log[-1] == ("close", 1001, "") for h in Recorder.instances)


async def test_send_after_close_raises_connection_closed() -> None:
    errors: list[BaseException] = []

    class Closer(Handler):
        def on_message(self, message: str | bytes) -> None:
            self.close()
            try:
                self.send("too late")
            except ConnectionClosed as exc:
                errors.append(exc)

    async with serve(Closer, "127.0.0.1", 0) as server, connect(url(server)) as ws:
        await ws.send("x")
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
    (error,) = errors
    assert isinstance(error, ConnectionClosed)


async def test_answers_to_one_read_go_out_in_one_write() -> None:
    """Twenty messages arrive in one TCP segment: the handler answers each, and the twenty
    answers leave in one write (one system call), not twenty."""
    counters: list[list[int]] = []

    class CountingEcho(Handler):
        def on_open(self) -> None:
            counters.append(count_writes(self.connection.transport))  # type: ignore[attr-defined]

        def on_message(self, message: str | bytes) -> None:
            self.send(message)

    async with serve(CountingEcho, "127.0.0.1", 0, compression=None) as server:
        client, reader, writer = await open_raw(server.port)
        for i in range(20):
            client.send_text(f"message {i}")
        writer.write(b"".join(client.data_to_send()))  # one segment on loopback
        answers: list[Any] = []
        while len(answers) < 20:
            client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
            answers += client.events()
        assert answers == [Text(f"message {i}") for i in range(20)]
        writer.close()
    (writes,) = counters
    assert writes[:1] == [sum(len(f"message {i}") + 2 for i in range(20))]


async def test_a_64_kib_answer_and_its_header_are_one_write() -> None:
    """Header and payload are joined up to COALESCE_LIMIT: one write, no header segment."""
    from wskit.asyncio._hotpath import COALESCE_LIMIT

    counters: list[list[int]] = []

    class CountingEcho(Handler):
        def on_open(self) -> None:
            counters.append(count_writes(self.connection.transport))  # type: ignore[attr-defined]

        def on_message(self, message: str | bytes) -> None:
            self.send(message)

    payload = bytes(65536)
    async with (
        serve(CountingEcho, "127.0.0.1", 0, compression=None) as server,
        connect(url(server), compression=None) as ws,
    ):
        await ws.send(payload)
        assert await ws.recv() == payload
        big = bytes(COALESCE_LIMIT)
        await ws.send(big)
        assert await ws.recv() == big
    (writes,) = counters
    # The 64 KiB answer: one write of header (10 bytes: a 64-bit length) + payload. Above the
    # limit: the header and the payload go as two writes, the payload not copied.
    assert writes[0] == 10 + 65536
    assert writes[1:3] == [10, COALESCE_LIMIT]

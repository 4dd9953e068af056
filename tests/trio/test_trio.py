"""The trio front end (wskit.trio) over real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import wskit.trio
from tests.trio.helpers import RawClient, run, url
from wskit.core import Request, Response
from wskit.core.events import Closed, Ping, Text
from wskit.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)
from wskit.trio import Connection, WebSocketServerConnection, connect, serve


async def echo(ws: Connection) -> None:
    async for message in ws:
        await ws.send(message)


async def only_connection(server: wskit.trio.Server) -> WebSocketServerConnection:
    """The server's one connection, once its handler runs."""
    while not server.connections:
        await trio.sleep(0.01)
    (connection,) = server.connections
    return connection


# --------------------------------------------------------------------------- messages


def test_echo_text_binary_large_fragments_and_iteration() -> None:
    async def fragments() -> AsyncIterator[str]:
        for part in ("as", "ync"):
            yield part

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["fr", "ag", "ments"])
            assert await ws.recv() == "fragments"
            await ws.send([b"a", bytearray(b"b"), memoryview(b"c")])
            assert await ws.recv() == b"abc"
            await ws.send(fragments())
            assert await ws.recv() == "async"
            with pytest.raises(TypeError):
                await ws.send(42)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await ws.send([42])  # type: ignore[list-item]
            await ws.send("after the errors")  # nothing was sent: the connection goes on
            assert await ws.recv() == "after the errors"
            stats = ws.statistics()
            assert stats.messages_sent == stats.messages_received == 7
            # A message whose first frame went out cannot be completed: the connection fails.
            with pytest.raises(TypeError):
                await ws.send(["text", b"bytes"])
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.sent_code == 1011
            assert stats.bytes_sent > 1 << 19  # compressed random bytes do not shrink
        received = []
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            for i in range(3):
                await ws.send(str(i))
            async for message in ws:  # the loop ends at the normal close
                received.append(message)
                if len(received) == 3:
                    await ws.aclose()
        assert received == ["0", "1", "2"]

    run(main)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_compression_negotiated_or_not(compression: str | None) -> None:
    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, compression=compression) as server,
            connect(url(server.port)) as ws,
        ):
            assert ws.response is not None
            offered = ws.response.headers.get("Sec-WebSocket-Extensions")
            if compression:
                assert offered is not None and offered.startswith("permessage-deflate")
            else:
                assert offered is None
            text = "compress me " * 1000
            await ws.send(text)
            assert await ws.recv() == text
            if compression:
                assert ws.statistics().bytes_sent < 1000

    run(main)


def test_max_size_closes_with_1009() -> None:
    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, max_size=1000) as server,
            connect(url(server.port)) as ws,
        ):
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009
        async with (
            serve(echo, "127.0.0.1", 0) as server,
            connect(url(server.port), max_size=10) as ws,
        ):
            await ws.send(b"x" * 11)  # the echo is too big for the client
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.sent_code == 1009

    run(main)


def test_a_bad_frame_is_answered_after_the_messages_before_it() -> None:
    # The client sends a message, then a frame with a reserved opcode: the echo of the
    # message goes out before the server's Close 1002.
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            raw = await RawClient.open(server.port)
            raw.core.send_text("first")
            data = b"".join(raw.core.data_to_send()) + b"\x83\x80" + b"\x00" * 4
            await raw.stream.send_all(data)
            events = await raw.read_until_eof()
            await raw.stream.aclose()
            assert isinstance(events[0], Text) and events[0].data == "first"
            assert isinstance(events[-1], Closed) and events[-1].code == 1002

    run(main)


# --------------------------------------------------------------------------- concurrency


def test_concurrent_recv_raises_and_concurrent_sends_do_not_interleave() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.recv)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(ConcurrencyError):
                    await ws.recv()
                await ws.send("unblock")
            parts = [[f"{i}-{j}" for j in range(20)] for i in range(5)]
            async with trio.open_nursery() as nursery:
                for fragments in parts:
                    nursery.start_soon(ws.send, fragments)
            received = {await ws.recv() for _ in parts}
            assert received == {"".join(fragments) for fragments in parts}

    run(main)


def test_ping_waits_for_its_pong() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            rtt = await ws.ping()
            assert 0 < rtt < 5
            assert ws.latency == rtt
            assert await ws.ping("custom") > 0
            await ws.pong(b"unsolicited")  # the server ignores it
            await ws.send("still fine")
            assert await ws.recv() == "still fine"

    run(main)


def test_ping_with_the_same_data_twice_and_ping_on_a_closed_connection() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            raw = await RawClient.open(server.port)  # never answers pings
            ws = await only_connection(server)

            async def first_ping() -> None:
                with pytest.raises(ConnectionClosedError):  # fails with the connection
                    await ws.ping(b"same")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(first_ping)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(ConcurrencyError):
                    await ws.ping(b"same")
                raw.core.receive_data(await raw.stream.receive_some(65536))
                assert isinstance(raw.core.events()[0], Ping)
                await raw.stream.aclose()
            await ws.wait_closed()
            with pytest.raises(ConnectionClosedError):
                await ws.ping()

    run(main)


# --------------------------------------------------------------------------- server


def test_handler_return_closes_1000_and_failure_closes_1011_server_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocketServerConnection) -> None:
        message = await ws.recv()
        if message == "fail":
            raise ValueError("handler bug")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            for message, code in (("fail", 1011), ("ok", 1000), ("fail", 1011), ("ok", 1000)):
                async with connect(url(server.port)) as ws:
                    await ws.send(message)
                    with pytest.raises(ConnectionClosed) as info:
                        await ws.recv()
                    assert info.value.code == code

    with caplog.at_level(logging.ERROR, "wskit.server"):
        run(main)
    assert sum("handler bug" in r.exc_text for r in caplog.records if r.exc_text) == 2


def test_process_request_origins_and_subprotocols() -> None:
    async def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        await trio.sleep(0)  # a coroutine is awaited
        if request.path == "/health":
            return ws.respond(200, "OK\n")
        return None

    def pick_last(ws: WebSocketServerConnection, offered: object) -> str:
        return list(offered)[-1]  # type: ignore[call-overload,no-any-return]

    async def report(ws: WebSocketServerConnection) -> None:
        await ws.send(f"{ws.request.path} {ws.subprotocol}")

    async def main() -> None:
        async with serve(
            report,
            "127.0.0.1",
            0,
            process_request=process_request,
            select_subprotocol=pick_last,
            origins=["http://good"],
        ) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url(server.port, "/health"), origin="http://good"):
                    pass
            assert info.value.response.status == 200
            assert info.value.response.body == b"OK\n"
            with pytest.raises(InvalidStatus) as info:
                async with connect(url(server.port), origin="http://evil"):
                    pass
            assert info.value.response.status == 403
            async with connect(
                url(server.port, "/chat"), origin="http://good", subprotocols=["a", "b"]
            ) as ws:
                assert ws.subprotocol == "b"
                assert await ws.recv() == "/chat b"

    run(main)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"426",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 100 + b"\r\n" * 1 + b"X: y\r\n" * 6000, b"431"),
    ],
)
def test_bad_requests_get_http_errors(request_bytes: bytes, status: bytes) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
            async with stream:
                await stream.send_all(request_bytes)
                await trio.sleep(0.2)  # the refusal is not lost to a reset meanwhile
                answer = b""
                while data := await stream.receive_some(65536):
                    answer += data
            assert answer.startswith(b"HTTP/1.1 " + status)

    run(main)


def test_open_timeout_drops_a_silent_client() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.2) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
            with trio.fail_after(2):
                assert await stream.receive_some(100) == b""
            await stream.aclose()

    run(main)


def test_leaving_serve_closes_connections_with_1001() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async with serve(echo, "127.0.0.1", 0) as server:
                ws = await connect(url(server.port), nursery=nursery)
                await ws.send("hi")
                assert await ws.recv() == "hi"
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1001

    run(main)


def test_serve_forever_returns_when_another_task_closes_the_server() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_forever)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", server.port or 0)

    run(main)


def test_accept_on_a_stream_from_my_own_listener() -> None:
    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                async with connect(url(port)) as ws:
                    await ws.send("over accept()")
                    assert await ws.recv() == "over accept()"

            nursery.start_soon(client)
            stream = await listeners[0].accept()
            ws = await wskit.trio.accept(nursery, stream)
            await ws.send(await ws.recv())
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            await ws.aclose()
            nursery.start_soon(listeners[0].aclose)

    run(main)


def test_accept_refuses_a_bad_request_with_invalid_handshake() -> None:
    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            await a.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(InvalidHandshake) as info:
                await wskit.trio.accept(nursery, b)
            assert info.value.status == 400
            assert (await a.receive_some(1000)).startswith(b"HTTP/1.1 400 ")

    run(main)


# --------------------------------------------------------------------------- client


def test_client_errors_refused_handshake_timeout_and_await_without_nursery() -> None:
    async def main() -> None:
        async def refuse(ws: WebSocketServerConnection, request: Request) -> Response:
            return ws.respond(401, "who are you?\n")

        async with serve(echo, "127.0.0.1", 0, process_request=refuse) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url(server.port)):
                    pass
            assert info.value.response.status == 401
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")  # never answers
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(TimeoutError):
            async with connect(url(port), open_timeout=0.2):
                pass
        await listeners[0].aclose()
        with pytest.raises(TypeError, match="nursery"):
            await connect(url(port))
        with pytest.raises(OSError):
            async with connect(url(port)):
                pass

    run(main)


def test_the_body_exception_of_connect_is_not_wrapped() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            with pytest.raises(KeyError):
                async with connect(url(server.port)):
                    raise KeyError("mine")
            with pytest.raises(KeyError):
                async with serve(echo, "127.0.0.1", 0):
                    raise KeyError("mine")

    run(main)


def test_tls_and_unix_sockets() -> None:
    import trustme  # the [test] extra: missing means failing, not skipping

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server,
            connect(f"wss://localhost:{server.port}/", ssl=client_ctx) as ws,
        ):
            big = os.urandom(300_000)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("secure")
            assert await ws.recv() == "secure"
        assert ws.close_code == 1000
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws.sock")
            async with (
                serve(echo, unix_path=path) as server,
                connect("ws://localhost/", unix_path=path) as ws,
            ):
                assert server.port is None
                await ws.send("over a unix socket")
                assert await ws.recv() == "over a unix socket"

    run(main)


# --------------------------------------------------------------------------- timers


def test_keepalive_closes_a_silent_peer_with_1011_and_keeps_an_answering_one() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=0.1) as server:
            async with connect(url(server.port), ping_interval=None) as ws:
                await trio.sleep(0.5)  # the client answers the pings itself
                await ws.send("alive")
                assert await ws.recv() == "alive"
            raw = await RawClient.open(server.port)  # reads nothing, answers nothing
            await trio.sleep(0.5)
            events = await raw.read_until_eof()
            await raw.stream.aclose()
            closes = [event for event in events if isinstance(event, Closed)]
            assert closes and closes[0].code == 1011

    run(main)


def test_close_timeout_drops_a_peer_that_never_answers_the_close() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, close_timeout=0.2) as server:
            raw = await RawClient.open(server.port)
            ws = await only_connection(server)
            start = trio.current_time()
            await ws.aclose()  # the raw client never answers
            assert trio.current_time() - start < 2
            assert ws.close_code == 1006
            await raw.stream.aclose()

    run(main)


def test_max_queue_pauses_reading_and_aclose_still_works() -> None:
    async def main() -> None:
        got_all = trio.Event()
        received: list[bytes] = []

        async def slow(ws: WebSocketServerConnection) -> None:
            await trio.sleep(0.3)  # let the queue fill
            # Reading pauses at max_queue; the read that filled it (64 KiB: at most 6 of
            # these 10 KB messages) may have queued a few more.
            assert len(ws._messages) <= 4 + 6
            async for message in ws:
                received.append(message)  # type: ignore[arg-type]
                if len(received) == 200:
                    got_all.set()

        async with (
            serve(slow, "127.0.0.1", 0, max_queue=4, compression=None) as server,
            connect(url(server.port), compression=None) as ws,
        ):
            for i in range(200):
                await ws.send(b"%d" % i + b"." * 10_000)
            await got_all.wait()
        assert [int(m.split(b".")[0]) for m in received] == list(range(200))

        closed_by_server = trio.Event()

        async def closes_unread(ws: WebSocketServerConnection) -> None:
            await trio.sleep(0.3)  # the queue is full and reading paused meanwhile
            start = trio.current_time()
            await ws.aclose()  # reading resumes: the client's answer is seen at once
            assert trio.current_time() - start < 2
            assert ws.close_code == 1000
            closed_by_server.set()

        async with serve(closes_unread, "127.0.0.1", 0, max_queue=1) as server:
            async with connect(url(server.port)) as ws:
                for i in range(10):
                    await ws.send(str(i))
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
            await closed_by_server.wait()

    run(main)


def test_a_peer_that_reads_nothing_is_dropped_by_keepalive() -> None:
    # The handler's send blocks on a full socket buffer; keepalive notices that nothing
    # arrives, fails the connection with 1011, and the close timer drops TCP: the blocked send
    # ends with ConnectionClosedError instead of hanging.
    outcome: list[BaseException] = []

    async def flood(ws: WebSocketServerConnection) -> None:
        try:
            await ws.send(b"x" * (64 << 20))
        except ConnectionClosed as exc:
            outcome.append(exc)

    async def main() -> None:
        async with serve(
            flood,
            "127.0.0.1",
            0,
            compression=None,
            ping_interval=0.2,
            ping_timeout=0.2,
            close_timeout=0.3,
        ) as server:
            raw = await RawClient.open(server.port)  # reads nothing, answers nothing
            start = trio.current_time()
            while not outcome:
                await trio.sleep(0.05)
            assert trio.current_time() - start < 5
            await raw.stream.aclose()
        assert isinstance(outcome[0], ConnectionClosedError)

    run(main)

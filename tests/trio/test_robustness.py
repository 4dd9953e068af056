"""The trio front end under misuse and hostile peers, over real sockets on 127.0.0.1: each
test reproduces a defect an independent review found (and that is fixed): bounded memory,
streams that are not sockets, bad answers from process_request, interrupted fragmented
sends, a bad frame behind messages nobody reads, bad aclose() arguments."""

from __future__ import annotations

import contextlib
import ssl

import pytest
import trio
import trio.testing

from tests.trio.helpers import RawClient, run, url
from wskit.core.events import Closed
from wskit.exceptions import ConnectionClosed, InvalidStatus
from wskit.trio import Connection, WebSocketServerConnection, accept, connect, serve


async def echo(ws: Connection) -> None:
    async for message in ws:
        await ws.send(message)


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


# ------------------------------------------------------------------ pongs behind a stalled send


def test_pongs_queued_behind_a_stalled_send_stay_bounded() -> None:
    # The handler's send blocks (the client reads nothing) and holds the write lock; the
    # client keeps sending pings. The reader never blocks on a write, so it reads on; the
    # pongs must stay in the core (bounded by MAX_PENDING_PONGS) for the lock's holder to
    # write, not pile up in the front end as the peer sends more (the defect was that).
    connection: list[WebSocketServerConnection] = []

    async def flood(ws: WebSocketServerConnection) -> None:
        connection.append(ws)
        with pytest.raises(ConnectionClosed):
            await ws.send(b"x" * (64 << 20))

    async def main() -> None:
        async with serve(flood, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            raw = await RawClient.open(server.port)  # never reads
            while not connection:
                await trio.sleep(0.01)
            ws = connection[0]
            await trio.sleep(0.2)  # the send fills the socket buffers and blocks
            assert ws._write_lock.locked()
            payload = b"p" * 125
            for _ in range(200):
                for _ in range(100):
                    raw.core.send_ping(payload)
                await raw.flush()
            await trio.sleep(0.2)
            queued = sum(len(chunk) for chunk in ws._backlog)
            await raw.stream.aclose()
        # 20,000 pings of 125 bytes were read; at most a handful of pongs should wait.
        assert queued <= 16 * 127, f"{queued} bytes of pongs queued in memory"

    run(main)


# ------------------------------------------------------------------ streams that are not sockets


class Wrapped(trio.abc.HalfCloseableStream):
    """A stream around a SocketStream that hides it (as a proxy or a logging wrapper would):
    a valid ``trio.abc.Stream`` for ``connect(stream=...)`` / ``accept``."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_close_timeout_closes_a_stream_that_is_not_a_socket_stream() -> None:
    # _abort() closes a raw socket it can find; any other stream must be closed by the
    # background task (the defect: it was never closed after aclose() gave up on a silent
    # peer).
    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            raw_task = trio.Event()
            raws: list[RawClient] = []

            async def client() -> None:
                raws.append(await RawClient.open(port))
                raw_task.set()

            nursery.start_soon(client)
            inner = await listeners[0].accept()
            wrapped = Wrapped(inner)
            ws = await accept(nursery, wrapped, close_timeout=0.2, ping_interval=None)
            await raw_task.wait()
            raw = raws[0]
            start = trio.current_time()
            await ws.aclose()  # the raw client never answers the Close
            assert trio.current_time() - start < 2
            assert ws.close_code == 1006
            # The peer must see the end of the connection (EOF or a reset).
            with trio.move_on_after(2) as scope:
                with contextlib.suppress(trio.BrokenResourceError):
                    await raw.read_until_eof()
            await raw.stream.aclose()
            closed = inner.socket.fileno() == -1
            await inner.aclose()
        for listener in listeners:
            await listener.aclose()
        assert not scope.cancelled_caught, "the peer never saw the connection end"
        assert closed, "the stream was never closed"

    run(main)


def test_a_stalled_send_on_a_non_socket_stream_ends_after_close_timeout() -> None:
    # The same with a send blocked on the stream: keepalive fails a peer that reads nothing,
    # the close timer drops the connection, and closing the stream must wake that send.
    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        outcome: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            raws: list[RawClient] = []

            async def client() -> None:
                raws.append(await RawClient.open(port))

            nursery.start_soon(client)
            inner = await listeners[0].accept()
            ws = await accept(
                nursery,
                Wrapped(inner),
                compression=None,
                ping_interval=0.2,
                ping_timeout=0.2,
                close_timeout=0.3,
            )
            with trio.move_on_after(5) as scope:
                try:
                    await ws.send(b"x" * (64 << 20))
                except ConnectionClosed as exc:
                    outcome.append(exc)
            for raw in raws:
                await raw.stream.aclose()
            await inner.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
        assert not scope.cancelled_caught, "send() still blocked 5 s after the close timer"
        assert outcome

    run(main)


# ------------------------------------------------------------------ bad process_request answers


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda ws, request: (403, [], b"no"), id="tuple"),
        pytest.param(lambda ws, request: ws.respond(101), id="status-101"),
    ],
)
def test_a_bad_process_request_answer_does_not_take_the_server_down(bad: object) -> None:
    # What process_request *returns* is checked like what it raises: a wrong type, or a 101
    # that accept() did not make, gets a 500, and the server serves on (the defect: the
    # error escaped the connection's task and the serve() nursery died with every other
    # connection).
    calls = 0

    def process_request(ws: WebSocketServerConnection, request: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            return bad(ws, request)  # type: ignore[operator]
        return None

    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, process_request=process_request) as server,
            connect(url(server.port)) as first,
        ):
            with pytest.raises((InvalidStatus, OSError)):
                async with connect(url(server.port)):
                    pass
            await first.send("still served?")
            assert await first.recv() == "still served?"
            async with connect(url(server.port)) as third:
                await third.send("new connections too?")
                assert await third.recv() == "new connections too?"

    run(main)  # a server that died would raise (an ExceptionGroup) out of serve()


# ------------------------------------------------------------------ interrupted fragmented sends


async def send_next_message(ws: Connection) -> str:
    """After an interrupted message, send another: "sent", "closed" (the connection failed
    with 1011, as documented) or the unexpected error (a wedged connection)."""
    try:
        await ws.send("next message")
    except ConnectionClosed:
        return "closed"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "sent"


def test_a_fragmented_send_interrupted_between_frames_does_not_wedge_the_connection() -> None:
    # send(async iterable) cancelled while it waits for the next fragment (or a sync
    # iterable that raises) cannot complete its message: the connection must end (dropped,
    # or failed with 1011), not stay open with the message unfinished, where every later
    # send() raised LocalProtocolError and the peer waited for the end forever.
    outcomes: list[str] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        async def fragments():  # type: ignore[no-untyped-def]
            yield "first "
            await trio.sleep_forever()
            yield "never"

        with trio.move_on_after(0.2):
            await ws.send(fragments())
        outcomes.append(await send_next_message(ws))

    async def main() -> None:
        async with (
            serve(handler, "127.0.0.1", 0) as server,
            connect(url(server.port)) as ws,
        ):
            with trio.move_on_after(2):
                while not outcomes:
                    await trio.sleep(0.01)
            with trio.move_on_after(1), contextlib.suppress(ConnectionClosed):
                await ws.recv()
        assert outcomes in (["sent"], ["closed"]), outcomes

    run(main)


def test_a_sync_iterable_that_raises_mid_message_does_not_wedge_the_connection() -> None:
    outcomes: list[str] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        def failing():  # type: ignore[no-untyped-def]
            yield b"a"
            raise ValueError("the producer failed")

        with pytest.raises(ValueError):
            await ws.send(failing())
        outcomes.append(await send_next_message(ws))

    async def main() -> None:
        async with (
            serve(handler, "127.0.0.1", 0) as server,
            connect(url(server.port)) as ws,
        ):
            with trio.move_on_after(1), contextlib.suppress(ConnectionClosed):
                await ws.recv()
            while not outcomes:
                await trio.sleep(0.01)
        assert outcomes in (["sent"], ["closed"]), outcomes

    run(main)


# ------------------------------------------------------------------ messages while closing


def test_messages_received_while_closing_stay_bounded_by_max_queue() -> None:
    # aclose() resumes reading to see the peer's Close; a peer that keeps sending data
    # frames instead must not fill memory meanwhile: beyond max_queue, messages that arrive
    # while closing are dropped.
    connection: list[WebSocketServerConnection] = []
    queued: list[int] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        connection.append(ws)
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while True:
                    queued.append(sum(len(m) for m in ws._messages))
                    await trio.sleep(0.02)

            nursery.start_soon(watch)
            await ws.aclose()
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", 0, compression=None, max_queue=4, close_timeout=1
        ) as server:
            raw = await RawClient.open(server.port)
            chunk = b"m" * 65536
            while not connection:
                await trio.sleep(0.01)
            await trio.sleep(0.1)  # the server's Close is out
            try:
                for _ in range(256):  # 16 MiB, never answering the Close
                    raw.core.send_binary(chunk)
                    await raw.flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await trio.sleep(0.3)
            await raw.stream.aclose()
        most = max(queued)
        # max_queue=4 messages of 64 KiB: 256 KiB; allow some slack for one read.
        assert most <= 1 << 20, f"{most >> 20} MiB of messages queued during the close"

    run(main)


# ------------------------------------------------------------------ cancelling the serve block


def test_leaving_serve_by_cancellation_drops_connections_at_once() -> None:
    # docs/trio.md: leaving the block normally or by an exception closes with 1001; cancelled,
    # it drops every connection at once (a cancellation means stop now): the peer sees EOF
    # right away, with no Close frame (1006), and nothing waits for close_timeout.
    async def hold(ws: WebSocketServerConnection) -> None:
        await trio.sleep_forever()

    async def main() -> None:
        raws: list[RawClient] = []
        with trio.move_on_after(0.5) as scope:
            async with serve(hold, "127.0.0.1", 0, close_timeout=60) as server:
                raws.append(await RawClient.open(server.port))
                await trio.sleep_forever()
        assert scope.cancelled_caught
        raw = raws[0]
        with trio.fail_after(2):
            events = await raw.read_until_eof()
        await raw.stream.aclose()
        assert next(event for event in events if isinstance(event, Closed)).code == 1006
        assert raw.core.close_rcvd is None

    run(main)


# ------------------------------------------------------------------ a bad frame nobody reads past


def test_a_bad_frame_fails_the_connection_even_if_the_handler_never_calls_recv() -> None:
    # A bad frame is held back behind messages the handler has not taken (so that its
    # answers go out first); for a handler that never calls recv() (a send-only feed) the
    # hold ends after HELD_ERROR_TIMEOUT and the connection fails with 1002 (it was held
    # forever, the client's Close ignored).
    async def feed(ws: WebSocketServerConnection) -> None:
        while True:
            await ws.send("tick")
            await trio.sleep(0.1)

    async def main() -> None:
        async with serve(feed, "127.0.0.1", 0, compression=None) as server:
            raw = await RawClient.open(server.port)
            raw.core.send_text("hello")
            await raw.flush()
            await trio.sleep(0.1)
            # A frame with reserved opcode 0x3, masked as a client must.
            await raw.stream.send_all(b"\x83\x80\x00\x00\x00\x00")
            with trio.move_on_after(2):
                while raw.core.close_rcvd is None:
                    await raw.next_events()
            await raw.stream.aclose()
        assert raw.core.close_rcvd is not None, "the server never failed the connection"
        assert raw.core.close_rcvd[0] == 1002

    run(main)


# ------------------------------------------------------------------ aclose() with a bad argument


def test_aclose_with_an_invalid_code_raises_without_dropping_the_connection() -> None:
    # aclose(999) (or a reason over 123 bytes): core.send_close raises LocalProtocolError
    # before anything is sent; the error is reported and the connection stays open (it was
    # dropped too, the peer seeing 1006).
    results: list[object] = []

    async def handler(ws: WebSocketServerConnection) -> None:
        try:
            await ws.aclose(1000, "x" * 200)
        except Exception as exc:
            results.append(type(exc).__name__)
        results.append(ws.state.name)
        await ws.send("still open")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(url(server.port)) as ws:
                with trio.move_on_after(2):
                    with contextlib.suppress(ConnectionClosed):
                        assert await ws.recv() == "still open"
            close_code = ws.close_code
        assert results[1:] == ["OPEN"], results
        assert close_code == 1000

    run(main)


# ------------------------------------------------------------------ the compat layer's accept()


def test_compat_accept_with_bad_extra_headers_still_gets_an_http_answer() -> None:
    # A handler whose accept() fails while the response is made (a header value with a line
    # break) raised before anything was sent: the client gets the server's 500, not a bare
    # TCP close.
    from wskit import trio_websocket as compat

    async def handler(request: compat.WebSocketRequest) -> None:
        await request.accept(extra_headers=[(b"X-Bad", b"a\r\nb")])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(compat.serve_websocket, handler, "127.0.0.1", 0, None)
            with pytest.raises(compat.ConnectionRejected) as info:
                async with compat.open_websocket("127.0.0.1", server.port, "/", use_ssl=False):
                    pass
            assert info.value.status_code == 500
            nursery.cancel_scope.cancel()

    run(main)

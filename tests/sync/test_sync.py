"""The threads front end (wskit.sync) over real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wskit.sync
from tests.sync.conftest import WAIT, running
from wskit.core import ClientConnection, Request, Response, ServerConnection, State
from wskit.core.events import Closed, Ping, Pong
from wskit.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)
from wskit.sync import Connection, Server, WebSocketServerConnection, connect, serve


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def echo(ws: Connection) -> None:
    for message in ws:
        ws.send(message)


def raw_client(port: int) -> tuple[ClientConnection, socket.socket]:
    """A client core over a plain socket, past the opening handshake: the test decides what
    goes out, and when (or whether) it answers."""
    core = ClientConnection(f"ws://127.0.0.1:{port}/", extensions=[])
    core.send_request()
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.sendall(b"".join(core.data_to_send()))
    while core.state is State.CONNECTING:
        data = sock.recv(65536)
        assert data, "server closed during the handshake"
        core.receive_data(data)
    assert isinstance(core.events()[0], Response)
    return core, sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes TCP (bounded by the socket's timeout)."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


# --------------------------------------------------------------------------- messages


def test_echo_text_binary_large_and_iteration(echo_server: Server) -> None:
    with connect(url(echo_server)) as ws:
        ws.send("hello")
        assert ws.recv(timeout=WAIT) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=WAIT) == b"\x00\x01"
        big = os.urandom(1 << 20)
        ws.send(big)
        assert ws.recv(timeout=WAIT) == big
        ws.send(bytearray(b"ba"))
        ws.send(memoryview(b"mv"))
        assert [ws.recv(timeout=WAIT), ws.recv(timeout=WAIT)] == [b"ba", b"mv"]
    assert ws.state is State.CLOSED and ws.close_code == 1000


@pytest.mark.parametrize("compression", ["deflate", None])
def test_compression_on_and_off(compression: str | None) -> None:
    with (
        running(echo, compression=compression) as server,
        connect(url(server), compression=compression) as ws,
    ):
        text = '{"key": "value", "n": 12345}' * 1000
        ws.send(text)
        assert ws.recv(timeout=WAIT) == text
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")  # type: ignore[union-attr]
        assert (negotiated is not None) == (compression is not None)
        stats = ws.statistics()
        if compression:
            assert stats.bytes_sent < len(text) // 10
        else:
            assert stats.bytes_sent > len(text)


def test_fragmented_send_from_iterables(echo_server: Server) -> None:
    with connect(url(echo_server)) as ws:
        ws.send(["fra", "gmen", "ted"])
        assert ws.recv(timeout=WAIT) == "fragmented"
        ws.send(iter([b"a", b"b"]))
        assert ws.recv(timeout=WAIT) == b"ab"
        ws.send([])  # sends nothing
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send([42])  # type: ignore[list-item]
        ws.send("after")  # nothing was sent: the connection goes on
        assert ws.recv(timeout=WAIT) == "after"
        # A message whose first frame went out cannot be completed: the connection fails.
        with pytest.raises(TypeError):
            ws.send(["text", b"bytes"])
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.sent_code == 1011


def test_iteration_ends_quietly_on_normal_close() -> None:
    def two_then_close(ws: Connection) -> None:
        ws.send("one")
        ws.send("two")

    with running(two_then_close) as server, connect(url(server)) as ws:
        assert list(ws) == ["one", "two"]
        assert ws.close_code == 1000


# --------------------------------------------------------------------------- recv(timeout)


def test_recv_timeout_raises_and_loses_nothing() -> None:
    go = threading.Event()

    def later(ws: Connection) -> None:
        go.wait(WAIT)
        ws.send("late")
        ws.recv(timeout=WAIT)

    with running(later) as server, connect(url(server)) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)  # does not block
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert 0.15 <= time.monotonic() - started < 2
        go.set()
        # The message that arrives after a timeout waits for the next call.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                assert ws.recv(timeout=0) == "late"
                break
            except TimeoutError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        ws.send("done")


def test_two_threads_in_recv_raise_concurrency_error(echo_server: Server) -> None:
    with connect(url(echo_server)) as ws:
        results: list[object] = []
        entered = threading.Event()

        def first() -> None:
            entered.set()
            try:
                results.append(ws.recv(timeout=WAIT))
            except BaseException as exc:
                results.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        entered.wait(WAIT)
        time.sleep(0.1)  # the first thread is now waiting inside recv()
        with pytest.raises(ConcurrencyError):
            ws.recv(timeout=0)
        ws.send("for the first thread")  # its echo ends the first recv(), which is unharmed
        thread.join(WAIT)
        assert results == ["for the first thread"]


def test_send_from_many_threads_at_once_keeps_messages_whole(echo_server: Server) -> None:
    threads, per_thread = 8, 50
    with connect(url(echo_server), max_queue=None) as ws:

        def sender(n: int) -> None:
            for i in range(per_thread):
                if i % 10 == 0:  # fragmented messages must not interleave either
                    ws.send([f"{n}:", f"{i}:", "x" * 5000])
                else:
                    ws.send(f"{n}:{i}:" + "x" * (100 * i))

        workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        received = [ws.recv(timeout=WAIT) for _ in range(threads * per_thread)]
        for worker in workers:
            worker.join(WAIT)
    by_thread: dict[str, list[int]] = {}
    for message in received:
        assert isinstance(message, str)
        n, i, rest = message.split(":")
        expected = 5000 if int(i) % 10 == 0 else 100 * int(i)
        assert rest == "x" * expected
        by_thread.setdefault(n, []).append(int(i))
    # Each thread's messages arrive whole and in the order that thread sent them.
    assert by_thread == {str(n): list(range(per_thread)) for n in range(threads)}


# --------------------------------------------------------------------------- closing


def test_close_codes_and_reasons_both_ways() -> None:
    seen: list[tuple[int | None, str | None]] = []

    def closer(ws: Connection) -> None:
        if ws.recv(timeout=WAIT) == "close please":
            ws.close(4001, "server says bye")
        else:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=WAIT)
            seen.append((ws.close_code, ws.close_reason))

    with running(closer) as server:
        with connect(url(server)) as ws:
            ws.send("close please")
            # Codes other than 1000, 1001 and 1005 end a connection with an error.
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=WAIT)
            assert (info.value.code, info.value.reason) == (4001, "server says bye")
        with connect(url(server)) as ws2:
            ws2.send("wait")
            ws2.close(4002, "client says bye")
            # What the client received: the server's echo of its code.
            assert (ws2.close_code, ws2.close_reason) == (4002, "")
            with pytest.raises(ConnectionClosed):
                ws2.send("after close")
        with connect(url(server)) as ws3:
            ws3.send("wait")
        assert ws3.close_code == 1000  # the context manager closes normally
    # Two handler threads append: in either order.
    assert sorted(seen) == [(1000, ""), (4002, "client says bye")]


def test_close_gives_up_on_a_silent_peer_after_close_timeout() -> None:
    with running(echo, close_timeout=0.2) as server:
        _core, sock = raw_client(server.port)
        deadline = time.monotonic() + WAIT
        while not server.connections:  # registered right after its 101 was written
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (conn,) = server.connections
        started = time.monotonic()
        conn.close(1000)  # the raw client never answers the Close frame
        assert time.monotonic() - started < 3
        assert read_until_closed(sock).startswith(b"\x88")
        sock.close()


def test_close_is_bounded_when_a_send_is_stuck_on_a_peer_that_reads_nothing() -> None:
    stuck = threading.Event()
    done: list[float] = []

    def flooder(ws: Connection) -> None:
        def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    ws.send(b"x" * 65536)  # the peer reads nothing: this blocks, for good

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.3)
        stuck.set()
        started = time.monotonic()
        ws.close()
        done.append(time.monotonic() - started)

    with running(flooder, close_timeout=0.3, compression=None) as server:
        _core, sock = raw_client(server.port)
        assert stuck.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while not done:
            assert time.monotonic() < deadline, "close() did not return"
            time.sleep(0.05)
        sock.close()
    # The writer held the socket: close() waited close_timeout for it, then dropped TCP.
    assert done[0] < 3


@contextlib.contextmanager
def small_buffers(**kwargs: Any) -> Iterator[tuple[Connection, ClientConnection, socket.socket]]:
    """A wskit.sync server connection (4 KiB send buffer, no autotuning) and a raw client
    core on a socket with a 4 KiB receive buffer: a peer that reads nothing fills them fast."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[Connection] = []

    def owner() -> None:
        sock, _ = listener.accept()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        kwargs.setdefault("ping_interval", None)
        kwargs.setdefault("compression", None)
        accepted.append(wskit.sync.accept(sock, **kwargs))

    thread = threading.Thread(target=owner, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    try:
        sock.connect(listener.getsockname())
        core = ClientConnection(f"ws://127.0.0.1:{listener.getsockname()[1]}/", extensions=[])
        core.send_request()
        sock.sendall(b"".join(core.data_to_send()))
        while core.state is State.CONNECTING:
            data = sock.recv(4096)
            assert data, "server closed during the handshake"
            core.receive_data(data)
        core.events()
        thread.join(WAIT)
        (ws,) = accepted
        try:
            yield ws, core, sock
        finally:
            ws.close()
    finally:
        sock.close()
        listener.close()


def flood_with_pings(core: ClientConnection, sock: socket.socket, count: int = 20_000) -> None:
    """Send ``count`` pings (125 bytes each: ~2.5 MB of pongs to answer for 20,000)."""
    for _ in range(count):
        core.send_ping(b"p" * 125)
    sock.sendall(b"".join(core.data_to_send()))


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_reader_keeps_reading_while_a_peer_that_reads_nothing_floods_pings() -> None:
    """The reader thread answers pings; a peer that sends them without reading fills the
    socket's buffers. The reader's writes never block (the rest of a write waits for the
    socket), so it keeps reading: the message behind the flood arrives, memory stays
    bounded (pongs wait in the core, MAX_PENDING_PONGS), and close() is bounded by
    close_timeout. Before, the reader blocked in sendall() for as long as the peer read
    nothing, and so did a close() that had to write."""
    with small_buffers(close_timeout=0.5) as (ws, core, sock):
        flood_with_pings(core, sock)
        core.send_text("after the flood")
        sock.sendall(b"".join(core.data_to_send()))  # and never reads anything
        assert ws.recv(timeout=WAIT) == "after the flood"
        wait_for(lambda: ws.statistics().write_buffer_size > 0)  # the rest of a write waits
        # What waits to be written is the rest of one write, not 20,000 pongs.
        assert ws.statistics().write_buffer_size < 64 * 1024
        # close() writes the rest and its Close frame to a peer that takes nothing: that
        # write is bounded by close_timeout too (it blocked for good before).
        started = time.monotonic()
        ws.close()
        assert time.monotonic() - started < 3


def test_a_reader_paused_by_max_queue_still_writes_what_it_owes() -> None:
    """A reader paused by max_queue (recv() not called) does not read, but it still writes
    the rest of its pongs once the peer reads again: the answer to a ping sent before the
    queue filled arrives without the application calling recv()."""
    with small_buffers(max_queue=2, close_timeout=0.5) as (ws, core, sock):
        flood_with_pings(core, sock)
        wait_for(lambda: ws.statistics().write_buffer_size > 0)  # stalled: the peer reads nothing
        core.send_ping(b"last")
        for index in range(3):
            core.send_text(f"m{index}")  # the queue fills: the reader pauses
        sock.sendall(b"".join(core.data_to_send()))
        wait_for(lambda: ws.statistics().messages_queued >= 2)
        answered = False
        deadline = time.monotonic() + WAIT
        while not answered and time.monotonic() < deadline:  # the peer reads again
            data = sock.recv(65536)
            assert data, "the server closed"
            core.receive_data(data)
            answered = any(
                isinstance(event, Pong) and event.payload == b"last" for event in core.events()
            )
        assert answered
        assert ws.statistics().messages_queued >= 2  # nobody called recv()


def test_pongs_do_not_pile_up_behind_a_blocked_send() -> None:
    """While a send() blocks on a peer that reads nothing, the pongs the reader owes stay in
    the core (at most MAX_PENDING_PONGS); before, every read moved its pongs into the
    connection's backlog, which grew as long as the peer kept pinging."""
    tracemalloc.start()
    try:
        with small_buffers(close_timeout=0.5) as (ws, core, sock):

            def send_a_megabyte() -> None:
                with contextlib.suppress(ConnectionClosed):
                    ws.send(b"x" * 1_000_000)

            sender = threading.Thread(target=send_a_megabyte, daemon=True)
            sender.start()
            wait_for(lambda: ws.statistics().bytes_sent > 0)
            time.sleep(0.2)  # the send() is blocked in sendall() now
            before = tracemalloc.get_traced_memory()[0]
            flood_with_pings(core, sock, 40_000)  # ~5 MB read: ~16 pongs per read to answer
            wait_for(lambda: ws.statistics().bytes_received > 5_000_000)
            grown = tracemalloc.get_traced_memory()[0] - before
            assert sender.is_alive()
        sender.join(WAIT)
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024


def test_a_failure_from_the_application_wakes_a_paused_reader() -> None:
    """A fragmented send() that fails closes the connection (1011) from the application's
    thread while the reader is paused by max_queue: the reader is woken, sees the close
    timer and the peer's answer, and the connection ends without anyone calling close()."""
    with small_buffers(max_queue=2, close_timeout=0.5) as (ws, core, sock):
        for index in range(3):
            core.send_text(f"m{index}")
        sock.sendall(b"".join(core.data_to_send()))
        wait_for(lambda: ws.statistics().messages_queued >= 2)  # the reader is paused

        def fragments() -> Iterator[str]:
            yield "first fragment"
            raise ValueError("the producer failed")

        with pytest.raises(ValueError):
            ws.send(fragments())
        # The peer does not answer: the close timer, watched by the woken reader, ends it.
        assert ws.wait_closed(WAIT)
        assert ws.recv(timeout=0) == "m0"  # what was received is still delivered


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_an_interrupted_write_fails_the_connection() -> None:
    """An exception that interrupts a write (Ctrl-C, gevent.Timeout) leaves the stream cut
    in an unknown place: the connection is dropped, and later sends raise ConnectionClosed
    (before, they went on writing after a partial frame, or silently wrote nothing)."""

    class Interrupt(BaseException):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupt

    with small_buffers(close_timeout=0.5) as (ws, _core, _sock):
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupt):
                ws.send(b"x" * 10_000_000)  # the peer reads nothing: blocks until the alarm
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        outcome: list[BaseException | None] = []

        def send_again() -> None:
            try:
                ws.send("after")
            except BaseException as exc:  # recorded for the assertion
                outcome.append(exc)
            else:
                outcome.append(None)

        thread = threading.Thread(target=send_again, daemon=True)
        thread.start()
        thread.join(WAIT)
        assert outcome and isinstance(outcome[0], ConnectionClosed)
        assert ws.wait_closed(WAIT)


def test_handler_error_closes_with_1011_and_server_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(ws: Connection) -> None:
        raise RuntimeError("handler bug")

    with caplog.at_level(logging.ERROR, logger="wskit"), running(broken) as server:
        for _ in range(2):
            with connect(url(server)) as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    ws.recv(timeout=WAIT)
                assert info.value.code == 1011
    assert "connection handler failed" in caplog.text


def test_shutdown_sends_1001_to_every_client(echo_server: Server) -> None:
    clients = [connect(url(echo_server)) for _ in range(3)]
    for ws in clients:
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "hi"
    assert len(echo_server.connections) == 3
    echo_server.shutdown(timeout=WAIT)
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1001
        ws.close()


def test_send_after_close_raises_connection_closed(echo_server: Server) -> None:
    ws = connect(url(echo_server))
    ws.close()
    with pytest.raises(ConnectionClosed):
        ws.send("too late")
    with pytest.raises(ConnectionClosed):
        ws.ping()


# --------------------------------------------------------------------------- pings


def test_ping_returns_round_trip_time(echo_server: Server) -> None:
    with connect(url(echo_server)) as ws:
        rtt = ws.ping(b"abc").result(timeout=WAIT)
        assert 0 <= rtt < 5 and ws.latency == rtt


def test_unanswered_pings_fail_when_the_connection_closes() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def deaf_server() -> None:
        """Completes the handshake, then reads without answering, until the client leaves."""
        sock, _ = listener.accept()
        core = ServerConnection()
        while core.request is None:
            core.receive_data(sock.recv(65536))
        core.send_response(core.accept(core.events()[0]))  # type: ignore[arg-type]
        sock.sendall(b"".join(core.data_to_send()))
        sock.settimeout(WAIT)
        while sock.recv(65536):
            pass
        sock.close()

    thread = threading.Thread(target=deaf_server)
    thread.start()
    try:
        ws = connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=0.2)
        waiter = ws.ping(b"dup")
        with pytest.raises(ConcurrencyError):
            ws.ping(b"dup")
        other = ws.ping()
        ws.close()
        # Closing fails every unanswered ping: no future is left hanging.
        for future in (waiter, other):
            with pytest.raises(ConnectionClosed):
                future.result(timeout=WAIT)
    finally:
        thread.join(WAIT)
        listener.close()


def test_a_ping_callback_may_use_the_connection(echo_server: Server) -> None:
    """Ping futures are resolved outside the connection's lock: a callback that sends, while
    another thread sends too, neither deadlocks nor interleaves. ``max_queue=None``: the
    echoes pile up unread while the test waits for the pong, and a reader paused at max_queue
    would not read the pong behind them (backpressure, docs/limits.md)."""
    with connect(url(echo_server), max_queue=None) as ws:
        stop = threading.Event()

        def chatter() -> None:
            for _ in range(300):  # bounded: the echoes must not bury the callback's message
                if stop.is_set():
                    return
                ws.send("chatter")

        thread = threading.Thread(target=chatter)
        thread.start()
        try:
            future = ws.ping()
            future.add_done_callback(lambda _: ws.send("from the callback"))
            future.result(timeout=WAIT)
            deadline = time.monotonic() + WAIT
            while ws.recv(timeout=WAIT) != "from the callback":
                assert time.monotonic() < deadline
        finally:
            stop.set()
            thread.join(WAIT)


def test_shutdown_from_a_handler_returns_and_stops_the_server() -> None:
    servers: list[Server] = []
    returned = threading.Event()

    def stopper(ws: Connection) -> None:
        servers[0].shutdown()  # from a connection's own thread: must not wait for itself
        returned.set()

    server = serve(stopper, "127.0.0.1", 0, ping_interval=None)
    servers.append(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with connect(url(server)) as ws:
        assert returned.wait(WAIT)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
    thread.join(WAIT)
    assert not thread.is_alive()
    server.shutdown(timeout=WAIT)  # again, from outside: waits, then returns


def test_keepalive_fails_a_silent_peer_with_1011() -> None:
    closed: list[int | None] = []

    def handler(ws: Connection) -> None:
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=WAIT)
        closed.append(ws.close_code)

    with running(handler, ping_interval=0.1, ping_timeout=0.1) as server:
        core, sock = raw_client(server.port)  # never reads, never answers
        core.receive_data(read_until_closed(sock))
        events = core.events()
        assert any(isinstance(e, Ping) for e in events)
        assert isinstance(events[-1], Closed) and events[-1].code == 1011
        sock.close()
    assert closed == [1006]


def test_keepalive_keeps_an_answering_peer() -> None:
    # Many pings, each answered; longer than ping_interval + ping_timeout, so a client that
    # did not answer would be dropped. The timeout leaves room for a thread that stalls.
    with (
        running(echo, ping_interval=0.05, ping_timeout=0.5) as server,
        connect(url(server), ping_interval=None) as ws,
    ):
        time.sleep(1.0)
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"


def run_late_once(ws: Connection, when: Callable[[], bool]) -> threading.Event:
    """Make the reader thread of ``ws`` run late once, as a descheduled thread does: the first
    time it is about to poll with ``when()`` true, it sleeps 0.5 s and then goes on as after
    a wake-up with nothing read. The event is set once that happened."""
    stalled = threading.Event()
    original = ws._wait

    def late(selector: Any, timeout: float | None, reading: bool) -> bool:
        if when() and not stalled.is_set():
            stalled.set()
            time.sleep(0.5)
            return False
        return original(selector, timeout, reading)

    ws._wait = late  # type: ignore[method-assign]
    return stalled


def test_keepalive_reads_a_pong_that_arrived_while_the_reader_ran_late(
    echo_server: Server,
) -> None:
    """The reader thread is woken for something else and then runs late, past ping_timeout,
    while the pong waits unread in the socket: it reads before it judges the peer silent
    (as an event loop handles I/O before timers), so the connection stays open."""
    with connect(url(echo_server), ping_interval=0.1, ping_timeout=0.2) as ws:
        stalled = run_late_once(ws, lambda: ws._ping_outstanding)  # the pong arrives meanwhile
        assert stalled.wait(WAIT)
        time.sleep(0.7)  # more keepalive rounds, each answered
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"
        assert ws.close_code is None


# --------------------------------------------------------------------------- limits and bad input


def test_message_over_max_size_closes_with_1009() -> None:
    closed: list[int | None] = []

    def handler(ws: Connection) -> None:
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=WAIT)
        closed.append(ws.close_code)

    with running(handler, max_size=1000) as server, connect(url(server)) as ws:
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1009
    assert closed == [1006]  # the server failed the connection: it received no Close frame


def test_protocol_violation_closes_with_1002() -> None:
    with running(echo) as server:
        core, sock = raw_client(server.port)
        sock.sendall(b"\x83\x80abcd")  # reserved opcode 0x3, masked, empty
        core.receive_data(read_until_closed(sock))
        (event,) = core.events()
        assert isinstance(event, Closed) and event.code == 1002
        sock.close()


def test_max_queue_applies_backpressure() -> None:
    release = threading.Event()
    received: list[Any] = []
    seen_queued: list[int] = []

    def slow(ws: WebSocketServerConnection) -> None:
        release.wait(WAIT)
        seen_queued.append(ws.statistics().messages_queued)
        received.extend(ws)

    message = b"x" * 65536
    with (
        running(slow, max_queue=2, compression=None) as server,
        connect(url(server), compression=None) as ws,
    ):
        sent = 0

        def flood() -> None:
            nonlocal sent
            for _ in range(300):
                ws.send(message)
                sent += 1

        thread = threading.Thread(target=flood)
        thread.start()
        time.sleep(0.5)
        # The server stopped reading, so TCP buffers filled and send() now blocks.
        assert thread.is_alive() and sent < 300
        release.set()
        thread.join(WAIT)
        assert sent == 300
    # Reading paused at max_queue; one read (64 KiB) may have parsed one more.
    assert 2 <= seen_queued[0] <= 3
    assert len(received) == 300


def test_silent_client_is_dropped_after_open_timeout() -> None:
    with running(echo, open_timeout=0.2) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed without an answer
        assert time.monotonic() - started < 3
        sock.close()


def test_connect_times_out_on_a_silent_server() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)
    finally:
        listener.close()


def test_a_refusal_survives_the_unread_rest_of_the_request() -> None:
    # The server refuses a 600 KiB head after 16 KiB; closing with the rest unread would reset
    # the connection and the client would lose the 431 (CI saw that once). The server
    # half-closes and drains instead: the answer is still there after a pause.
    with running(echo) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\n" + (b"X: " + b"y" * 100 + b"\r\n") * 6000)
            time.sleep(0.3)  # the server answered and closed its side meanwhile
            assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")


def test_bad_requests_get_http_errors() -> None:
    upgrade = (
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {v}\r\n\r\n"
    )
    with running(echo) as server:
        for request, status in (
            (upgrade.format(v=8), b"426"),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
            ("GET / HTTP/1.1\r\n" + "X: y\r\n" * 10000, b"431"),
        ):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            with contextlib.suppress(OSError):  # the server may close before the head is sent
                sock.sendall(request.encode())
            answer = read_until_closed(sock)
            assert answer.split(b" ")[1] == status, answer[:80]
            sock.close()


def test_max_connections_answers_503() -> None:
    release = threading.Event()

    def hold(ws: Connection) -> None:
        release.wait(WAIT)

    with running(hold, max_connections=2) as server:
        first, second = connect(url(server)), connect(url(server))
        with pytest.raises(InvalidStatus) as info:
            connect(url(server))
        assert info.value.response.status == 503
        release.set()
        first.close()
        second.close()
        # Slots come back once connections end.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                connect(url(server)).close()
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.05)


# --------------------------------------------------------------------------- handshake


def test_request_process_request_and_origins() -> None:
    seen: list[Request] = []

    def handler(ws: WebSocketServerConnection) -> None:
        seen.append(ws.request)
        ws.send(ws.request.target)

    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        if request.path == "/health":
            return ws.respond(200, "ok\n")
        if request.headers.get("Authorization") != "Bearer token":
            return ws.respond(401)
        return None

    with running(
        handler, process_request=process_request, origins=["https://good.example", None]
    ) as server:
        with pytest.raises(InvalidStatus) as info:
            connect(url(server, "/health"))
        assert info.value.response.status == 200 and info.value.response.body == b"ok\n"
        with pytest.raises(InvalidStatus) as info:
            connect(url(server, "/chat"))
        assert info.value.response.status == 401
        auth = {"Authorization": "Bearer token"}
        with pytest.raises(InvalidStatus) as info:
            connect(url(server, "/chat"), extra_headers=auth, origin="https://evil.example")
        assert info.value.response.status == 403
        with connect(url(server, "/chat?x=1"), extra_headers=auth) as ws:
            assert ws.recv(timeout=WAIT) == "/chat?x=1"
    assert seen[0].remote_address is not None


def test_process_request_error_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Response | None:
        raise RuntimeError("bug in the hook")

    with (
        caplog.at_level(logging.ERROR, logger="wskit"),
        running(echo, process_request=process_request) as server,
        pytest.raises(InvalidStatus) as info,
    ):
        connect(url(server))
    assert info.value.response.status == 500
    assert "opening handshake failed" in caplog.text


def test_subprotocol_negotiation() -> None:
    def handler(ws: Connection) -> None:
        ws.send(str(ws.subprotocol))

    with running(handler, subprotocols=["chat", "superchat"]) as server:
        with connect(url(server), subprotocols=["superchat", "chat"]) as ws:
            assert ws.subprotocol == "superchat" and ws.recv(timeout=WAIT) == "superchat"
        with connect(url(server), subprotocols=["other"]) as ws:
            assert ws.subprotocol is None and ws.recv(timeout=WAIT) == "None"

    def last(ws: WebSocketServerConnection, offered: Any) -> str | None:
        return offered[-1] if offered else None

    with (
        running(handler, select_subprotocol=last) as server,
        connect(url(server), subprotocols=["a", "b"]) as ws,
    ):
        assert ws.subprotocol == "b"


def test_connect_to_a_non_websocket_server_fails_clearly() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        sock, _ = listener.accept()
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        sock.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/")
        assert info.value.response.status == 200
        assert isinstance(info.value, InvalidHandshake)
    finally:
        thread.join(WAIT)
        listener.close()


def test_messages_right_behind_the_handshake_are_delivered() -> None:
    """A server that sends a message in the same write as its 101: the client's handshake
    reader leaves it in the core for the reader thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def server() -> None:
        sock, _ = listener.accept()
        core = ServerConnection()
        while core.request is None:
            core.receive_data(sock.recv(65536))
        core.send_response(core.accept(core.events()[0]))  # type: ignore[arg-type]
        core.send_text("first")
        sock.sendall(b"".join(core.data_to_send()))
        sock.recv(65536)
        sock.close()

    thread = threading.Thread(target=server)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=0.5) as ws:
            assert ws.recv(timeout=WAIT) == "first"
    finally:
        thread.join(WAIT)
        listener.close()


def test_a_server_that_answers_and_closes_at_once() -> None:
    """101, a message and a Close frame in one write, then TCP closed (as wstest's
    getCaseCount does): the handshake succeeded and the message is there for recv()."""
    listener = socket.create_server(("127.0.0.1", 0))

    def server() -> None:
        sock, _ = listener.accept()
        core = ServerConnection()
        while core.request is None:
            core.receive_data(sock.recv(65536))
        core.send_response(core.accept(core.events()[0]))  # type: ignore[arg-type]
        core.send_text("517")
        core.send_close(1000)
        sock.sendall(b"".join(core.data_to_send()))
        sock.close()

    thread = threading.Thread(target=server)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/") as ws:
            assert ws.recv(timeout=WAIT) == "517"
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=WAIT)
    finally:
        thread.join(WAIT)
        listener.close()


def test_accept_on_a_socket_whose_head_was_partly_read() -> None:
    """accept(sock, head): a socket accepted elsewhere, with the start of the request already
    read by its owner; the rest is read by accept()."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[Any] = []

    def owner() -> None:
        sock, _ = listener.accept()
        head = sock.recv(10)  # the owner read a bit of the request line
        with wskit.sync.accept(sock, head, subprotocols=["chat"], ping_interval=None) as ws:
            accepted.append(ws.request.target)
            ws.send(ws.recv(timeout=WAIT))

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with connect(f"ws://127.0.0.1:{port}/raw?x=1", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            ws.send("through accept()")
            assert ws.recv(timeout=WAIT) == "through accept()"
    finally:
        thread.join(WAIT)
        listener.close()
    assert accepted == ["/raw?x=1"]


def test_accept_refuses_a_plain_http_request() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def owner() -> None:
        sock, _ = listener.accept()
        try:
            wskit.sync.accept(sock)
        except InvalidHandshake as exc:
            errors.append(exc)

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        client = socket.create_connection(listener.getsockname(), timeout=WAIT)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_closed(client).startswith(b"HTTP/1.1 400 ")
        client.close()
    finally:
        thread.join(WAIT)
        listener.close()
    (error,) = errors
    assert isinstance(error, InvalidHandshake) and error.status == 400


def test_accept_with_close_socket_false_leaves_the_socket_to_its_owner() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    owned: list[socket.socket] = []

    def owner() -> None:
        sock, _ = listener.accept()
        owned.append(sock)
        ws = wskit.sync.accept(sock, close_socket=False, ping_interval=None)
        ws.send(ws.recv(timeout=WAIT))
        ws.close()

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/") as ws:
            ws.send("hi")
            assert ws.recv(timeout=WAIT) == "hi"
    finally:
        thread.join(WAIT)
        listener.close()
    (sock,) = owned
    assert sock.fileno() != -1  # shut down, still open: its owner closes it
    with pytest.raises(OSError):
        sock.sendall(b"x" * 100_000)
    sock.close()


# --------------------------------------------------------------------------- transports


def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ws.sock")
        server = serve(echo, unix_path=path, ping_interval=None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with connect("ws://localhost/", unix_path=path) as ws:
                ws.send("over unix")
                assert ws.recv(timeout=WAIT) == "over unix"
            assert server.port == 0
        finally:
            server.shutdown(timeout=WAIT)
            thread.join(WAIT)


def test_tls() -> None:
    import trustme  # the [test] extra: missing means failing, not skipping

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with running(echo, ssl=server_ctx) as server:
        with connect(f"wss://localhost:{server.port}/", ssl=client_ctx) as ws:
            big = os.urandom(300_000)
            ws.send(big)
            assert ws.recv(timeout=WAIT) == big
            ws.send("secure")
            assert ws.recv(timeout=WAIT) == "secure"
        with pytest.raises(ssl.SSLError):
            connect(f"wss://localhost:{server.port}/")  # untrusted certificate


def test_injected_thread_event_and_selector_classes() -> None:
    made: dict[str, int] = {"thread": 0, "event": 0, "selector": 0}

    def thread_class(**kwargs: Any) -> threading.Thread:
        made["thread"] += 1
        return threading.Thread(**kwargs)

    def event_class() -> threading.Event:
        made["event"] += 1
        return threading.Event()

    def selector_class() -> Any:
        made["selector"] += 1
        import selectors

        return selectors.SelectSelector()

    classes = {
        "thread_class": thread_class,
        "event_class": event_class,
        "selector_class": selector_class,
    }
    with running(echo, **classes) as server, connect(url(server), **classes) as ws:
        ws.send("injected")
        assert ws.recv(timeout=WAIT) == "injected"
    # Server: the connection thread and its reader (and a closing thread if shutdown finds
    # the connection still closing); client: its reader. Events and selectors for each
    # connection and for the server's accept loop.
    assert made["thread"] in (3, 4)
    assert made["event"] >= 6 and made["selector"] >= 3


def test_serve_on_a_given_socket_and_statistics() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = serve(echo, sock=listener, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", compression=None) as ws:
            before = ws.statistics()  # the handshake's bytes count too
            ws.send("x" * 10)
            ws.recv(timeout=WAIT)
            stats = ws.statistics()
            assert (stats.messages_sent, stats.messages_received) == (1, 1)
            assert stats.bytes_sent - before.bytes_sent == 2 + 4 + 10
            assert stats.bytes_received - before.bytes_received == 2 + 10
            assert stats.messages_queued == 0 and stats.write_buffer_size == 0
            assert ws.remote_address[1] == listener.getsockname()[1]
            assert ws.local_address is not None
    finally:
        server.shutdown(timeout=WAIT)
        thread.join(WAIT)
    assert ws.remote_address is None  # the socket is closed


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda ws: (403, [], b"no"), id="not-a-response"),
        pytest.param(lambda ws: ws.respond(101), id="forged-101"),
    ],
)
def test_a_bad_process_request_answer_gets_500_and_the_server_serves_on(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def process_request(ws: WebSocketServerConnection, request: Request) -> Any:
        return bad(ws) if request.path == "/bad" else None

    with (
        caplog.at_level(logging.ERROR, "wskit.server"),
        running(echo, process_request=process_request) as server,
    ):
        with pytest.raises(InvalidStatus) as info:
            connect(url(server, "/bad"))
        assert info.value.response.status == 500
        with connect(url(server)) as ws:
            ws.send("still served")
            assert ws.recv(timeout=WAIT) == "still served"
    assert any("opening handshake failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("how", ["mixed", "raises"])
def test_an_interrupted_fragmented_send_fails_the_connection_with_1011(how: str) -> None:
    # Once its first frame went out a message cannot be completed; the peer must not take a
    # part for the whole (nor wait for the rest forever), so the connection fails with 1011.
    def fragments() -> Any:
        yield "first "
        if how == "mixed":
            yield b"bytes"
        raise ValueError("the producer failed")

    def handler(ws: Connection) -> None:
        ws.recv(timeout=WAIT)
        with pytest.raises((TypeError, ValueError)):
            ws.send(fragments())
        ws.wait_closed(WAIT)

    with running(handler) as server, connect(url(server)) as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)  # no message, only the Close frame
        assert info.value.code == 1011


def test_a_bad_frame_fails_the_connection_even_if_recv_is_never_called_again() -> None:
    # A bad frame is held back behind messages recv() has not taken (so that the answers go
    # out first); a send-only handler never takes them, and the hold ends after
    # HELD_ERROR_TIMEOUT: the connection fails with 1002 (it used to stay held, the client's
    # Close ignored).
    def feed(ws: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                ws.send("tick")
                time.sleep(0.1)

    with running(feed, compression=None) as server:
        client, sock = raw_client(server.port)
        with sock:
            client.send_text("hello")
            sock.sendall(b"".join(client.data_to_send()) + b"\x83\x80\x00\x00\x00\x00")
            deadline = time.monotonic() + 5
            while client.close_rcvd is None and time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                client.receive_data(data)
    assert client.close_rcvd is not None and client.close_rcvd[0] == 1002

"""One WebSocket connection on asyncio: the core driven by a ``BufferedProtocol``.

The protocol object *is* the connection handed to applications, so a received message goes
from the read callback straight to a waiting ``recv()`` (or to a queue), and ``send`` writes
straight to the transport, awaiting only when its buffer is above the high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from wskit._state import ConnectionState
from wskit.abc import CallbackHandler, ConnectionStatistics
from wskit.asyncio._hotpath import HotPath
from wskit.core.connection import Connection as CoreConnection
from wskit.core.connection import State, encode_message
from wskit.core.events import Closed
from wskit.core.limits import LINGER_TIMEOUT
from wskit.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    LocalProtocolError,
)

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WRITE_LIMIT",
    "BroadcastResult",
    "Connection",
    "ConnectionStatistics",
    "Data",
    "broadcast",
]

#: A message: ``str`` for text, ``bytes`` for binary.
Data = str | bytes

#: Seconds between keepalive pings when nothing was received (websockets' default 20 s).
DEFAULT_PING_INTERVAL = 20.0
#: Seconds to wait for any traffic after a keepalive ping before failing with 1011.
DEFAULT_PING_TIMEOUT = 20.0
#: Seconds to wait for the closing handshake and the TCP close (websockets: 10 s).
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Messages queued before reading pauses (websockets' default ``max_queue`` is 16).
DEFAULT_MAX_QUEUE = 16
#: Transport write buffer high-water mark in bytes (websockets: 32 KiB); low is a quarter.
DEFAULT_WRITE_LIMIT = 32 * 1024
#: Size of the read buffer: one recv() of up to 256 KiB without a new allocation.
READ_BUFFER_SIZE = 256 * 1024

_thread_state = threading.local()


def read_buffer() -> memoryview:
    """The read buffer of this thread's event loop, shared by all its connections.

    The transport fills it and calls ``buffer_updated`` in one callback, and the core copies
    what it keeps, so one buffer serves every connection: an idle connection holds none.
    """
    view: memoryview | None = getattr(_thread_state, "read_buffer", None)
    if view is None:
        view = _thread_state.read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


_OK_CODES = (1000, 1001, 1005)


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What :func:`broadcast` did: messages written, connections skipped and why."""

    sent: int
    skipped_closed: int
    skipped_slow: int


class Connection(ConnectionState, HotPath, asyncio.BufferedProtocol):
    """A WebSocket connection: ``recv``/``send``/``ping``/``close`` and ``async for``.

    Created by :func:`wskit.asyncio.connect` and :func:`wskit.asyncio.serve`; not by hand.
    With a class-based handler (:class:`wskit.handlers.Handler`) messages go to its hooks
    instead of ``recv()``, and the ``*_nowait`` methods act without awaiting.

    The per-message path (reading, ``recv``, ``send``, ``send_nowait``, dispatch to the
    handler) is in the base class :class:`~wskit.asyncio._hotpath.HotPath`, compiled when
    wskit is built with Cython; this class adds the rest in Python. It stays an
    ``asyncio.BufferedProtocol``: transports check for that to call ``get_buffer``.
    """

    # Slots keep an idle connection small (CPython gives an object with this many attributes
    # a whole dict of its own); "__dict__" still lets applications attach their own. The
    # attributes of the per-message path are HotPath's.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_drain_waiters",
        "_handler_closed",
        "_handler_factory",
        "_keepalive_mark",
        "_keepalive_timer",
        "_lost",
        "_lost_waiter",
        "_opened_waiter",
        "_ping_outstanding",
        "_pings",
        "latency",
        "logger",
        "opened",
        "ping_interval",
        "ping_timeout",
        "write_limit",
    )

    def __init__(
        self,
        core: CoreConnection,
        *,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        handler: Callable[[], CallbackHandler] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(core, loop, read_buffer(), max_queue, close_timeout)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        if isinstance(write_limit, int):
            write_limit = (write_limit, write_limit // 4)
        self.write_limit = write_limit
        self.logger = logger or logging.getLogger("wskit")
        #: True once the opening handshake succeeded (it stays True after the close).
        self.opened = False
        #: The round-trip time of the last answered ping, in seconds.
        self.latency: float | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        # Futures are made only when something waits (most connections never call
        # wait_closed() before the end): True once the TCP connection is gone.
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        #: Set by connect(), which waits for the opening handshake; a server needs none.
        self._opened_waiter: asyncio.Future[None] | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._keepalive_mark = -1
        self._ping_outstanding = False
        self._handler_factory = handler
        self._handler_closed = False

    # ------------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it."""
        return self.transport.get_extra_info("peername") if self.transport else None

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname") if self.transport else None

    @property
    def writing_paused(self) -> bool:
        """True while the write buffer is above its high-water mark (a slow reader)."""
        return self._writing_paused

    def statistics(self) -> ConnectionStatistics:
        """Counters of messages and bytes both ways, queue and buffer sizes, last latency."""
        core = self.core
        transport = self.transport
        return ConnectionStatistics(
            messages_sent=core.messages_sent,
            messages_received=core.messages_received,
            bytes_sent=core.bytes_sent,
            bytes_received=core.bytes_received,
            messages_queued=len(self._messages or ()),
            write_buffer_size=transport.get_write_buffer_size() if transport else 0,
            latency=self.latency,
        )

    # ------------------------------------------------------------------ receiving

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over messages; ends quietly on a normal close, raises otherwise."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # ------------------------------------------------------------------ sending

    async def _send_fragments(self, fragments: Iterable[Data], compress: bool) -> None:
        first = True
        self._fragments_done = self.loop.create_future()  # send() waited: none in progress
        try:
            for fragment in fragments:
                self._queue_fragment(fragment, first, compress)
                first = False  # before the drain: a cancellation there fails the message
                if self._writing_paused:
                    await self._drain()
        except BaseException:
            try:
                if not first:
                    self._fail_message()
            finally:
                self._fragments_ended()
            raise
        try:
            await self._end_fragments(first)
        finally:
            self._fragments_ended()

    async def _send_fragments_async(self, fragments: AsyncIterable[Data], compress: bool) -> None:
        first = True
        self._fragments_done = self.loop.create_future()  # send() waited: none in progress
        try:
            async for fragment in fragments:
                self._queue_fragment(fragment, first, compress)
                first = False  # before the drain: a cancellation there fails the message
                if self._writing_paused:
                    await self._drain()
        except BaseException:
            try:
                if not first:
                    self._fail_message()
            finally:
                self._fragments_ended()
            raise
        try:
            await self._end_fragments(first)
        finally:
            self._fragments_ended()

    def _fragments_ended(self) -> None:
        """The fragmented message is over (sent, or failed): sends waiting for it go on."""
        done = self._fragments_done
        self._fragments_done = None
        if done is not None and not done.done():
            done.set_result(None)

    def _fail_message(self) -> None:
        """A fragmented message was interrupted after its first frame went out (the iterator
        raised, an item of the other type, a cancellation): it cannot be completed, and the
        peer must not take a part for the whole, so the connection fails with 1011."""
        if self.core.state is State.OPEN:
            self.core.fail(1011, "a fragmented message was interrupted")
            self._process()

    def _queue_fragment(self, fragment: Data, first: bool, compress: bool) -> None:
        """Queue and write one frame of a fragmented message (no wait)."""
        core = self.core
        if first:
            if isinstance(fragment, str):
                core.send_text(fragment, fin=False, compress=compress)
            elif isinstance(fragment, bytes | bytearray | memoryview):
                core.send_binary(fragment, fin=False, compress=compress)
            else:
                raise TypeError(f"cannot send a fragment of type {type(fragment).__name__}")
        else:
            core.send_continuation(fragment, fin=False)
        self._write_pending()

    async def _end_fragments(self, first: bool) -> None:
        if first:
            return  # an empty iterable sends nothing
        self.core.finish_message()
        self._write_pending()
        if self._writing_paused:
            await self._drain()

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a Ping; return a future that resolves to the round-trip time in seconds
        when the matching Pong arrives (``rtt = await (await ws.ping())``).

        ``data`` defaults to 4 random bytes. A Pong also answers every earlier ping
        (RFC 6455 5.5.3 lets a peer answer only the latest).
        """
        payload = data.encode() if isinstance(data, str) else data
        if payload is None:
            payload = secrets.token_bytes(4)
            while payload in self._pings:
                payload = secrets.token_bytes(4)
        elif payload in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same data")
        try:
            self.core.send_ping(payload)
        except LocalProtocolError:
            if self.core.state is not State.OPEN:
                raise self._closed_exception() from None
            raise
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pings[payload] = (waiter, self.loop.time())
        self._write_pending()
        return waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat)."""
        try:
            self.core.send_pong(data.encode() if isinstance(data, str) else data)
        except LocalProtocolError:
            if self.core.state is not State.OPEN:
                raise self._closed_exception() from None
            raise  # over 125 bytes (RFC 6455 5.5)
        self._write_pending()

    def ping_nowait(self, data: bytes = b"") -> None:
        """Send a Ping now; a handler sees the answer in ``on_pong``."""
        try:
            self.core.send_ping(data)
        except LocalProtocolError:
            if self.core.state is not State.OPEN:
                raise self._closed_exception() from None
            raise
        self._write_pending()

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading` (backpressure for a
        handler that cannot keep up; ``recv()`` users get it from ``max_queue``).

        Called from a hook, it also stops the hooks: messages already read but not yet
        delivered wait for :meth:`resume_reading`. Once closing (a Close frame sent), it
        does nothing: reading goes on until the peer's Close.
        """
        if (
            not self._reading_paused
            and not self.transport.is_closing()
            and self.core.close_sent is None
        ):
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again after :meth:`pause_reading`; events that arrived
        before the pause but were not delivered yet come first (from the event loop, not from
        inside this call)."""
        if self._reading_paused:
            self._resume_reading()
            if self._held_events is not None:
                self.loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        held = self._held_events
        if held is None or self._reading_paused:
            return  # delivered already, or paused again: resume_reading() schedules it
        self._held_events = None
        self._process(held)

    # ------------------------------------------------------------------ closing

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake and wait until TCP is closed (at most ``close_timeout``)."""
        self.close_nowait(code, reason)
        await self.wait_closed()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and return; :meth:`wait_closed` waits for its end."""
        if self.core.state is State.OPEN:
            self.core.send_close(code, reason)
            self._process()
            # Read on (paused by max_queue or by a handler), so that the peer's Close is
            # seen: closing never waits for the application to catch up.
            self.resume_reading()
        elif self.core.state is State.CONNECTING and self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed and the TCP connection is gone."""
        if not self._lost:
            await asyncio.shield(self._lost_future())

    def _lost_future(self) -> asyncio.Future[None]:
        """A future resolved when the TCP connection is gone (made on first use)."""
        waiter = self._lost_waiter
        if waiter is None:
            waiter = self._lost_waiter = self.loop.create_future()
            if self._lost:
                waiter.set_result(None)
        return waiter

    def _opened(self) -> None:
        """Wake connect(): the handshake ended, one way or the other."""
        waiter = self._opened_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        high, low = self.write_limit
        self.transport.set_write_buffer_limits(high, low)

    def eof_received(self) -> bool | None:
        self.core.receive_eof()
        self._process()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.core.state is not State.CLOSED:
            self.core.receive_eof()
            self._process()
        if not self.transport.is_closing():
            # Python 3.10's TLS transport wrapper stays open (and warns when collected) unless
            # closed by its protocol, even after the connection under it is gone.
            self.transport.close()
        for timer in (self._close_timer, self._keepalive_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        # A send() still waiting for the buffer to drain: its bytes went with the transport.
        self._lost = True
        self._wake_drain_waiters(lost=True)
        held = self._held_events
        if held is not None:
            # A handler paused reading and the connection went away meanwhile: what it
            # did not get yet, the Closed event last, is delivered now (on_close runs).
            self._held_events = None
            self._reading_paused = False
            self._process(held)
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        self._opened()

    def pause_writing(self) -> None:
        self._writing_paused = True
        handler = self.handler
        if handler is not None:
            try:
                handler.on_pause_writing()
            except Exception:
                self._handler_failed()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._write_pending()  # what the core kept while paused (pongs)
        self._wake_drain_waiters(lost=False)
        handler = self.handler
        if handler is not None and self.core.state is State.OPEN:
            try:
                handler.on_resume_writing()
            except Exception:
                self._handler_failed()

    # ------------------------------------------------------------------ internals

    def _receive_pong(self, payload: bytes) -> None:
        entry = self._pings.get(payload)
        if entry is None:
            return
        now = self.loop.time()
        # A Pong answers its ping and every ping sent before it.
        for key in list(self._pings):
            waiter, sent_at = self._pings.pop(key)
            if not waiter.done():
                waiter.set_result(now - sent_at)
            if key == payload:
                self.latency = now - sent_at
                break

    def _on_closed(self, event: Closed) -> None:
        self._closed_event = event
        handler = self.handler
        if handler is not None and not self._handler_closed:
            self._handler_closed = True
            try:
                handler.on_close(event.code, event.reason)
            except Exception:
                self.logger.exception("handler's on_close() failed")
        if event.cause is not None and not isinstance(event.cause, ConnectionClosed):
            self.logger.debug("connection failed: %s", event.cause)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_exception())
            self._recv_waiter = None
        exc = self._closed_exception()
        for waiter_, _ in self._pings.values():
            if not waiter_.done():
                waiter_.set_exception(exc)
        self._pings.clear()
        if self._reading_paused and not self.transport.is_closing():
            self._resume_reading()  # drain the socket so the peer's close is seen
        self._opened()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None

    def _on_open(self) -> None:
        """The opening handshake succeeded: start keepalive, run ``on_open``, wake the opener."""
        self.opened = True
        self._keepalive_mark = self.core.bytes_received
        if self.ping_interval:
            self._keepalive_timer = self.loop.call_later(self.ping_interval, self._keepalive)
        if self._handler_factory is not None:
            try:
                handler = self.handler = self._handler_factory()
                handler.connection = self
                handler.on_open()
            except Exception:
                self._handler_failed()
        self._opened()

    def _handler_failed(self) -> None:
        """A hook raised: log it and close with 1011, as a failing coroutine handler does.

        ``ConnectionClosed`` from sending on this connection once it is closing is how a hook
        learns that the peer left: not an error.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionClosed) and self.core.state is not State.OPEN:
            self.logger.debug("connection handler: %s", exc)
            return
        self.logger.exception("connection handler failed")
        self.close_nowait(1011, "")

    def _keepalive(self) -> None:
        """Every ``ping_interval``: ping if nothing arrived since the last tick; fail with
        1011 if nothing at all arrived within ``ping_timeout`` of a ping.

        Any received byte counts as a sign of life, not only the matching Pong, and the hot
        path pays nothing for it: the tick compares the core's byte counter.
        """
        self._keepalive_timer = None
        if self.core.state is not State.OPEN or not self.ping_interval:
            return
        received = self.core.bytes_received
        delay = self.ping_interval
        if self._ping_outstanding:
            self._ping_outstanding = False
            if received == self._keepalive_mark:
                self.logger.info("keepalive ping timeout; closing the connection")
                self.core.fail(1011, "keepalive ping timeout")
                self._process()
                return
        elif received == self._keepalive_mark:
            try:
                self.core.send_ping(secrets.token_bytes(4))
            except LocalProtocolError:
                return
            self._write_pending()
            if self.ping_timeout is not None:
                self._ping_outstanding = True
                delay = self.ping_timeout
        self._keepalive_mark = received
        self._keepalive_timer = self.loop.call_later(delay, self._keepalive)

    def _release_held_error(self) -> None:
        """A bad frame was held back behind messages that recv() did not take within
        HELD_ERROR_TIMEOUT: fail on it now (the Close frame goes out, the messages stay)."""
        self._hold_timer = None
        core = self.core
        if core.hold_errors and core.input_held and not self._lost:
            core.release_held()
            self._process()

    def _close_transport(self) -> None:
        """Close TCP once what is queued is written.

        A server that refused the opening handshake half-closes instead and lets the client
        close (at most ``LINGER_TIMEOUT`` later): closing with the rest of an oversized request
        unread would reset the connection and could destroy the refusal before it is read.
        """
        transport = self.transport
        core = self.core
        response = None if core.is_client else getattr(core, "response", None)
        if response is None or response.status == 101 or not transport.can_write_eof():
            self._close_bounded()
        elif self._close_timer is None:
            transport.write_eof()
            self._close_timer = self.loop.call_later(LINGER_TIMEOUT, self._linger_over)

    def _linger_over(self) -> None:
        self._close_timer = None
        self._close_bounded()

    def _close_bounded(self) -> None:
        """``transport.close()``, which waits until the write buffer drains: a peer that
        stopped reading would keep the connection for good, so drop it after
        ``close_timeout`` (unless the closing handshake's timer already bounds it)."""
        self.transport.close()
        if self._close_timer is None and self.close_timeout and not self._lost:
            self._close_timer = self.loop.call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        """The peer did not finish the closing handshake in time: drop TCP."""
        self._close_timer = None
        if self.transport is not None and not self._lost:
            self.transport.abort()

    async def _drain(self) -> None:
        if self.transport.is_closing():
            # The transport is going away: wait for it so that send() reports the closure.
            await asyncio.shield(self._lost_future())
            raise self._closed_exception()
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drain_waiters(self, *, lost: bool) -> None:
        """The buffer drained (the waiting sends return), or the connection is ``lost``
        with it (they raise ConnectionClosed: what they wrote was not all sent)."""
        waiters = self._drain_waiters
        self._drain_waiters = []
        for waiter in waiters:
            if waiter.done():
                continue
            if lost:
                waiter.set_exception(self._closed_exception())
            else:
                waiter.set_result(None)


def broadcast(connections: Iterable[Connection], message: Data) -> BroadcastResult:
    """Send ``message`` to every open connection now, encoding its frame once.

    Server connections all get the same bytes: one unmasked, uncompressed frame (on a
    connection with permessage-deflate the message simply goes uncompressed, which RFC 7692
    allows per message). A client connection masks its own frame. Nothing is awaited: a
    connection whose write buffer is above its high-water mark (a slow reader), or that is in
    the middle of sending a fragmented message, is skipped and counted in ``skipped_slow``;
    one that is not open is counted in ``skipped_closed``.
    """
    frame: bytes | None = None
    sent = closed = slow = 0
    for connection in connections:
        core = connection.core
        if core.state is not State.OPEN:
            closed += 1
            continue
        if connection._writing_paused or core._tx_opcode:
            slow += 1
            continue
        if core.is_client:
            if isinstance(message, str):
                core.send_text(message)
            else:
                core.send_binary(message)
        else:
            if frame is None:
                frame = encode_message(message)
            core.send_encoded(frame)
        connection._write_pending()
        sent += 1
    if slow:
        logging.getLogger("wskit").debug("broadcast skipped %d slow connection(s)", slow)
    return BroadcastResult(sent, closed, slow)

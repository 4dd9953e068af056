"""One WebSocket connection on a Trio stream.

One background task per connection (:meth:`Connection._run`, started with ``nursery.start``
in a nursery the caller controls) reads the stream, feeds the core, answers pings, queues
messages for :meth:`Connection.recv` and runs the keepalive and close timers; the
application's tasks call ``recv``/``send``/``ping``/``aclose``.

Writes go through one :class:`trio.StrictFIFOLock`. Whoever holds it writes everything the
core queued, its own frames and those others queued meanwhile, before letting go; the
background task writes its pongs and Close echo only when the lock is free (otherwise the
holder writes them), so it never waits behind a slow ``send`` and keeps reading.

Incoming messages wait in a deque; at ``max_queue`` of them the background task stops reading
until ``recv`` catches up: TCP pushes back on the peer, while pings and the Close frame that
were already read are still answered (a bounded memory channel would block the reader in the
middle of a read: trio-websocket's issue #82).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import trio

from wskit._state import ConnectionState
from wskit.abc import ConnectionStatistics, Data
from wskit.core.connection import Connection as CoreConnection
from wskit.core.connection import State
from wskit.core.events import Binary, Closed, Event, Ping, Pong, Text
from wskit.core.limits import HELD_ERROR_TIMEOUT
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
    "READ_SIZE",
    "Connection",
]

#: Seconds between keepalive pings when nothing was received (websockets' default 20 s).
DEFAULT_PING_INTERVAL = 20.0
#: Seconds to wait for any data after a keepalive ping before failing with 1011.
DEFAULT_PING_TIMEOUT = 20.0
#: Seconds for the closing handshake before TCP is dropped (RFC 6455 7.1.1 leaves it open).
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Messages queued before the background task stops reading (websockets' default is 16).
DEFAULT_MAX_QUEUE = 16
#: Bytes asked of each ``receive_some()`` (websockets' trio implementation: 64 KiB).
READ_SIZE = 64 * 1024

_OPEN = State.OPEN


class _PingWaiter:
    """A ping waiting for its pong: the round-trip time, or the connection's end."""

    __slots__ = ("done", "outcome", "sent_at")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.done = trio.Event()
        self.outcome: float | BaseException | None = None

    def settle(self, outcome: float | BaseException) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


def _raw_socket(stream: trio.abc.Stream) -> Any:
    """The trio socket under ``stream`` (through TLS), or None."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return getattr(stream, "socket", None)


class Connection(ConnectionState, trio.abc.AsyncResource):
    """A WebSocket connection on a Trio stream: ``recv``/``send``/``ping``/``aclose``.

    Made by :func:`wskit.trio.connect` and :func:`wskit.trio.serve`, not by hand. Any task
    may call its methods; ``send`` from several tasks at once is safe (messages never
    interleave), while two tasks in ``recv`` at once raise
    :class:`~wskit.exceptions.ConcurrencyError`. ``async with`` it to close it on the way
    out, and ``async for`` over it for the messages until a normal close.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        core: CoreConnection,
        *,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        read_size: int = READ_SIZE,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.stream = stream
        self.core = core
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.read_size = read_size
        self.logger = logger or logging.getLogger("wskit")
        #: True once the opening handshake succeeded (it stays True after the close).
        self.opened = False
        #: The round-trip time of the last answered ping, in seconds.
        self.latency: float | None = None
        self._write_lock = trio.StrictFIFOLock()
        self._message_lock = trio.StrictFIFOLock()  # the frames of one message stay together
        self._fragments_text = False  # the kind of the fragmented message being sent
        self._fragmenting = False  # a fragmented message was started and not finished
        self._messages: deque[Data] = deque()
        self._message_ready = trio.Event()
        self._space = trio.Event()  # set: the background task may read
        self._space.set()
        self._receiving = False
        self._shut_write = False
        self._backlog: list[bytes] = []  # taken from the core by the write lock's holder
        self._closed_event: Closed | None = None
        self._pings: dict[bytes, _PingWaiter] = {}
        self._close_deadline = math.inf
        self._keepalive_deadline = math.inf
        self._hold_deadline = math.inf
        self._keepalive_mark = -1
        self._ping_outstanding = False
        self._timer_scope: trio.CancelScope | None = None
        self._run_scope: trio.CancelScope | None = None
        self._done = trio.Event()  # set: the background task ended, the stream is closed
        self._stream_closed = False  # the stream is closed
        self._dropped = False  # the stream is closed or being closed: nothing more is written

    # ------------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        """The peer's address (``getpeername()``), or None once the stream is closed."""
        sock = _raw_socket(self.stream)
        try:
            return None if sock is None else sock.getpeername()
        except OSError:
            return None

    @property
    def local_address(self) -> Any:
        """This side's address (``getsockname()``), or None once the stream is closed."""
        sock = _raw_socket(self.stream)
        try:
            return None if sock is None else sock.getsockname()
        except OSError:
            return None

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection: messages and bytes each way, queue, latency."""
        core = self.core
        return ConnectionStatistics(
            messages_sent=core.messages_sent,
            messages_received=core.messages_received,
            bytes_sent=core.bytes_sent,
            bytes_received=core.bytes_received,
            messages_queued=len(self._messages),
            write_buffer_size=0,  # send() returns once the kernel has the bytes
            latency=self.latency,
        )

    # ------------------------------------------------------------------ receiving

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Cancelling it loses nothing: a message arriving later waits for the next call (use
        ``trio.move_on_after`` for a timeout). Raises
        :class:`~wskit.exceptions.ConnectionClosedOK` after a normal close and
        :class:`~wskit.exceptions.ConnectionClosedError` otherwise, once every message
        received before the close was returned; :class:`~wskit.exceptions.ConcurrencyError`
        if another task is already in ``recv``.
        """
        if self._receiving:
            raise ConcurrencyError("another task is already waiting in recv()")
        self._receiving = True
        try:
            while True:
                if not self._messages and self.core.hold_errors:
                    self._release_held_error()
                    # Its Close frame goes out before recv() raises. Nothing was taken off
                    # the queue yet: a cancellation here loses no message.
                    await self._flush_if_free()
                message = self._take()
                if message is not None:
                    return message
                if self._closed_event is not None:
                    raise self._closed_exception()
                if self._message_ready.is_set():
                    self._message_ready = trio.Event()
                await self._message_ready.wait()
        finally:
            self._receiving = False

    def _take(self) -> Data | None:
        """A queued message, or None."""
        messages = self._messages
        if not messages:
            return None
        message = messages.popleft()
        if not self._space.is_set() and len(messages) <= (self.max_queue or 0) // 2:
            self._space.set()
        return message

    def _release_held_error(self) -> None:
        """Every message was handed out: a bad frame held back behind them fails the
        connection now, after the application's answers to them went out."""
        self._hold_deadline = math.inf
        if self.core.release_held():
            self._process()

    async def __aiter__(self) -> AsyncIterator[Data]:
        """The messages until the connection closes: normally (the loop ends) or not
        (:class:`~wskit.exceptions.ConnectionClosedError` is raised)."""
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # ------------------------------------------------------------------ sending

    async def send(
        self, message: Data | Iterable[Data] | AsyncIterable[Data], *, compress: bool = True
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; an iterable (or async
        iterable) of ``str`` or of bytes as one fragmented message, a frame per item.

        Returns once the bytes are handed to the operating system: a peer that stops reading
        slows the sender down instead of growing a buffer. ``compress=False`` sends this
        message uncompressed when permessage-deflate was negotiated. Raises
        :class:`~wskit.exceptions.ConnectionClosed` once the connection is closing.

        Cancelled before its bytes went out, nothing was sent and the connection is intact;
        cancelled in the middle of writing them, the peer got part of a frame, so the
        connection is dropped (the peer sees 1006) and later calls raise
        :class:`~wskit.exceptions.ConnectionClosedError`.
        """
        core = self.core
        if isinstance(message, str):
            async with self._message_lock:
                await self._write(core.send_text, message, True, compress)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            async with self._message_lock:
                await self._write(core.send_binary, message, True, compress)
        elif isinstance(message, (Iterable, AsyncIterable)):
            async with self._message_lock:
                await self._send_fragments(message, compress)  # type: ignore[arg-type]
        else:
            raise TypeError(f"cannot send {type(message).__name__}")

    async def _send_fragments(
        self, fragments: Iterable[Data] | AsyncIterable[Data], compress: bool
    ) -> None:
        """Send the items of ``fragments`` as one fragmented message (message lock held).

        Interrupted once its first frame went out, the message cannot be completed: an
        error (the iterator raised, an item of the wrong type) fails the connection with
        1011; a cancellation drops it (the peer sees 1006).
        """
        try:
            if isinstance(fragments, AsyncIterable):
                async for fragment in fragments:
                    await self._send_fragment(fragment, compress)
            else:
                for fragment in fragments:
                    await self._send_fragment(fragment, compress)
            if self._fragmenting:
                await self._write(self._finish_fragments)
        except BaseException as exc:
            if self._fragmenting:
                self._fragmenting = False
                if self.core.state is not _OPEN:
                    pass  # closing already: the close handshake ends it
                elif isinstance(exc, Exception):
                    self.core.fail(1011, "a fragmented message was interrupted")
                    self._process()
                    await self._flush_if_free()
                else:
                    self._abort()
            raise

    async def _send_fragment(self, fragment: Data, compress: bool) -> None:
        """Send one frame of a fragmented message."""
        core = self.core
        if not self._fragmenting:
            if isinstance(fragment, str):
                self._fragments_text = True
                await self._write(self._start_fragments, core.send_text, fragment, compress)
            elif isinstance(fragment, (bytes, bytearray, memoryview)):
                self._fragments_text = False
                await self._write(self._start_fragments, core.send_binary, fragment, compress)
            else:
                raise TypeError(f"cannot send {type(fragment).__name__}")
        elif isinstance(fragment, str) != self._fragments_text:
            raise TypeError("a fragmented message mixes str and bytes")
        else:
            await self._write(core.send_continuation, fragment, False)

    def _start_fragments(self, send: Callable[..., None], data: Data, compress: bool) -> None:
        send(data, False, compress)
        self._fragmenting = True  # set with the core's state, under the write lock

    def _finish_fragments(self) -> None:
        self.core.finish_message()
        self._fragmenting = False

    async def ping(self, data: str | bytes | None = None) -> float:
        """Send a Ping and wait for the matching Pong; return the round-trip time in seconds.

        ``data`` defaults to 4 random bytes. A Pong also answers every earlier ping
        (RFC 6455 5.5.3 lets a peer answer only the latest). Raises
        :class:`~wskit.exceptions.ConnectionClosed` if the connection closes first and
        :class:`~wskit.exceptions.ConcurrencyError` if a ping with the same data waits.
        """
        payload = data.encode() if isinstance(data, str) else data
        if payload is None:
            payload = secrets.token_bytes(4)
            while payload in self._pings:
                payload = secrets.token_bytes(4)
        elif payload in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same data")
        waiter = _PingWaiter(trio.current_time())
        # Registered before the Ping goes out, so that no Pong can arrive unseen.
        self._pings[payload] = waiter
        try:
            await self._write(self.core.send_ping, payload)
            await waiter.done.wait()
        finally:
            if self._pings.get(payload) is waiter:
                del self._pings[payload]
        outcome = waiter.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat)."""
        await self._write(self.core.send_pong, data.encode() if isinstance(data, str) else data)

    async def _write(self, method: Callable[..., None], *args: Any) -> None:
        """Call a sending method of the core, then write what it queued: under the write
        lock, so that frames go out whole and in order."""
        async with self._write_lock:
            if self._dropped:
                raise self._closed_exception()
            try:
                method(*args)
            except LocalProtocolError:
                if self.core.state is not _OPEN:
                    raise self._closed_exception() from None
                raise
            await self._drain()

    async def _flush_if_free(self) -> None:
        """Write what the core queued, unless another task is writing: that one writes it,
        from the core, before it lets go of the lock (so what waits stays bounded by the
        core's own limits, e.g. on pongs). Returns at once when nothing is queued."""
        lock = self._write_lock
        if lock.locked() or self._dropped:
            return
        core = self.core
        data = core.data_to_send()
        if not data and not (core.should_close() and not self._shut_write):
            return
        lock.acquire_nowait()  # free: taken without a checkpoint, so the data cannot be lost
        try:
            self._backlog = data
            with contextlib.suppress(ConnectionClosed):
                await self._drain()
        finally:
            lock.release()

    async def _drain(self) -> None:
        """Write everything queued (write lock held); half-close when the core says so."""
        core = self.core
        stream = self.stream
        while True:
            data = self._backlog
            data.extend(core.data_to_send())
            if not data:
                break
            self._backlog = []
            chunk = b"".join(data) if len(data) > 1 else data[0]
            try:
                await stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.logger.debug("write failed: %r", exc)
                self._abort()
                raise self._closed_exception() from exc
            except BaseException:
                # Cancelled (or interrupted) with part of a frame out, perhaps: the stream
                # cannot carry another frame. Drop the connection; the peer sees 1006.
                self._abort()
                raise
        if core.should_close() and not self._shut_write:
            self._shut_write = True
            if isinstance(stream, trio.abc.HalfCloseableStream):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_eof()
            else:  # TLS: no half-close; the background task sees the end
                self._abort()

    # ------------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake and wait until TCP is closed (at most
        ``close_timeout``, after which the connection is dropped). Cancelled, it drops the
        connection at once."""
        core = self.core
        if core.state is _OPEN:
            core.send_close(code, reason)  # a bad code or reason raises here, harmlessly
            self._process()
        try:
            self._space.set()  # a reader paused by max_queue must see the answer
            with trio.move_on_after(_timeout(self.close_timeout)):
                if not self._dropped:
                    async with self._write_lock:
                        with contextlib.suppress(ConnectionClosed):
                            await self._drain()
                if self._run_scope is None:
                    self._abort()
                await self._done.wait()
        finally:
            if not self._done.is_set():
                self._abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed and its stream too."""
        if self._run_scope is None:
            self._abort()
        await self._done.wait()

    def _abort(self) -> None:
        """Drop TCP now: close the socket (a task blocked on it wakes up at once) and stop
        the background task, which closes any other kind of stream. Never waits, so it runs
        in a cancelled task too."""
        if not self._dropped:
            self._dropped = True
            sock = _raw_socket(self.stream)
            if sock is not None:
                sock.close()  # wakes a task blocked on it at once
                self._stream_closed = True
            # Any other stream is closed by the background task, which this cancels: its
            # aclose_forcefully() wakes a send blocked on the stream.
        if self.core.state is not State.CLOSED:
            self.core.receive_eof()
            self._process()
        if self._run_scope is not None:
            self._run_scope.cancel()
        else:
            self._done.set()

    # ------------------------------------------------------------------ the background task

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read, answer and time the connection until it ends; then close the stream.

        Start it with ``await nursery.start(connection._run)`` once the opening handshake
        succeeded. Only ``Cancelled`` leaves it: errors end the connection (1006) and are
        logged.
        """
        self.opened = True
        self._keepalive_mark = self.core.bytes_received
        if self.ping_interval:
            self._keepalive_deadline = trio.current_time() + self.ping_interval
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._timers, nursery)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        except Exception:  # pragma: no cover - a bug: do not die silently
            self.logger.exception("connection task failed")
        finally:
            if self.core.state is not State.CLOSED:
                self.core.receive_eof()
                self._process()
            self._fail_waiters()
            self._dropped = True
            if not self._stream_closed:
                self._stream_closed = True
                await trio.aclose_forcefully(self.stream)
            self._done.set()

    async def _read_loop(self) -> None:
        self._process()  # frames that came in with the handshake
        await self._flush_if_free()
        stream = self.stream
        core = self.core
        while True:
            if not self._space.is_set():
                # Backpressure: max_queue messages wait for recv(); read again once it
                # catches up (TCP pushes back on the peer meanwhile).
                await self._space.wait()
            try:
                data = await stream.receive_some(self.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.logger.debug("read failed: %r", exc)
                data = b""
            if data:
                core.receive_data(data)
            else:
                core.receive_eof()
            self._process()
            await self._flush_if_free()  # pongs, the Close echo
            if not data:
                return

    async def _timers(self, nursery: trio.Nursery) -> None:
        """Fire the keepalive and close timers when due (the close timer drops TCP).

        This task never writes itself: a write can block on a peer that reads nothing, and
        the close timer must still fire then. A keepalive ping goes out from a task of its
        own (or with the frames of the task writing at the time).
        """
        while True:
            with trio.CancelScope(deadline=self._next_deadline()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = trio.current_time()
            if now >= self._close_deadline:
                self.logger.debug("closing handshake timed out; dropping the connection")
                self._abort()
                return
            if now >= self._hold_deadline:
                self._hold_deadline = math.inf
                if self.core.hold_errors:
                    self._release_held_error()
                    nursery.start_soon(self._flush_if_free)
            if now >= self._keepalive_deadline:
                self._keepalive(now)
                nursery.start_soon(self._flush_if_free)

    def _next_deadline(self) -> float:
        return min(self._close_deadline, self._keepalive_deadline, self._hold_deadline)

    def _rearm(self) -> None:
        scope = self._timer_scope
        if scope is not None:
            scope.deadline = self._next_deadline()

    def _keepalive(self, now: float) -> None:
        """Every ``ping_interval``: ping if nothing arrived since the last tick; fail with
        1011 if nothing at all arrived within ``ping_timeout`` of a ping."""
        self._keepalive_deadline = math.inf
        core = self.core
        if core.state is not _OPEN or not self.ping_interval:
            return
        received = core.bytes_received
        delay = self.ping_interval
        if self._ping_outstanding:
            self._ping_outstanding = False
            if received == self._keepalive_mark:
                self.logger.info("keepalive ping timeout; closing the connection")
                core.fail(1011, "keepalive ping timeout")
                self._process()
                return
        elif received == self._keepalive_mark:
            core.send_ping(secrets.token_bytes(4))
            if self.ping_timeout is not None:
                self._ping_outstanding = True
                delay = self.ping_timeout
        self._keepalive_mark = received
        self._keepalive_deadline = now + delay

    def _process(self) -> None:
        """Dispatch the core's events; arm the close timer once the closing handshake began
        (the bytes the core queued are written by whoever writes next)."""
        core = self.core
        for event in core.events():
            self._dispatch(event)
        if core.input_held and core.hold_errors and self._hold_deadline == math.inf:
            self._hold_deadline = trio.current_time() + HELD_ERROR_TIMEOUT
            self._rearm()
        if (
            core.close_expected()
            and self._close_deadline == math.inf
            and self.close_timeout is not None
        ):
            self._close_deadline = trio.current_time() + self.close_timeout
            self._rearm()

    def _dispatch(self, event: Event) -> None:
        kind = type(event)
        if kind is Text or kind is Binary:
            # Until the application asks for the next message, a bad frame behind this one
            # is held back, so its answer to this message goes out before the Close frame.
            messages = self._messages
            max_queue = self.max_queue
            if (
                self.core.state is not _OPEN
                and max_queue is not None
                and len(messages) >= max_queue
            ):
                # aclose() resumed reading to see the peer's Close: what the peer sends before
                # it is dropped beyond max_queue, so the wait for it cannot fill memory.
                return
            self.core.hold_errors = True
            messages.append(event.data)  # type: ignore[union-attr]
            self._message_ready.set()
            if (
                max_queue is not None
                and len(messages) >= max_queue
                and self.core.state is _OPEN
                and self._space.is_set()
            ):
                self._space = trio.Event()
        elif kind is Pong:
            self._receive_pong(event.payload)  # type: ignore[union-attr]
        elif kind is Closed:
            self._on_closed(event)  # type: ignore[arg-type]
        elif kind is Ping:
            pass  # the core answered it

    def _receive_pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        now = trio.current_time()
        # A Pong answers its ping and every ping sent before it.
        for key in list(self._pings):
            waiter = self._pings.pop(key)
            waiter.settle(now - waiter.sent_at)
            if key == payload:
                self.latency = now - waiter.sent_at
                break

    def _on_closed(self, event: Closed) -> None:
        self._closed_event = event
        if event.cause is not None and not isinstance(event.cause, ConnectionClosed):
            self.logger.debug("connection failed: %s", event.cause)
        self._keepalive_deadline = math.inf
        self._space.set()  # read on, so the peer's Close and the TCP close are seen
        self._rearm()
        self._fail_waiters()

    def _fail_waiters(self) -> None:
        """Wake recv() and fail the pings: the connection is closed."""
        self._message_ready.set()
        if self._pings:
            exc = self._closed_exception()
            for waiter in self._pings.values():
                waiter.settle(exc)
            self._pings.clear()


def _timeout(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds

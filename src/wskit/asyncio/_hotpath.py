"""The per-message path of the asyncio connection, compiled by Cython when built.

:class:`HotPath` is the base of :class:`wskit.asyncio.connection.Connection`: it holds what
every message touches (the core, the transport, the handler, the queue, the recv() waiter and
the flow-control flags) and the code each message runs through, from the transport's
``buffer_updated`` to a handler's hook or a waiting ``recv()``, and from ``send`` or
``send_nowait`` to ``transport.write``. Everything else (opening, closing, keepalive, pings,
flow-control callbacks) is plain Python in the subclass.

Like the core, this ``.py`` is the only source: the ``.pxd`` beside it makes ``HotPath`` an
extension type whose calls into the core are C calls, and without Cython (or with
``WSKIT_NO_EXTENSIONS=1``) it runs as it is. The subclass supplies the slow paths this code
calls (the methods at the end raise ``NotImplementedError`` here).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Iterable

from wskit.abc import CallbackHandler, Data
from wskit.core.connection import Connection as CoreConnection
from wskit.core.connection import State
from wskit.core.events import Binary, Closed, Event, Ping, Pong, Request, Response, Text
from wskit.core.limits import HELD_ERROR_TIMEOUT
from wskit.exceptions import ConcurrencyError, ConnectionClosed, LocalProtocolError

__all__ = ["COALESCE_LIMIT", "HotPath"]

#: Buffers queued together (a header and its payload, a batch of answers) are joined into one
#: write up to this many bytes in all: copying that much costs about what a system call does,
#: and the header does not go out as a TCP segment of its own. A 64 KiB message and its header
#: are one write (measured: 64 KiB echo, server CPU per message 12.4 -> 12.0 us). Larger ones
#: are written one buffer at a time, without a copy.
COALESCE_LIMIT = 128 * 1024


class HotPath:
    """What each message of an asyncio connection runs through (see the module docstring).

    Not used alone: :class:`~wskit.asyncio.connection.Connection` derives from it and from
    ``asyncio.BufferedProtocol``. ``_dispatch``, ``_deliver`` and ``_write_out`` are C
    functions once compiled: only this class calls them (subclasses call ``_process`` and
    ``_write_pending``), and overriding them in Python would change nothing compiled.
    """

    __slots__ = (
        "_batching",
        "_close_timer",
        "_closed_event",
        "_deferred_size",
        "_dispatching",
        "_flush_scheduled",
        "_fragments_done",
        "_held_events",
        "_hold_timer",
        "_messages",
        "_read_view",
        "_reading_paused",
        "_recv_waiter",
        "_writing_paused",
        "close_timeout",
        "core",
        "handler",
        "loop",
        "max_queue",
        "transport",
    )

    def __init__(
        self,
        core: CoreConnection,
        loop: asyncio.AbstractEventLoop,
        read_view: memoryview,
        max_queue: int | None,
        close_timeout: float | None,
    ) -> None:
        self.core = core
        self.loop = loop
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        #: The class-based handler whose hooks receive this connection's events, or None
        #: when the application uses ``recv()``.
        self.handler: CallbackHandler | None = None
        self._read_view = read_view
        # Messages received while nobody waits in recv(); created on first use, since a deque
        # costs several hundred bytes and most connections hand messages straight over.
        self._messages: deque[Data] | None = None
        self._recv_waiter: asyncio.Future[Data] | None = None
        self._reading_paused = False
        self._writing_paused = False
        # True while a handler's hooks run for the events of one read: what they send is
        # written once, after the last hook (one write for a batch of pipelined messages).
        self._batching = False
        # True while _dispatch runs: a dispatch nested in a hook (one that closes, say)
        # leaves the release of a held bad frame to the outer one, which has events left.
        self._dispatching = False
        # True while a flush of what send() queued is scheduled (see send()).
        self._flush_scheduled = False
        self._deferred_size = 0  # about how much send() left in the core for _flush()
        # Set while a fragmented message is being sent: other sends wait for its end.
        self._fragments_done: asyncio.Future[None] | None = None
        # Events read but not delivered because a handler paused reading.
        self._held_events: list[Event] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._closed_event: Closed | None = None

    # ------------------------------------------------------------------ receiving

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.core.receive_data(self._read_view[:nbytes])
        self._dispatch(None)

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~wskit.exceptions.ConnectionClosedOK` after a normal close and
        :class:`~wskit.exceptions.ConnectionClosedError` otherwise (its ``__cause__`` says
        why), once every message received before the close has been returned.
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._reading_paused and len(messages) <= (self.max_queue or 0) // 2:
                self._resume_reading()
            return message
        core = self.core
        if core.hold_errors and core.release_held():
            # The application handled every message it was given and asks for more: a bad
            # frame held back behind them fails the connection now, after its answers.
            self._dispatch(None)
        if self._closed_event is not None:
            raise self._closed_exception()
        if self._recv_waiter is not None:
            raise ConcurrencyError("another coroutine is already waiting in recv()")
        if self.handler is not None:
            raise ConcurrencyError("messages go to the handler's on_message(), not to recv()")
        waiter: asyncio.Future[Data] = self.loop.create_future()
        self._recv_waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after a message was handed over but before this task resumed: put it
            # back, so a timeout around recv() never loses a message.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._queue().appendleft(waiter.result())
            raise
        finally:
            self._recv_waiter = None

    def _process(self, pending: list[Event] | None = None) -> None:
        """Write what the core queued (pongs included), dispatch its events (after
        ``pending`` ones), honour its close requests."""
        self._dispatch(pending)

    def _write_pending(self) -> None:
        """Write what the core queued to the transport (nothing once it is closing)."""
        self._write_out()

    # Compiled, a Python method called from C would be looked up on every call (a Python
    # subclass could override it); the two above are for Python callers, and this class
    # calls what they wrap, C functions, directly.

    def _dispatch(self, pending: list[Event] | None) -> None:
        core = self.core
        # Above the write buffer's high-water mark, what the core answers by itself (pongs)
        # stays in the core, where MAX_PENDING_PONGS bounds it, until resume_writing(): a
        # peer that pings without reading cannot grow the transport's buffer. Once closing,
        # everything goes out (the Close frame must).
        writing = not self._writing_paused or core.state is not State.OPEN
        if writing:
            self._write_out()
        events = core.events()
        if pending:
            events = pending + events
        if self._held_events is not None:
            # A handler paused reading with events undelivered: new ones wait behind them.
            self._held_events.extend(events)
            events = []
        handler = self.handler
        batching = self._batching
        self._batching = handler is not None
        nested = self._dispatching
        self._dispatching = True
        try:
            self._dispatch_events(events, handler)
        finally:
            self._batching = batching
            self._dispatching = nested
        if not batching and (writing or core.state is not State.OPEN):
            self._write_out()
        if (
            self.handler is not None
            and not nested
            and core.input_held
            and not core.hold_errors
            and self._held_events is None
        ):
            # The handler answered every message before a bad frame: fail on it now, so the
            # answers went out before the Close frame (as recv() users get it). Not from a
            # dispatch nested in a hook (one that closes): the outer one has messages left.
            core.release_held()
            self._dispatch(None)
            return
        if core.input_held and core.hold_errors and self._hold_timer is None:
            # recv() may never come back for the messages before the bad frame (a send-only
            # application): the hold ends after HELD_ERROR_TIMEOUT all the same.
            self._hold_timer = self.loop.call_later(HELD_ERROR_TIMEOUT, self._release_held_error)
        if core.should_close():
            if not self.transport.is_closing():
                self._close_transport()
        elif core.close_expected() and self._close_timer is None and self.close_timeout:
            self._close_timer = self.loop.call_later(self.close_timeout, self._abort)

    def _dispatch_events(self, events: list[Event], handler: CallbackHandler | None) -> None:
        count = len(events)
        index = 0
        while index < count:
            if handler is not None and self._reading_paused:
                # The handler asked for no more (from on_open, or a writing hook that ran
                # in between): keep the rest until resume_reading().
                self._hold(events[index:])
                break
            event = events[index]
            index += 1
            kind = type(event)
            if kind is Binary or kind is Text:
                if handler is None:
                    self._deliver(event.data)  # type: ignore[union-attr]
                else:
                    try:
                        handler.on_message(event.data)  # type: ignore[union-attr]
                    except Exception:
                        self._handler_failed()
            elif kind is Pong:
                self._receive_pong(event.payload)  # type: ignore[union-attr]
                if handler is not None:
                    try:
                        handler.on_pong(event.payload)  # type: ignore[union-attr]
                    except Exception:
                        self._handler_failed()
            elif kind is Ping:
                if handler is not None:
                    try:
                        handler.on_ping(event.payload)  # type: ignore[union-attr]
                    except Exception:
                        self._handler_failed()
            elif kind is Closed:
                self._on_closed(event)  # type: ignore[arg-type]
            elif kind is Request:
                self._on_request(event)  # type: ignore[arg-type]
                handler = self.handler  # a class-based handler exists from on_open on
                self._batching = handler is not None
            elif kind is Response:
                self._on_open()
                handler = self.handler
                self._batching = handler is not None
            if handler is not None and self._reading_paused:
                # The handler asked for no more: keep the rest until resume_reading().
                self._hold(events[index:])
                break

    def _hold(self, rest: list[Event]) -> None:
        """Keep ``rest`` for resume_reading(), before what a dispatch nested in a hook held
        already (those events were parsed after ``rest``)."""
        held = self._held_events
        self._held_events = rest + held if held else rest

    def _deliver(self, message: Data) -> None:
        """Hand ``message`` to the task waiting in recv(), or queue it (pausing reading at
        ``max_queue``)."""
        # Until the application comes back to recv(), a bad frame after this message is held
        # back, so the application's answer to it goes out before the Close frame.
        self.core.hold_errors = True
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            self._recv_waiter = None
            return
        messages = self._queue()
        max_queue = self.max_queue
        core = self.core
        # Waiting for the answer to our Close: reading goes on until it comes, and what the
        # peer sent meanwhile beyond max_queue is dropped (bounded memory). Once the peer's
        # Close is in (it closed first, or answered in the same read), nothing is dropped.
        closing = core.close_sent is not None and core.close_rcvd is None
        if closing and max_queue is not None and len(messages) >= max_queue:
            return
        messages.append(message)
        # Backpressure: with max_queue messages waiting, stop reading until recv() catches up.
        if (
            max_queue is not None
            and len(messages) >= max_queue
            and not self._reading_paused
            and not closing
            and not self.transport.is_closing()
        ):
            self._reading_paused = True
            self.transport.pause_reading()

    def _queue(self) -> deque[Data]:
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        return messages

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()

    # ------------------------------------------------------------------ sending

    async def send(
        self, message: Data | Iterable[Data] | AsyncIterable[Data], *, compress: bool = True
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of ``str`` (or of bytes) is sent as one fragmented
        message, a frame per item. ``compress=False`` sends this message uncompressed even
        when permessage-deflate was negotiated (for data that is already compressed). Waits
        only while the write buffer is above its high-water mark, or while another task
        sends a fragmented message (messages do not interleave). Raises
        :class:`~wskit.exceptions.ConnectionClosed` once the connection closes.
        """
        core = self.core
        if self._fragments_done is not None:
            await self._wait_for_fragments()
        try:
            if isinstance(message, str):
                core.send_text(message, True, compress)
            elif isinstance(message, (bytes, bytearray, memoryview)):
                core.send_binary(message, True, compress)
            elif isinstance(message, AsyncIterable):
                await self._send_fragments_async(message, compress)
                return
            elif isinstance(message, Iterable):
                await self._send_fragments(message, compress)
                return
            else:
                raise TypeError(f"cannot send {type(message).__name__}")
        except LocalProtocolError:
            if core.state is not State.OPEN:
                raise self._closed_exception() from None
            raise
        deferred = False
        if self._messages:
            # The application works through a backlog of received messages, answering each
            # (pipelined requests): its answers go out together, once this burst yields to
            # the event loop, or with the answer to the last one, instead of a write each.
            # Past COALESCE_LIMIT they are written: flow control applies (send() waits).
            # (The size is about the frame's: characters for str, bytes for a memoryview.)
            size = message.nbytes if type(message) is memoryview else len(message)
            total = self._deferred_size + size
            if total <= COALESCE_LIMIT:
                deferred = True
                self._deferred_size = total
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.loop.call_soon(self._flush)
        if not deferred:
            self._deferred_size = 0
            self._write_out()
        if self._writing_paused:
            await self._drain()

    async def _wait_for_fragments(self) -> None:
        """Another task is sending a fragmented message: wait until it has ended."""
        while self._fragments_done is not None:
            await asyncio.shield(self._fragments_done)

    def _flush(self) -> None:
        """Write what send() queued during a burst (scheduled by send())."""
        self._flush_scheduled = False
        self._deferred_size = 0
        self._write_out()

    def send_nowait(self, message: Data, *, compress: bool = True) -> None:
        """Send a message now, without awaiting: for callbacks (class-based handlers).

        The frame is written to the transport at once (from a handler's hook: after the last
        hook run for the same read, with the other answers); above the write buffer's
        high-water mark it is buffered there and :attr:`writing_paused` is True. Raises
        :class:`~wskit.exceptions.ConnectionClosed` once the connection is closing.
        """
        core = self.core
        try:
            if isinstance(message, str):
                core.send_text(message, True, compress)
            # A tuple, not ``bytes | bytearray | memoryview``: compiled, it is three type
            # checks in C rather than a union object built on every call.
            elif isinstance(message, (bytes, bytearray, memoryview)):
                core.send_binary(message, True, compress)
            else:
                raise TypeError(f"cannot send {type(message).__name__}")
        except LocalProtocolError:
            if core.state is not State.OPEN:
                raise self._closed_exception() from None
            raise
        if not self._batching:
            self._write_out()

    def _write_out(self) -> None:
        data = self.core.data_to_send()
        if data:
            transport = self.transport
            if transport.is_closing():
                return
            if len(data) > 1:
                size = 0
                for chunk in data:
                    size += len(chunk)
                if size <= COALESCE_LIMIT:
                    # Small frames (a batch of answers, pongs): one write, one system call.
                    transport.write(b"".join(data))
                    return
            # Not writelines(): on CPython 3.12 and 3.13 it never calls pause_writing(), so
            # send() would not wait and the write buffer would grow without bound.
            for chunk in data:
                transport.write(chunk)

    # ------------------------------------------------------------------ slow paths

    def _on_request(self, request: Request) -> None:
        """Server: a request arrived; the server subclass answers it."""

    def _on_open(self) -> None:
        """The opening handshake succeeded (the subclass starts keepalive, runs ``on_open``)."""
        raise NotImplementedError

    def _on_closed(self, event: Closed) -> None:
        """The connection closed: wake every waiter, run the handler's ``on_close``."""
        raise NotImplementedError

    def _receive_pong(self, payload: bytes) -> None:
        """A Pong arrived: resolve the pings it answers."""
        raise NotImplementedError

    def _handler_failed(self) -> None:
        """A handler's hook raised: log it and close with 1011."""
        raise NotImplementedError

    def _closed_exception(self) -> ConnectionClosed:
        """The ``ConnectionClosed`` to raise once the connection is closed or closing."""
        raise NotImplementedError

    def _abort(self) -> None:
        """The closing handshake timed out: drop TCP."""
        raise NotImplementedError

    def _release_held_error(self) -> None:
        """A bad frame was held back for HELD_ERROR_TIMEOUT: fail on it now."""
        raise NotImplementedError

    def _close_transport(self) -> None:
        """Close TCP once what is queued is written (the core said so)."""
        raise NotImplementedError

    async def _drain(self) -> None:
        """Wait until the write buffer is below its low-water mark."""
        raise NotImplementedError

    async def _send_fragments(self, fragments: Iterable[Data], compress: bool) -> None:
        """Send the items of ``fragments`` as one fragmented message."""
        raise NotImplementedError

    async def _send_fragments_async(self, fragments: AsyncIterable[Data], compress: bool) -> None:
        """Send the items of the async iterable ``fragments`` as one fragmented message."""
        raise NotImplementedError

"""One WebSocket connection on a blocking socket, driven by threads.

A background reader thread per connection reads the socket, feeds the core, answers pings,
queues messages for :meth:`Connection.recv` and runs the keepalive and close timers; the
application's threads call ``recv``/``send``/``ping``/``close``. One lock guards the core and
is never held while the socket is written: whoever finds bytes to write writes them, and a
writer drains everything queued meanwhile before it lets go, so frames go out in the order the
core made them and no thread waits for a write of another to see the lock.

The thread, event and selector types are parameters (``thread_class``, ``event_class``,
``selector_class``), as simple-websocket offers, for green-thread libraries.
"""

from __future__ import annotations

import _socket
import concurrent.futures
import contextlib
import logging
import secrets
import selectors
import socket
import ssl as ssl_module
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol

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
    "EventLike",
    "ThreadLike",
    "read_handshake",
    "remaining",
]

#: Seconds between keepalive pings when nothing was received (websockets' default 20 s).
DEFAULT_PING_INTERVAL = 20.0
#: Seconds to wait for any traffic after a keepalive ping before failing with 1011.
DEFAULT_PING_TIMEOUT = 20.0
#: Seconds to wait for the closing handshake and the TCP close (websockets: 10 s).
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Messages queued before the reader thread stops reading (websockets' default is 16).
DEFAULT_MAX_QUEUE = 16
#: Bytes asked of each ``recv()`` on the socket (websockets' threading implementation: 64 KiB).
READ_SIZE = 64 * 1024

_OPEN = State.OPEN
#: The flag for a ``send()`` that never blocks (Linux, macOS, the BSDs; None on Windows).
_DONTWAIT: int | None = getattr(socket, "MSG_DONTWAIT", None)
#: The standard socket's own ``send``: a socket class that overrides it (TLS, gevent,
#: eventlet) may wait inside it whatever the flags say.
_PLAIN_SEND = _socket.socket.send


def remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` value; None: no limit).

    Raises :class:`TimeoutError` once it passed: the opening handshake took too long.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out during the opening handshake")
    return left


def read_handshake(
    sock: socket.socket, core: CoreConnection, deadline: float | None, read_size: int
) -> None:
    """Read from ``sock`` into ``core`` until the opening handshake's head is in: the
    request on a server, the response on a client (or the connection failed).

    Bytes that arrive behind the head stay in the core for the connection's reader thread.
    Raises :class:`TimeoutError` when ``deadline`` passes first.
    """
    server = not core.is_client
    while core.state is State.CONNECTING and not (server and getattr(core, "request", None)):
        sock.settimeout(remaining(deadline))
        data = sock.recv(read_size)
        if not data:
            core.receive_eof()
            return
        core.receive_data(data)


class EventLike(Protocol):
    """What the connection needs of ``event_class()`` (``threading.Event`` by default)."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class ThreadLike(Protocol):
    """What the connection needs of ``thread_class(target=..., daemon=True, name=...)``."""

    def start(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


class Connection(ConnectionState):
    """A WebSocket connection on a blocking socket: ``recv``/``send``/``ping``/``close``.

    Created by :func:`wskit.sync.connect` and :func:`wskit.sync.serve`, not by hand. Every
    method may be called from any thread; ``send`` from several threads at once is safe
    (messages never interleave), while two threads in ``recv`` at once raise
    :class:`~wskit.exceptions.ConcurrencyError`. Use it as a context manager to close it on
    the way out, and iterate over it for the messages until a normal close.
    """

    def __init__(
        self,
        sock: socket.socket,
        core: CoreConnection,
        *,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        read_size: int = READ_SIZE,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        thread_class: Callable[..., ThreadLike] | None = None,
        event_class: Callable[[], EventLike] | None = None,
        selector_class: Callable[[], selectors.BaseSelector] | None = None,
    ) -> None:
        self.socket = sock
        self.core = core
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.read_size = read_size
        self.logger = logger or logging.getLogger("wskit")
        self._thread_class: Callable[..., ThreadLike] = thread_class or threading.Thread
        self._event_class: Callable[[], EventLike] = event_class or threading.Event
        self._selector_class = selector_class or selectors.DefaultSelector
        #: True once the opening handshake succeeded (it stays True after the close).
        self.opened = False
        #: The round-trip time of the last answered ping, in seconds.
        self.latency: float | None = None
        # The core and everything below are guarded by this lock; re-entrant because a
        # pong future's callbacks run under it and may send. It is held briefly and never
        # across a blocking call: every wait is on an ``event_class()`` instance, so that
        # green threads without monkey-patching never block their OS thread on a lock.
        self._lock = threading.RLock()
        self._written = self._event_class()  # set: no thread is writing
        self._written.set()
        self._sending = False  # a send() holds the right to send a message
        self._send_free = self._event_class()  # set: no send() holds it
        self._send_free.set()
        self._messages: deque[Data] = deque()
        self._message_ready = self._event_class()  # set: a message is queued, or closed
        self._space = self._event_class()  # set: the reader may read (queue below max)
        self._space.set()
        self._receiving = False
        self._writing = False
        self._backlog: list[bytes | memoryview] = []
        # True while the socket did not take what the reader wrote (the rest is the
        # backlog): the core keeps its output meanwhile, where pongs are bounded.
        self._stalled = False
        self._writes_over = False  # set by the reader at the end: nobody writes any more
        # A socket pair that wakes the reader thread from its select(): another thread left
        # it work (room in the queue, a frame to write, a new deadline).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._registered = 0  # the events the reader's selector watches on the socket
        self._owes_write = False  # the reader has frames to write (timers, a wake-up)
        self._dontwait: int | None = None  # send() flags for the reader's writes
        self._write_error: OSError | None = None
        self._shut_write = False
        self._closed_event: Closed | None = None
        self._pings: dict[bytes, tuple[concurrent.futures.Future[float], float]] = {}
        # Ping futures to resolve once the lock is released (see _settle).
        self._settled: list[tuple[concurrent.futures.Future[float], float | BaseException]] = []
        self._close_deadline: float | None = None
        self._keepalive_deadline: float | None = None
        self._hold_deadline: float | None = None  # a bad frame held back fails by then
        self._keepalive_mark = -1
        self._ping_outstanding = False
        # When the reader last looked at its timers; it polled the socket after that.
        self._timers_checked = -1.0
        self._reader: ThreadLike | None = None
        # False for a socket lent by a web server: shut down at the end, closed by its owner.
        self._owns_socket = True
        self._done = self._event_class()  # set: the reader thread ended, the socket is closed

    # ------------------------------------------------------------------ properties

    @property
    def remote_address(self) -> Any:
        """The peer's address (``getpeername()``), or None once the socket is closed."""
        try:
            return self.socket.getpeername()
        except OSError:
            return None

    @property
    def local_address(self) -> Any:
        """This side's address (``getsockname()``), or None once the socket is closed."""
        try:
            return self.socket.getsockname()
        except OSError:
            return None

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection: messages and bytes each way, queue, latency."""
        core = self.core
        with self._lock:
            return ConnectionStatistics(
                messages_sent=core.messages_sent,
                messages_received=core.messages_received,
                bytes_sent=core.bytes_sent,
                bytes_received=core.bytes_received,
                messages_queued=len(self._messages),
                write_buffer_size=sum(len(chunk) for chunk in self._backlog),
                latency=self.latency,
            )

    # ------------------------------------------------------------------ receiving

    def recv(self, timeout: float | None = None) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        ``timeout`` (seconds) bounds the wait: ``0`` returns a queued message or raises at
        once; when it expires :class:`TimeoutError` is raised and nothing is lost (a message
        arriving later waits for the next call). Raises
        :class:`~wskit.exceptions.ConnectionClosedOK` after a normal close and
        :class:`~wskit.exceptions.ConnectionClosedError` otherwise, once every message
        received before the close was returned; :class:`~wskit.exceptions.ConcurrencyError`
        if another thread is already in ``recv``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._receiving:
                raise ConcurrencyError("another thread is already waiting in recv()")
            self._receiving = True
        try:
            while True:
                try:
                    with self._lock:
                        if self._space.is_set() and not self._registered & selectors.EVENT_READ:
                            # The reader still waits as if paused by max_queue: wake it (again,
                            # should the wake-up of _take() have been lost to an interrupt).
                            self._wake()
                        message = self._take()
                        if message is not None:
                            return message
                        self._message_ready.clear()
                except ConnectionClosed:
                    self._release_to_owner()
                    raise
                finally:
                    if self._settled:
                        self._settle()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no message within the timeout")
                self._message_ready.wait(remaining)
        finally:
            with self._lock:
                self._receiving = False

    def _take(self) -> Data | None:
        """A queued message, or None; raise once closed and drained (lock held)."""
        messages = self._messages
        if messages:
            message = messages.popleft()
            if not self._space.is_set() and len(messages) <= (self.max_queue or 0) // 2:
                self._space.set()
                self._wake()  # the reader reads again
            return message
        if self.core.hold_errors:
            # Every message was handed out: a bad frame held back behind them fails the
            # connection now, after the application's answers to them went out.
            self._release_held_error()  # the reader thread writes its Close frame
            if messages:
                return messages.popleft()
        if self._closed_event is not None:
            raise self._closed_exception()
        return None

    def _release_held_error(self, *, from_reader: bool = False) -> None:
        """Fail on the bad frame held back, if any: the application took every message
        before it, or did not within ``HELD_ERROR_TIMEOUT`` (lock held)."""
        self._hold_deadline = None
        if self.core.release_held():
            self._process(from_reader=from_reader)

    def __iter__(self) -> Iterator[Data]:
        """The messages until the connection closes: normally (the loop ends) or not
        (:class:`~wskit.exceptions.ConnectionClosedError` is raised)."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # ------------------------------------------------------------------ sending

    def send(self, message: Data | Iterable[Data], *, compress: bool = True) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; an iterable of ``str`` (or
        of bytes) as one fragmented message, a frame per item.

        Returns once the bytes are handed to the operating system: a peer that stops reading
        slows the sender down instead of growing a buffer. ``compress=False`` sends this
        message uncompressed when permessage-deflate was negotiated. Raises
        :class:`~wskit.exceptions.ConnectionClosed` once the connection is closing.
        """
        # One message at a time: the frames of a fragmented one must not interleave with
        # another's (RFC 6455 5.4); pings, pongs and the Close frame may go between them.
        self._acquire_send()
        try:
            if isinstance(message, str):
                self._call(self.core.send_text, message, True, compress)
            elif isinstance(message, (bytes, bytearray, memoryview)):
                self._call(self.core.send_binary, message, True, compress)
            elif isinstance(message, Iterable):
                self._send_fragments(message, compress)
                return
            else:
                raise TypeError(f"cannot send {type(message).__name__}")
            self._flush(blocking=True)
        finally:
            self._release_send()

    def _acquire_send(self) -> None:
        """Wait for the right to send a message (a mutex made of the lock and an event)."""
        while True:
            with self._lock:
                if not self._sending:
                    self._sending = True
                    return
                self._send_free.clear()
            self._send_free.wait()

    def _release_send(self) -> None:
        with self._lock:
            self._sending = False
            self._send_free.set()

    def _send_fragments(self, fragments: Iterable[Data], compress: bool) -> None:
        core = self.core
        kind: type | None = None
        try:
            for fragment in fragments:
                if kind is None:
                    if isinstance(fragment, str):
                        self._call(core.send_text, fragment, False, compress)
                        kind = str
                    elif isinstance(fragment, (bytes, bytearray, memoryview)):
                        self._call(core.send_binary, fragment, False, compress)
                        kind = bytes
                    else:
                        raise TypeError(f"cannot send {type(fragment).__name__}")
                elif isinstance(fragment, str) != (kind is str):
                    raise TypeError("a fragmented message mixes str and bytes")
                else:
                    self._call(core.send_continuation, fragment, False)
                self._flush(blocking=True)
        except BaseException:
            if kind is not None:
                # Its first frame went out: the message cannot be completed, and the peer
                # must not take a part for the whole, so the connection fails with 1011.
                with self._lock:
                    if core.state is State.OPEN:
                        core.fail(1011, "a fragmented message was interrupted")
                        self._process()
                self._flush(blocking=False)
            raise
        if kind is not None:
            self._call(core.finish_message)
            self._flush(blocking=True)

    def ping(self, data: str | bytes | None = None) -> concurrent.futures.Future[float]:
        """Send a Ping; return a future whose result is the round-trip time in seconds once
        the matching Pong arrives (``rtt = ws.ping().result(timeout=5)``).

        ``data`` defaults to 4 random bytes. A Pong also answers every earlier ping
        (RFC 6455 5.5.3 lets a peer answer only the latest). The future fails with
        :class:`~wskit.exceptions.ConnectionClosed` if the connection closes first.
        """
        payload = data.encode() if isinstance(data, str) else data
        waiter: concurrent.futures.Future[float] = concurrent.futures.Future()
        with self._lock:
            if payload is None:
                payload = secrets.token_bytes(4)
                while payload in self._pings:
                    payload = secrets.token_bytes(4)
            elif payload in self._pings:
                raise ConcurrencyError("already waiting for a pong with the same data")
            # Registered before the Ping goes out, so that no Pong can arrive unseen.
            self._pings[payload] = (waiter, time.monotonic())
        try:
            self._call(self.core.send_ping, payload)  # not under the lock: it may wait
        except BaseException:
            with self._lock:
                self._pings.pop(payload, None)
            raise
        self._flush(blocking=True)
        return waiter

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat)."""
        self._call(self.core.send_pong, data.encode() if isinstance(data, str) else data)
        self._flush(blocking=True)

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        """Call a sending method of the core under the lock; ConnectionClosed once closing."""
        try:
            with self._lock:
                if self._write_error is not None:
                    raise self._closed_exception()
                try:
                    method(*args)
                except LocalProtocolError:
                    if self.core.state is not State.OPEN:
                        raise self._closed_exception() from None
                    raise
        except ConnectionClosed:
            self._release_to_owner()
            raise

    def _release_to_owner(self) -> None:
        """The application learns that the connection is closed: on a socket lent by a web
        server, write what is queued (the Close frame) and shut the sending side, before
        the application returns to the server, which may then write an HTTP response of its
        own: that write must fail rather than reach the peer as bytes after the Close."""
        if self._owns_socket or self._closed_event is None:
            return
        with contextlib.suppress(ConnectionClosed):
            self._flush(blocking=True)
        with self._lock:
            if not self._shut_write:
                self._shut_write = True
                with contextlib.suppress(OSError):
                    self.socket.shutdown(socket.SHUT_WR)
        # The server closes the socket once the application returns: the reader thread must
        # be done with it by then (a closed descriptor's number is soon another connection's).
        if not self.wait_closed(self.close_timeout):
            self._abort()
            self.wait_closed()

    def _flush(self, *, blocking: bool, timeout: float | None = None, nowait: bool = False) -> None:
        """Write what the core queued. With ``blocking``, return once it is written (by this
        thread or by the one writing already); without, leave it to the thread writing now,
        if any. ``timeout`` bounds the wait for another thread's write, and this thread's
        own write: past it the connection is dropped (a peer that reads nothing holds a
        write forever).

        ``nowait`` is for the reader thread: its writes never block. What the socket does not
        take at once stays in the backlog (``_stalled``) and the reader writes it when the
        socket takes more, so a peer that reads nothing cannot stop the reader (and with it
        reading, keepalive and the close timer). While another thread writes, the core keeps
        its output (pongs bounded there); the writer takes it. Not on sockets whose ``send``
        may wait (TLS, gevent, eventlet) or that have a timeout: those writes block."""
        claimed = False  # this thread took the writer's role (and must give it back)
        try:
            while True:
                with self._lock:
                    if self._write_error is not None or self._writes_over:
                        # Nothing goes out after a failed write or the end: a blocking caller
                        # whose bytes may be among those left learns it.
                        if blocking and (self._write_error is not None or self._has_output()):
                            raise self._closed_exception()
                        return
                    if not self._writing:
                        if not self._stalled:
                            self._backlog.extend(self.core.data_to_send())
                        if not self._backlog:
                            self._shutdown_if_done()
                            return
                        claimed = True
                        self._writing = True
                        self._written.clear()
                        break
                    if not blocking:
                        return
                # Another thread writes: it takes what the core queued until none is left;
                # what remains then (the rest of a stalled write) is this thread's to write.
                if not self._written.wait(timeout):
                    self._abort()  # its write fails now, and the reader thread sees the end
                    raise self._closed_exception()
            flags = self._dontwait if nowait or timeout is not None else None
            deadline = None if timeout is None else time.monotonic() + timeout
            wrote = False
            while True:
                with self._lock:
                    if wrote:
                        self._stalled = False  # the rest of a stalled write went out
                    chunks = self._backlog
                    self._backlog = []
                    if not self._stalled:
                        # (While stalled, the backlog is the rest of a write and goes alone.)
                        chunks.extend(self.core.data_to_send())
                    if not chunks:
                        # Nothing left: stop writing in the same critical section that saw
                        # it, so that whatever another thread queues next makes it the writer.
                        self._writing = False
                        self._written.set()
                        self._shutdown_if_done()
                        return
                data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
                wrote = True
                if flags is None:
                    self.socket.sendall(data)
                    continue
                sent = self._send_some(data, flags)
                if sent < len(data) and deadline is not None:
                    self._send_rest(memoryview(data)[sent:], flags, deadline)
                elif sent < len(data):
                    with self._lock:
                        self._backlog = [memoryview(data)[sent:]]
                        self._stalled = True
                        self._writing = False
                        self._written.set()
                    return
        except BaseException as exc:  # OSError, or an interrupt: never leave _writing set
            if not claimed:
                raise
            # How much of the stream went out is unknown: nothing more can be written.
            with self._lock:
                self._writing = False
                if self._write_error is None:
                    self._write_error = (
                        exc
                        if isinstance(exc, OSError)
                        else ConnectionAbortedError(f"write interrupted by {exc!r}")
                    )
                self._backlog = []
                self._stalled = False
                self._written.set()
            self.logger.debug("write failed: %r", exc)
            self._abort()
            if not isinstance(exc, OSError):
                raise
            if blocking:
                raise self._closed_exception() from exc

    def _has_output(self) -> bool:
        """Bytes are left to write: the rest of a write, or output in the core (lock held)."""
        if self._backlog:
            return True
        pending = self.core.data_to_send()
        if pending:
            self._backlog = list(pending)
        return bool(pending)

    def _send_some(self, data: bytes | memoryview, flags: int) -> int:
        """Write what the socket takes now, without waiting; return how much that was."""
        try:
            return self.socket.send(data, flags)
        except (BlockingIOError, InterruptedError):
            return 0

    def _send_rest(self, data: memoryview, flags: int, deadline: float) -> None:
        """Write all of ``data`` by ``deadline`` or raise :class:`TimeoutError`."""
        with self._selector_class() as selector:
            selector.register(self.socket, selectors.EVENT_WRITE)
            while data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the peer took nothing written within the timeout")
                selector.select(left)
                data = data[self._send_some(data, flags) :]

    def _nowait_flags(self) -> int | None:
        """``send()`` flags for a write that never blocks, or None where there are none."""
        sock = self.socket
        if _DONTWAIT is None or type(sock).send is not _PLAIN_SEND:
            return None  # TLS, green sockets: their send() waits on EAGAIN
        if sock.gettimeout() is not None:
            return None  # with a timeout, Python waits and retries on EAGAIN
        return _DONTWAIT

    def _wake(self) -> None:
        """Make the reader thread look again (from another thread). Under the lock, so that
        the reader cannot close the socket pair meanwhile (a non-blocking send: no wait)."""
        with self._lock:
            wake = self._wake_w
            if wake is not None:
                with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
                    wake.send(b"\0")

    def _shutdown_if_done(self) -> None:
        """Half-close TCP once the core says so and everything was written (lock held)."""
        if (
            self.core.should_close()
            and not self._shut_write
            and not self._writing
            and not self._backlog
        ):
            self._shut_write = True
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake and wait until TCP is closed (at most
        ``close_timeout``, after which the connection is dropped)."""
        with self._lock:
            if self.core.state is State.OPEN:
                self.core.send_close(code, reason)
                self._process()
            self._space.set()  # a reader paused by max_queue must see the answer
        self._wake()  # ... and the close timer
        with contextlib.suppress(ConnectionClosed):
            self._flush(blocking=True, timeout=self.close_timeout)
        if not self.wait_closed(self.close_timeout):
            # The reader thread still runs: a peer that neither answers nor reads (a write
            # blocks). Drop TCP, which ends both.
            self._abort()
            self.wait_closed()
        self._settle()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed and its socket too; False on timeout."""
        reader = self._reader
        if reader is None:
            self._close_socket()
            return True
        if reader is threading.current_thread():
            return self._done.is_set()  # a hook of the reader thread cannot wait for it
        return self._done.wait(timeout)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the reader thread

    def _start(self, name: str) -> None:
        """The opening handshake succeeded: start the reader thread."""
        self.opened = True
        self._keepalive_mark = self.core.bytes_received
        if self.ping_interval:
            self._keepalive_deadline = time.monotonic() + self.ping_interval
        try:
            self._wake_r, self._wake_w = socket.socketpair()
        except OSError:  # out of descriptors: the connection cannot run
            self._abort()
            self._close_socket()
            raise
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._dontwait = self._nowait_flags()
        reader = self._thread_class(target=self._read_loop, daemon=True, name=name)
        self._reader = reader
        reader.start()

    def _read_loop(self) -> None:
        selector = self._selector_class()
        try:
            assert self._wake_r is not None
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self.socket, selectors.EVENT_READ)
            self._registered = selectors.EVENT_READ
            with self._lock:
                self._process(from_reader=True)  # frames that came in with the handshake
            self._flush(blocking=False, nowait=True)
            while self._read_once(selector):
                pass
        except Exception:  # pragma: no cover - a bug: do not die silently
            self.logger.exception("reader thread failed")
        finally:
            selector.close()
            with self._lock:
                if self.core.state is not State.CLOSED:
                    self.core.receive_eof()
                    self._process(from_reader=True)
                self._fail_waiters()
                # No thread starts writing now (what is left stays unwritten: a send() whose
                # bytes may be among it raises ConnectionClosed).
                self._writes_over = True
            # A thread may still be writing (a send() that raced with the close): the socket
            # is closed once it is done, never under it. A peer that stopped reading cannot
            # make that last: after close_timeout the socket is shut down, which ends it.
            if not self._written.wait(self.close_timeout):
                self._abort()
                self._written.wait(self.close_timeout)
            self._close_socket()
            with self._lock:
                wake_r, wake_w = self._wake_r, self._wake_w
                self._wake_r = self._wake_w = None
            for wake in (wake_r, wake_w):
                if wake is not None:
                    wake.close()
            self._settle()
            self._done.set()

    def _read_once(self, selector: selectors.BaseSelector) -> bool:
        """Wait for bytes (or the next timer), feed them to the core; False at the end."""
        timeout = self._run_timers()
        if timeout is False:
            return False
        if self._owes_write or self._stalled:
            # A keepalive ping, a Close frame another thread made, the rest of a write.
            self._owes_write = False
            self._flush(blocking=False, nowait=True)
        try:
            # Backpressure: with max_queue messages waiting for recv(), the reader stops
            # reading until recv() catches up (it wakes the reader).
            if not self._wait(selector, timeout, reading=self._space.is_set()):
                return True
            data = self.socket.recv(self.read_size)
        except (ssl_module.SSLWantReadError, BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            self.logger.debug("read failed: %s", exc)
            data = b""
        with self._lock:
            if data:
                self.core.receive_data(data)
            else:
                self.core.receive_eof()
            self._process(from_reader=True)
        self._flush(blocking=False, nowait=True)  # pongs, the Close echo
        if self._settled:
            self._settle()
        return bool(data)

    def _wait(self, selector: selectors.BaseSelector, timeout: float | None, reading: bool) -> bool:
        """Wait until the socket is readable (when ``reading``), another thread wakes this
        one, or ``timeout`` passes; True if the socket is readable. While a write of this
        thread is stalled, write the rest whenever the socket takes more."""
        sock = self.socket
        if reading and isinstance(sock, ssl_module.SSLSocket) and sock.pending():
            return True  # decrypted bytes wait in the TLS layer: no socket event for them
        want = selectors.EVENT_READ if reading else 0
        if self._stalled and not self._writing:
            want |= selectors.EVENT_WRITE
        if want != self._registered:
            if not self._registered:
                selector.register(sock, want)
            elif not want:
                selector.unregister(sock)
            else:
                selector.modify(sock, want)
            self._registered = want
        ready = 0
        for key, events in selector.select(timeout):
            if key.fileobj is sock:
                ready |= events
            else:
                self._drain_wake()
                self._owes_write = True  # another thread may have left frames to write
        if ready & selectors.EVENT_WRITE:
            self._flush(blocking=False, nowait=True)
        return bool(ready & selectors.EVENT_READ)

    def _drain_wake(self) -> None:
        wake = self._wake_r
        with contextlib.suppress(OSError):  # empty (BlockingIOError), or closed
            while wake is not None and wake.recv(256):
                pass

    def _run_timers(self) -> float | bool | None:
        """Fire the keepalive and close timers that are due; return the seconds until the
        next one (None: no timer), or False when the connection was dropped.

        Keepalive gives up on a silent peer only once the socket was polled after its
        deadline: a reader thread that ran late reads an answer that arrived in time first,
        as an event loop does (I/O before timers)."""
        now = time.monotonic()
        polled = self._timers_checked  # the reader polled the socket after this time
        self._timers_checked = now
        with self._lock:
            deadline = self._close_deadline
            if deadline is not None and now >= deadline:
                self.logger.debug("closing handshake timed out; dropping the connection")
                return False
            hold = self._hold_deadline
            if hold is not None and now >= hold:
                self._hold_deadline = hold = None
                self._release_held_error(from_reader=True)
                self._owes_write = True
            keepalive = self._keepalive_deadline
            if keepalive is not None and now >= keepalive:
                self._keepalive(now, polled >= keepalive)
                keepalive = self._keepalive_deadline
                self._owes_write = True
            deadlines = [d for d in (deadline, keepalive, hold) if d is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _keepalive(self, now: float, polled: bool = True) -> None:
        """Every ``ping_interval``: ping if nothing arrived since the last tick; fail with
        1011 if nothing at all arrived within ``ping_timeout`` of a ping (lock held).
        ``polled``: the socket was polled since the deadline (else a silent peer gets one
        more poll: the answer may be waiting unread)."""
        self._keepalive_deadline = None
        core = self.core
        if core.state is not State.OPEN or not self.ping_interval:
            return
        received = core.bytes_received
        delay = self.ping_interval
        if self._ping_outstanding:
            if received == self._keepalive_mark and not polled:
                self._keepalive_deadline = now  # due again right after the poll
                return
            self._ping_outstanding = False
            if received == self._keepalive_mark:
                self.logger.info("keepalive ping timeout; closing the connection")
                core.fail(1011, "keepalive ping timeout")
                self._process(from_reader=True)
                return
        elif received == self._keepalive_mark:
            core.send_ping(secrets.token_bytes(4))
            if self.ping_timeout is not None:
                self._ping_outstanding = True
                delay = self.ping_timeout
            self._process(from_reader=True)
        self._keepalive_mark = received
        self._keepalive_deadline = now + delay

    def _process(self, *, from_reader: bool = False) -> None:
        """Dispatch the core's events; its answers stay in the core for :meth:`_flush`,
        which the caller runs once it let go of the lock (lock held). Called by another
        thread than the reader, wake the reader: there may be a deadline to watch, room in
        the queue, frames to write."""
        core = self.core
        for event in core.events():
            self._dispatch(event)
        if core.input_held and core.hold_errors and self._hold_deadline is None:
            self._hold_deadline = time.monotonic() + HELD_ERROR_TIMEOUT
        if (
            self.core.close_expected()
            and self._close_deadline is None
            and self.close_timeout is not None
        ):
            self._close_deadline = time.monotonic() + self.close_timeout
        if not from_reader:
            self._wake()

    def _dispatch(self, event: Event) -> None:
        kind = type(event)
        if kind is Text or kind is Binary:
            # Until the application asks for the next message, a bad frame behind this one
            # is held back, so its answer to this message goes out before the Close frame.
            self.core.hold_errors = True
            messages = self._messages
            messages.append(event.data)  # type: ignore[union-attr]
            self._message_ready.set()
            max_queue = self.max_queue
            if max_queue is not None and len(messages) >= max_queue and self.core.state is _OPEN:
                self._space.clear()
        elif kind is Pong:
            self._receive_pong(event.payload)  # type: ignore[union-attr]
        elif kind is Closed:
            self._on_closed(event)  # type: ignore[arg-type]
        elif kind is Ping:
            pass  # the core answered it
        else:
            self._on_handshake_event(event)

    def _on_handshake_event(self, event: Event) -> None:
        """A Request or Response: handled during the opening handshake, never after."""

    def _receive_pong(self, payload: bytes) -> None:
        entry = self._pings.get(payload)
        if entry is None:
            return
        now = time.monotonic()
        # A Pong answers its ping and every ping sent before it.
        for key in list(self._pings):
            waiter, sent_at = self._pings.pop(key)
            self._settled.append((waiter, now - sent_at))
            if key == payload:
                self.latency = now - sent_at
                break

    def _settle(self) -> None:
        """Resolve the ping futures answered or failed meanwhile: outside the lock, since a
        future runs its callbacks at once and they may use this connection."""
        with self._lock:
            settled, self._settled = self._settled, []
        for waiter, outcome in settled:
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

    def _on_closed(self, event: Closed) -> None:
        self._closed_event = event
        if event.cause is not None and not isinstance(event.cause, ConnectionClosed):
            self.logger.debug("connection failed: %s", event.cause)
        self._keepalive_deadline = None
        self._space.set()  # read on, so the peer's Close and the TCP close are seen
        self._fail_waiters()

    def _fail_waiters(self) -> None:
        """Wake recv() and fail the ping futures: the connection is closed (lock held)."""
        self._message_ready.set()
        if self._pings:
            exc = self._closed_exception()
            self._settled.extend((waiter, exc) for waiter, _ in self._pings.values())
            self._pings.clear()

    def _abort(self) -> None:
        """Drop TCP: the reader thread sees the end at once (woken, if paused by max_queue)."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self._wake()

    def _close_socket(self) -> None:
        if self._owns_socket:
            self.socket.close()
        else:
            self._abort()

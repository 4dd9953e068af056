"""uvicorn's WebSocket engine on wskit's core: every ASGI WebSocket route, through wskit.

::

    uvicorn app:app --ws wskit.integrations.uvicorn:WebSocketProtocol

uvicorn parses HTTP; when a request asks for a WebSocket upgrade it hands the connection to
its ``--ws`` protocol class. :class:`WebSocketProtocol` is that class, built on wskit's
sans-I/O core: the handshake checks, permessage-deflate, the limits, the UTF-8 and framing
checks, the closing handshake are wskit's (Autobahn-clean), and the application sees the ASGI
WebSocket spec in full: ``websocket.connect`` / ``receive`` / ``disconnect``; ``accept`` with
a subprotocol and headers, ``send``, ``close`` with a code and reason, and denial responses
(``websocket.http.response.start`` / ``body``). FastAPI and Starlette routes run unchanged.

uvicorn's options apply: ``--ws-max-size`` (the message limit, checked before buffering and
after decompression), ``--ws-max-queue`` (messages buffered before reading pauses),
``--ws-ping-interval`` / ``--ws-ping-timeout`` (keepalive: any traffic counts),
``--ws-per-message-deflate`` (offer compression or not).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from typing import Any, Literal
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_local_addr,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from wskit import _zlib
from wskit.core.connection import ServerConnection, State
from wskit.core.events import Binary, Closed, Pong, Request, Text
from wskit.core.extensions import ServerPerMessageDeflateFactory
from wskit.core.limits import DEFAULT_MAX_FRAGMENTS, HELD_ERROR_TIMEOUT, LINGER_TIMEOUT, Limits
from wskit.exceptions import LocalProtocolError

__all__ = ["WebSocketProtocol", "run"]

#: Seconds to wait for the client's answer to our Close frame before dropping TCP.
CLOSE_TIMEOUT = 10.0

Message = dict[str, Any]


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection of uvicorn, driven by wskit's core (see the module doc).

    uvicorn has no option for a message's frame count: subclass to change it
    (``class Protocol(WebSocketProtocol): max_fragments = 100_000``) and pass the subclass
    as ``ws=`` to ``uvicorn.run`` or ``uvicorn.Config``.
    """

    #: Frames one message may have (wskit's default; see wskit.core.limits).
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover - uvicorn loads it first
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers

        extensions = []
        if config.ws_per_message_deflate:
            factory = functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module)
            extensions.append(factory())
        limits = Limits.for_size(config.ws_max_size, max_fragments=self.max_fragments)
        self.core = ServerConnection(extensions=extensions, limits=limits)
        self.max_queue: int = config.ws_max_queue
        self.ping_interval: float | None = config.ws_ping_interval
        self.ping_timeout: float | None = config.ws_ping_timeout

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scheme: Literal["ws", "wss"] = "ws"
        self.scope: dict[str, Any] = {}
        self.request: Request | None = None
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.writable = asyncio.Event()
        self.writable.set()
        self.read_paused = False
        self.handshake_complete = False  # a response (101 or another) was sent
        self.accepted = False
        self.close_sent = False  # the app sent websocket.close (or the server closed)
        self.disconnected = False  # websocket.disconnect was queued for the app
        self.lost = False
        self.half_closed = False  # wrote EOF after the closing handshake or a failure
        self.server_closing = False  # uvicorn shut the connection down (1012)
        self.denial: tuple[int, list[tuple[str, str]], bytearray] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.keepalive_timer: asyncio.TimerHandle | None = None
        self.hold_timer: asyncio.TimerHandle | None = None  # a held bad frame fails then
        self.last_disconnect: Message | None = None  # websocket.disconnect, once taken
        self.keepalive_mark = -1
        self.ping_outstanding = False

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)  # type: ignore[arg-type]
        self.scheme = "wss" if is_ssl(self.transport) else "ws"

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self.core.receive_eof()
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.core.state is not State.CLOSED:
            self.core.receive_eof()
            self._process()
        self._disconnect(1006 if not self.handshake_complete else 1005, "")
        self.connections.discard(self)
        for timer in (self.close_timer, self.keepalive_timer, self.hold_timer):
            if timer is not None:
                timer.cancel()
        self.writable.set()  # a send() waiting for the buffer to drain learns the news

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        self._process()  # what the core kept while writing was paused (pongs)

    def shutdown(self) -> None:
        """uvicorn is shutting down: close with 1012 (service restart), or answer 500."""
        if not self.handshake_complete:
            self._respond(500, "Server shutting down.\n")
        elif self.core.state is State.OPEN:
            self.server_closing = True  # the app's next send gets ClientDisconnected
            self._disconnect(1012, "")
            self.core.send_close(1012, "")
            self._process()
        else:
            self.transport.close()

    # ------------------------------------------------------------------ the core's events

    def _process(self) -> None:
        core = self.core
        for event in core.events():
            kind = type(event)
            if kind is Text or kind is Binary:
                self._received(event.data)  # type: ignore[union-attr]
            elif kind is Pong:
                self.ping_outstanding = False
            elif kind is Closed:
                self._disconnect(event.code, event.reason)  # type: ignore[union-attr]
            elif kind is Request:
                self._connect(event)  # type: ignore[arg-type]
        transport = self.transport
        # Above the write buffer's high-water mark, the pongs the core owes stay in the core
        # (MAX_PENDING_PONGS) until resume_writing(): a peer that pings and never reads cannot
        # grow the transport's buffer. Once closing, everything goes out.
        if self.writable.is_set() or core.state is not State.OPEN:
            data = core.data_to_send()
            if data and not transport.is_closing():
                transport.write(b"".join(data))
        if core.should_close() and not transport.is_closing() and not self.half_closed:
            if transport.can_write_eof():
                self.half_closed = True
                # Half-close, and read on (the core discards) until the client closes: closing
                # with unread bytes (the rest of an oversized message, or whatever a refused
                # client sent behind its request) would reset the connection, and the client
                # would never read our Close frame (1009) or the HTTP refusal.
                transport.write_eof()
                if self.read_paused:
                    self.read_paused = False
                    transport.resume_reading()
                if not self.accepted and self.close_timer is None:
                    # A refusal: no closing handshake to wait for, only the client's close,
                    # for at most LINGER_TIMEOUT (as the other wskit servers, RFC 9112 9.6).
                    self.close_timer = self.loop.call_later(LINGER_TIMEOUT, self._linger_over)
            else:
                transport.close()
        if core.close_expected() and self.close_timer is None:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, transport.abort)
        if core.input_held and core.hold_errors and self.hold_timer is None:
            # The app may never come back for the messages before the bad frame (one that
            # only sends): the hold ends after HELD_ERROR_TIMEOUT all the same.
            self.hold_timer = self.loop.call_later(HELD_ERROR_TIMEOUT, self._release_held)

    def _release_held(self) -> None:
        self.hold_timer = None
        if not self.lost and self.core.release_held():
            self._process()

    def _linger_over(self) -> None:
        """The refused client did not close within LINGER_TIMEOUT: close, and drop TCP if
        the answer still cannot be written after CLOSE_TIMEOUT (a client that reads nothing
        would keep ``transport.close()`` waiting for good)."""
        self.transport.close()
        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def _connect(self, request: Request) -> None:
        """The upgrade request: check it, then run the app with a websocket scope."""
        self.request = request
        object.__setattr__(request, "remote_address", get_remote_addr(self.transport))
        check = self.core.accept(request)
        if check.status != 101:
            # Not a valid upgrade (bad version, missing key...): answered without the app.
            self.handshake_complete = True
            self.core.send_response(check)
            self._process()
            return
        raw_path, _, query = request.target.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": get_local_addr(self.transport),
            "client": get_remote_addr(self.transport),
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": (self.root_path + raw_path).encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.items()
            ],
            "subprotocols": request.subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _received(self, data: str | bytes) -> None:
        if self.close_sent:
            return  # the app is past websocket.close: nobody reads this
        key = "text" if isinstance(data, str) else "bytes"
        self.queue.put_nowait({"type": "websocket.receive", key: data})
        # Until the app comes back for more, a bad frame behind this message is held back,
        # so the app's answer to it goes out before the Close frame (see receive()).
        self.core.hold_errors = True
        # Backpressure: stop reading while the app has max_queue messages to catch up with.
        if self.queue.qsize() >= self.max_queue and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _disconnect(self, code: int, reason: str) -> None:
        if self.disconnected:
            return
        self.disconnected = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.keepalive_timer is not None:
            self.keepalive_timer.cancel()
            self.keepalive_timer = None
        if self.read_paused and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()  # read on: the Close frame and the TCP close

    # ------------------------------------------------------------------ the ASGI app

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self._respond(500, "Internal Server Error\n")
            self._close_after_app(1011)
            return
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self._respond(500, "Internal Server Error\n")
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned %r.", result)
        self._close_after_app(1000)

    def _close_after_app(self, code: int) -> None:
        """The app returned: close with ``code`` unless the connection is closing already."""
        if self.accepted and self.core.state is State.OPEN:
            self.close_sent = True
            self.core.send_close(code, "")
            self._process()

    def _respond(
        self, status: int, body: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        """An HTTP answer instead of the 101 (it closes the connection)."""
        if self.handshake_complete or self.lost:
            return
        self.handshake_complete = True
        self.core.send_response(self.core.reject(status, body, headers))
        self._process()

    async def receive(self) -> Message:
        core = self.core
        if self.queue.empty():
            if self.last_disconnect is not None:
                # Asked again after the disconnect: it is repeated (as uvicorn's own
                # engines do) rather than waited for.
                return dict(self.last_disconnect)
            if core.hold_errors and core.release_held():
                # The app handled every message it was given: a bad frame held back behind
                # them fails the connection now, after its answers.
                self._process()
        message = await self.queue.get()
        if message["type"] == "websocket.disconnect":
            self.last_disconnect = message
        if self.read_paused and self.queue.qsize() <= self.max_queue // 2:
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        await self.writable.wait()
        if self.lost or self.server_closing or (self.disconnected and not self.close_sent):
            raise ClientDisconnected()
        kind = message["type"]
        if not self.handshake_complete:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._disconnect(1006, "")
                self.logger.info('"WebSocket %s" 403', self.scope.get("path"))
                self._respond(403, "")
            elif kind == "websocket.http.response.start" and self.denial is None:
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code {status} in response.")
                headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", [])
                ]
                self.denial = (status, headers, bytearray())
            elif kind == "websocket.http.response.body" and self.denial is not None:
                status, headers, body = self.denial
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    # Raises for headers that may not be sent: the app's error, answered 500.
                    self.core.send_response(self.core.reject(status, bytes(body), headers))
                    self._disconnect(1006, "")
                    self.handshake_complete = True
                    self._process()
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start' but got {kind!r}."
                )
        elif self.close_sent:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r}, after sending 'websocket.close'."
            )
        elif kind == "websocket.send":
            try:
                text = message.get("text")
                if text is not None:
                    self.core.send_text(text)
                else:
                    self.core.send_binary(message.get("bytes") or b"")
            except LocalProtocolError:
                raise ClientDisconnected() from None
            self._process()
        elif kind == "websocket.close":
            code, reason = message.get("code", 1000), message.get("reason") or ""
            try:
                self.core.send_close(code, reason)
            except LocalProtocolError:
                if self.core.state is State.OPEN:
                    raise  # a code or reason that may not be sent: the app's error
                raise ClientDisconnected() from None
            self.close_sent = True
            self._disconnect(code, reason)
            self._process()
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
            )

    def _accept(self, message: Message) -> None:
        assert self.request is not None
        # uvicorn's default headers (Date, Server unless --no-server-header, --header ...)
        # then the app's, as uvicorn's own engines send them.
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in [*self.default_headers, *message.get("headers", [])]
        ]
        response = self.core.accept(
            self.request, subprotocol=message.get("subprotocol"), extra_headers=headers
        )
        if response.status == 101 and not any(name.lower() == "server" for name, _ in headers):
            response.headers.remove("Server")  # --no-server-header: none, not wskit's
        # Raises for headers that may not be sent: the app's error, answered 500.
        self.core.send_response(response)
        self.logger.info('"WebSocket %s" [accepted]', self.scope.get("path"))
        self.handshake_complete = True
        self.accepted = response.status == 101
        self._process()
        if self.accepted:
            self._start_keepalive()

    # ------------------------------------------------------------------ keepalive

    def _start_keepalive(self) -> None:
        self.keepalive_mark = self.core.bytes_received
        if self.ping_interval:
            self.keepalive_timer = self.loop.call_later(self.ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        """Ping when nothing arrived for ``ping_interval``; fail with 1011 when nothing at
        all arrived within ``ping_timeout`` of a ping (any traffic counts, as in
        wskit.asyncio)."""
        self.keepalive_timer = None
        if self.core.state is not State.OPEN or not self.ping_interval:
            return
        received = self.core.bytes_received
        delay = self.ping_interval
        if self.ping_outstanding:
            self.ping_outstanding = False
            if received == self.keepalive_mark:
                self.logger.info("WebSocket keepalive ping timeout")
                self.core.fail(1011, "keepalive ping timeout")
                self._process()
                return
        elif received == self.keepalive_mark:
            self.core.send_ping(secrets.token_bytes(4))
            self._process()
            if self.ping_timeout is not None:
                self.ping_outstanding = True
                delay = self.ping_timeout
        self.keepalive_mark = received
        self.keepalive_timer = self.loop.call_later(delay, self._keepalive)


def run(app: Any, *, max_fragments: int | None = DEFAULT_MAX_FRAGMENTS, **options: Any) -> None:
    """``uvicorn.run(app, **options)`` with wskit's WebSocket engine.

    ``max_fragments`` bounds the frames of one message (uvicorn has no option for it); the
    other options are uvicorn's (``host``, ``port``, ``ws_max_size``, ``ws_ping_interval``,
    ``ws_per_message_deflate``, ...).
    """
    import uvicorn  # noqa: PLC0415 - uvicorn.config is imported already; this is the same

    protocol: type[WebSocketProtocol] = WebSocketProtocol
    if max_fragments != WebSocketProtocol.max_fragments:
        protocol = type("WebSocketProtocol", (WebSocketProtocol,), {"max_fragments": max_fragments})
    uvicorn.run(app, ws=protocol, **options)

"""WebSockets in ASGI applications (Starlette, FastAPI, Quart, plain ASGI) with wskit's API.

Under ASGI the server (uvicorn, hypercorn, daphne) speaks the WebSocket protocol and hands the
application messages (``websocket.connect``, ``websocket.receive``, ``websocket.disconnect``).
This module puts wskit's connection API on top of them:

* :func:`accept` accepts the connection of an ASGI ``(scope, receive, send)`` and returns an
  :class:`AsgiConnection`: ``recv``, ``send``, ``close``, ``async for``, ``subprotocol``,
  ``request``, with wskit's message size limit;
* :func:`app` mounts a wskit handler (``async def handler(connection)``) as an ASGI app.

Compression and the frame-level checks are the ASGI server's here; to run them on wskit's own
core, serve the app under uvicorn with wskit's engine (:mod:`wskit.integrations.uvicorn`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from wskit.abc import Data
from wskit.core.events import Request
from wskit.core.headers import Headers, HeadersLike
from wskit.core.limits import DEFAULT_MAX_MESSAGE_SIZE
from wskit.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    IntegrationError,
    PayloadTooBig,
)

__all__ = ["AsgiConnection", "accept", "app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
SelectSubprotocol = Callable[[Request, Sequence[str]], "str | None"]

#: Seconds close() waits for the server to report the end of the closing handshake.
DEFAULT_CLOSE_TIMEOUT = 10.0

logger = logging.getLogger("wskit.server")

_OK_CODES = (1000, 1001, 1005)


def scope_request(scope: Scope) -> Request:
    """The opening handshake's request, rebuilt from an ASGI websocket ``scope``."""
    path = scope.get("raw_path") or scope.get("path", "/").encode()
    query = scope.get("query_string", b"")
    target = (path + (b"?" + query if query else b"")).decode("latin-1")
    headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]])
    client = scope.get("client")
    return Request(target, headers, remote_address=tuple(client) if client else None)


class AsgiConnection:
    """One WebSocket connection of an ASGI server, with wskit's connection API.

    Made by :func:`accept`. ``recv()`` returns ``str`` or ``bytes`` and raises
    :class:`~wskit.exceptions.ConnectionClosedOK` / ``ConnectionClosedError`` once the client
    left; a message over ``max_size`` closes the connection with 1009.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        subprotocol: str | None,
        max_size: int | None,
        close_timeout: float | None,
    ) -> None:
        self.scope = scope
        self.request = scope_request(scope)
        self.subprotocol = subprotocol
        self.max_size = max_size
        self.close_timeout = close_timeout
        self._receive = receive
        self._send = send
        self._closed: ConnectionClosed | None = None
        self._close_sent: int | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def remote_address(self) -> Any:
        return self.request.remote_address

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary."""
        if self._closed is not None:
            raise self._closed
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            raise self._set_closed(message.get("code", 1005), message.get("reason") or "")
        if kind != "websocket.receive":
            raise IntegrationError(f"unexpected ASGI message {kind!r}")
        text = message.get("text")
        data: Data = text if text is not None else message.get("bytes") or b""
        size = len(data.encode()) if isinstance(data, str) else len(data)
        if self.max_size is not None and size > self.max_size:
            # RFC 6455 7.4.1: 1009, "a message that is too big for it to process".
            await self._send_close(1009, "message too big")
            closed = self._set_closed(1006, "", 1009)
            closed.__cause__ = PayloadTooBig(f"message of {size} bytes exceeds {self.max_size}")
            raise closed
        return data

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    async def send(self, message: Data) -> None:
        """Send ``message``: ``str`` as text, bytes-like as binary."""
        if self._closed is not None or self._close_sent is not None:
            raise self._closed or ConnectionClosedOK(1005, "", self._close_sent)
        if isinstance(message, str):
            event: Message = {"type": "websocket.send", "text": message}
        elif isinstance(message, (bytes, bytearray, memoryview)):
            event = {"type": "websocket.send", "bytes": bytes(message)}
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        try:
            await self._send(event)
        except (OSError, RuntimeError) as exc:  # the servers' ways of saying "disconnected"
            raise self._set_closed(1006, "") from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; wait (at most ``close_timeout``) until the
        server reports the end of the connection."""
        if self._closed is not None:
            return
        if self._close_sent is None:
            await self._send_close(code, reason)
        try:
            await asyncio.wait_for(self._drain(), self.close_timeout)
        except asyncio.TimeoutError:
            self._set_closed(1006, "")

    async def _drain(self) -> None:
        """Read (and drop) what comes until the server reports the disconnect."""
        while self._closed is None:
            try:
                await self.recv()
            except ConnectionClosed:
                return

    async def _send_close(self, code: int, reason: str) -> None:
        self._close_sent = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except (OSError, RuntimeError):
            self._set_closed(1006, "")

    def _set_closed(self, code: int, reason: str, sent: int | None = None) -> ConnectionClosed:
        self.close_code, self.close_reason = code, reason
        sent = self._close_sent if sent is None else sent
        cls = ConnectionClosedOK if code in _OK_CODES else ConnectionClosedError
        self._closed = cls(code, reason, sent)
        return self._closed


async def accept(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    extra_headers: HeadersLike | None = None,
    max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> AsgiConnection:
    """Accept the WebSocket connection of an ASGI ``websocket`` scope.

    The subprotocol is ``select_subprotocol(request, offered)`` when given, else the first
    one the client offers that is in ``subprotocols``. Raises
    :class:`~wskit.exceptions.IntegrationError` for a scope that is not a WebSocket one, and
    :class:`~wskit.exceptions.ConnectionClosedError` if the client left first.
    """
    if scope.get("type") != "websocket":
        raise IntegrationError(f"not a WebSocket scope: {scope.get('type')!r}")
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise ConnectionClosedError(message.get("code", 1006), message.get("reason") or "")
    if message["type"] != "websocket.connect":
        raise IntegrationError(f"expected websocket.connect, got {message['type']!r}")
    offered = [str(p) for p in scope.get("subprotocols", ())]
    request = scope_request(scope)
    if select_subprotocol is not None:
        chosen = select_subprotocol(request, offered) if offered else None
    else:
        chosen = next((p for p in offered if p in (subprotocols or ())), None)
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in Headers(extra_headers or ()).items()
    ]
    await send({"type": "websocket.accept", "subprotocol": chosen, "headers": headers})
    return AsgiConnection(
        scope,
        receive,
        send,
        subprotocol=chosen,
        max_size=max_size,
        close_timeout=close_timeout,
    )


def app(
    handler: Callable[[AsgiConnection], Awaitable[None]],
    *,
    fallback: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
    **options: Any,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI application that runs ``handler(connection)`` for every WebSocket
    connection: ``uvicorn module:app`` where ``app = wskit.integrations.asgi.app(handler)``.

    The connection is closed with 1000 when the handler returns and 1011 when it raises (the
    error is logged). ``options`` go to :func:`accept`. Other scopes go to ``fallback`` (an
    ASGI app: the rest of your site), else HTTP gets 404 and lifespan events are answered.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind != "websocket":
            if fallback is not None:
                await fallback(scope, receive, send)
            elif kind == "http":
                await _not_found(send)
            elif kind == "lifespan":
                await _lifespan(receive, send)
            return
        try:
            connection = await accept(scope, receive, send, **options)
        except ConnectionClosed:
            return  # the client left before the handshake ended
        code = 1000
        try:
            await handler(connection)
        except ConnectionClosed:
            return  # the client left: nothing more to send
        except Exception:
            logger.exception("connection handler failed")
            code = 1011
        await connection.close(code)

    return asgi


async def _not_found(send: Send) -> None:
    body = b"Not Found: this endpoint speaks WebSocket only.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

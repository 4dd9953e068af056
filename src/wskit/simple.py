"""simple-websocket's API on wskit: ``from wskit.simple import Server, ConnectionClosed``.

The classes, methods and parameters of simple-websocket, so that code written for it runs on
wskit by changing the import: :class:`Server` (WSGI), :class:`Client` (threads),
:class:`AioServer` (aiohttp, ASGI, a raw socket) and :class:`AioClient` (asyncio), with
``receive(timeout)``, ``send(data)``, ``close(reason, message)``, ``subprotocol`` and
``choose_subprotocol(request)``, and the exceptions :class:`ConnectionClosed` and
:class:`ConnectionError`. Underneath they are wskit connections (:mod:`wskit.sync`,
:mod:`wskit.asyncio`), so the protocol is wskit's, with its limits.

Where wskit differs, on purpose (docs/simple.md lists it all):

* ``max_message_size=None`` means wskit's default limit (1 MiB), not "unlimited": a peer
  cannot make a server buffer without bound. Pass a number for another limit; a message over
  it closes the connection with 1009.
* ``ping_interval`` pings when the peer is silent for that long and closes the connection
  (1011) if it stays silent as long again.
* The client offers permessage-deflate, like the server.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import wskit.asyncio
import wskit.sync
from wskit.abc import Data
from wskit.core.events import Request
from wskit.core.limits import DEFAULT_MAX_MESSAGE_SIZE
from wskit.exceptions import ConnectionClosed as WskitConnectionClosed
from wskit.exceptions import InvalidHandshake, InvalidStatus, WebSocketError
from wskit.integrations import aiohttp as aiohttp_integration
from wskit.integrations import asgi as asgi_integration
from wskit.integrations import wsgi

__all__ = [
    "AioClient",
    "AioServer",
    "Client",
    "CloseReason",
    "ConnectionClosed",
    "ConnectionError",
    "Server",
]


class CloseReason:
    """The close codes simple-websocket names (RFC 6455 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXT = 1010
    INTERNAL_ERROR = 1011


class ConnectionClosed(WebSocketError):
    """The connection is closed: ``reason`` is the close code received, ``message`` the
    close reason (simple-websocket's names)."""

    def __init__(self, reason: int = CloseReason.NO_STATUS_RCVD, message: str | None = None):
        self.reason = reason
        self.message = message
        super().__init__(f"Connection closed: {reason} {message or ''}".rstrip())


class ConnectionError(WebSocketError):  # simple-websocket's name, shadowing the builtin
    """The connection could not be opened; ``status_code`` is the server's HTTP answer, when
    there was one."""

    def __init__(self, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(f"Connection error: {status_code}")


def _closed(exc: WskitConnectionClosed) -> ConnectionClosed:
    return ConnectionClosed(exc.code, exc.reason)


def _max_size(max_message_size: int | None) -> int:
    return DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size


class _State:
    """The connection's state, with simple-websocket's names (every class here)."""

    ws: wskit.sync.Connection | wskit.asyncio.Connection | asgi_integration.AsgiConnection

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the opening handshake, if any."""
        return self.ws.subprotocol

    @property
    def connected(self) -> bool:
        """True until the connection closes."""
        return self.ws.close_code is None

    @property
    def close_reason(self) -> int:
        """The close code received (1005 if none was, or while the connection is open)."""
        code = self.ws.close_code
        return CloseReason.NO_STATUS_RCVD if code is None else code

    @property
    def close_message(self) -> str | None:
        """The close reason received, if any."""
        return self.ws.close_reason or None


class _ChoosesSubprotocol:
    """simple-websocket's subprotocol choice (both servers)."""

    subprotocols: list[str]

    def choose_subprotocol(self, request: Request) -> str | None:
        """The subprotocol to use: by default the first one the client offers that is in
        ``subprotocols``. Override it to choose otherwise."""
        for protocol in request.subprotocols:
            if protocol in self.subprotocols:
                return protocol
        return None

    def _select_subprotocol(self, connection: Any, offered: Sequence[str]) -> str | None:
        return self.choose_subprotocol(connection.request)


class Base(_State):
    """What the blocking server and client share: ``receive``, ``send``, ``close``."""

    ws: wskit.sync.Connection

    def send(self, data: Data) -> None:
        """Send ``data``: bytes as a binary message, anything else as text."""
        message: Data = data if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
        try:
            self.ws.send(message)
        except WskitConnectionClosed as exc:
            raise _closed(exc) from None

    @overload
    def receive(self, timeout: None = None) -> Data: ...
    @overload
    def receive(self, timeout: float) -> Data | None: ...
    def receive(self, timeout: float | None = None) -> Data | None:
        """The next message (bytes or str), or None when ``timeout`` seconds pass first
        (``0``: do not wait). Raises :class:`ConnectionClosed` once the connection is closed
        and every message received before was returned."""
        try:
            return self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except WskitConnectionClosed as exc:
            raise _closed(exc) from None

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection with code ``reason`` (1000) and text ``message``."""
        self.ws.close(CloseReason.NORMAL_CLOSURE if reason is None else reason, message or "")


class Server(_ChoosesSubprotocol, Base):
    """The server side of a WebSocket connection inside a WSGI request (Flask, ...).

    Create it with :meth:`accept`. Works under the servers that hand their sockets over:
    Werkzeug, gunicorn (sync, gthread, gevent workers), gevent and eventlet
    (:mod:`wskit.integrations.wsgi`); others raise
    :class:`~wskit.exceptions.IntegrationError`.
    """

    def __init__(  # noqa: PLR0917 - simple-websocket's positional signature
        self,
        environ: Mapping[str, Any],
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
        thread_class: Callable[..., Any] | None = None,
        event_class: Callable[[], Any] | None = None,
        selector_class: Callable[[], selectors.BaseSelector] | None = None,
    ) -> None:
        self.environ = environ
        self.subprotocols = _protocol_list(subprotocols)
        _, self.mode = wsgi.connection_socket(environ)
        options: dict[str, Any] = {
            "read_size": max(receive_bytes, 4096),
            "max_size": _max_size(max_message_size),
            "select_subprotocol": self._select_subprotocol,
            "ping_interval": ping_interval,
            "ping_timeout": ping_interval,
        }
        for name, value in (
            ("thread_class", thread_class),
            ("event_class", event_class),
            ("selector_class", selector_class),
        ):
            if value is not None:
                options[name] = value
        try:
            self.ws = wsgi.accept(environ, **options)
        except InvalidHandshake as exc:
            raise ConnectionError(exc.status) from exc

    @classmethod
    def accept(cls, environ: Mapping[str, Any], **kwargs: Any) -> Server:
        """Accept the WebSocket connection of the WSGI request ``environ``."""
        return cls(environ, **kwargs)


class Client(Base):
    """A blocking WebSocket client. Create it with :meth:`connect`."""

    def __init__(  # noqa: PLR0917 - simple-websocket's positional signature
        self,
        url: str,
        subprotocols: str | Sequence[str] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
        ssl_context: ssl_module.SSLContext | None = None,
        thread_class: Callable[..., Any] | None = None,
        event_class: Callable[[], Any] | None = None,
    ) -> None:
        if isinstance(subprotocols, str):
            subprotocols = [subprotocols]
        extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        try:
            self.ws = wskit.sync.connect(
                url,
                subprotocols=subprotocols or (),
                extra_headers=extra,
                ssl=ssl_context if url.startswith("wss:") else None,
                read_size=max(receive_bytes, 4096),
                max_size=_max_size(max_message_size),
                thread_class=thread_class,
                event_class=event_class,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
            )
        except InvalidStatus as exc:
            raise ConnectionError(exc.response.status) from exc
        except InvalidHandshake as exc:
            raise ConnectionError() from exc

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> Client:
        """Connect to ``url`` (``ws://`` or ``wss://``); raise :class:`ConnectionError` if
        the server refuses."""
        return cls(url, **kwargs)


class AioBase(_State):
    """What the asyncio server and client share: ``receive``, ``send``, ``close``."""

    ws: wskit.asyncio.Connection | asgi_integration.AsgiConnection

    async def send(self, data: Data) -> None:
        """Send ``data``: bytes as a binary message, anything else as text."""
        message: Data = data if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
        try:
            await self.ws.send(message)
        except WskitConnectionClosed as exc:
            raise _closed(exc) from None

    @overload
    async def receive(self, timeout: None = None) -> Data: ...
    @overload
    async def receive(self, timeout: float) -> Data | None: ...
    async def receive(self, timeout: float | None = None) -> Data | None:
        """The next message (bytes or str), or None when ``timeout`` seconds pass first
        (``0``: only a message already received). Raises :class:`ConnectionClosed` once the
        connection is closed and every message received before was returned. A timeout
        loses nothing: a message that arrives later is the next call's."""
        try:
            if timeout is None:
                return await self.ws.recv()
            if timeout > 0:
                try:
                    return await asyncio.wait_for(self.ws.recv(), timeout)
                except asyncio.TimeoutError:
                    return None
            # No waiting: one step of recv(), which returns a message already there.
            task = asyncio.ensure_future(self.ws.recv())
            await asyncio.sleep(0)
            if task.done():
                return task.result()
            task.cancel()
            try:
                return await task  # it may have finished meanwhile: keep its message
            except asyncio.CancelledError:
                return None
        except WskitConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection with code ``reason`` (1000) and text ``message``."""
        code = CloseReason.NORMAL_CLOSURE if reason is None else reason
        await self.ws.close(code, message or "")


class AioServer(_ChoosesSubprotocol, AioBase):
    """The server side of a WebSocket connection in an asyncio web app: an aiohttp route,
    an ASGI app, or a raw socket. Create it with :meth:`accept`."""

    def __init__(self, subprotocols: str | Sequence[str] | None = None) -> None:
        self.subprotocols = _protocol_list(subprotocols)
        self.mode = "unknown"

    @classmethod
    async def accept(  # noqa: PLR0917 - simple-websocket's positional signature
        cls,
        aiohttp: Any = None,
        asgi: tuple[Any, Any, Any] | None = None,
        sock: socket.socket | None = None,
        headers: Mapping[str, str] | None = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
    ) -> AioServer:
        """Accept the WebSocket connection of an aiohttp ``request``, of an ASGI
        ``(scope, receive, send)``, or of a connected ``sock`` whose request ``headers``
        were already read (as a dict). Exactly one of the three."""
        if sum(x is not None for x in (aiohttp, asgi, sock)) != 1:
            raise ValueError("pass exactly one of aiohttp, asgi or sock")
        if sock is not None and headers is None:
            raise ValueError("sock needs the request's headers")
        self = cls(subprotocols)
        max_size = _max_size(max_message_size)
        if asgi is not None:
            self.mode = "asgi"
            scope, receive, send = asgi
            self.ws = await asgi_integration.accept(
                scope,
                receive,
                send,
                select_subprotocol=lambda request, offered: self.choose_subprotocol(request),
                max_size=max_size,
            )
            return self
        options: dict[str, Any] = {
            "select_subprotocol": self._select_subprotocol,
            "max_size": max_size,
            "ping_interval": ping_interval,
            "ping_timeout": ping_interval,
        }
        try:
            if aiohttp is not None:
                self.mode = "aiohttp"
                self.ws = await aiohttp_integration.accept(aiohttp, **options)
            else:
                self.mode = "socket"
                assert headers is not None
                head = "GET / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                self.ws = await wskit.asyncio.accept(
                    sock, (head + "\r\n").encode("latin-1"), **options
                )
        except InvalidHandshake as exc:
            raise ConnectionError(exc.status) from exc
        return self


class AioClient(AioBase):
    """An asyncio WebSocket client. Create it with :meth:`connect`."""

    @classmethod
    async def connect(  # noqa: PLR0917 - simple-websocket's positional signature
        cls,
        url: str,
        subprotocols: str | Sequence[str] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | None = None,
        ssl_context: ssl_module.SSLContext | None = None,
        thread_class: Any = None,
        event_class: Any = None,
    ) -> AioClient:
        """Connect to ``url`` (``ws://`` or ``wss://``); raise :class:`ConnectionError` if
        the server refuses. (``thread_class`` and ``event_class`` are accepted for
        simple-websocket's signature; asyncio needs neither.)"""
        if isinstance(subprotocols, str):
            subprotocols = [subprotocols]
        extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        self = cls()
        try:
            self.ws = await wskit.asyncio.connect(
                url,
                subprotocols=subprotocols or (),
                extra_headers=extra,
                ssl=ssl_context if url.startswith("wss:") else None,
                max_size=_max_size(max_message_size),
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
            )
        except InvalidStatus as exc:
            raise ConnectionError(exc.response.status) from exc
        except InvalidHandshake as exc:
            raise ConnectionError() from exc
        return self


def _protocol_list(subprotocols: str | Sequence[str] | None) -> list[str]:
    """simple-websocket takes one subprotocol as a string, or several in a list."""
    if isinstance(subprotocols, str):
        return [subprotocols]
    return list(subprotocols or [])

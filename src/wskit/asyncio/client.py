"""The asyncio WebSocket client: ``connect(url)``."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl as ssl_module
from collections.abc import Sequence
from typing import Any

from wskit import _zlib
from wskit.abc import CallbackHandler
from wskit.asyncio._opener import Opener
from wskit.asyncio.connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Connection,
)
from wskit.core.connection import ClientConnection
from wskit.core.extensions import (
    ClientExtensionFactory,
    ClientPerMessageDeflateFactory,
    extension_factories,
)
from wskit.core.handshake import USER_AGENT
from wskit.core.headers import HeadersLike
from wskit.core.limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE, Limits
from wskit.core.uri import parse_uri
from wskit.exceptions import InvalidHandshake

__all__ = ["DEFAULT_OPEN_TIMEOUT", "WebSocketClientConnection", "connect"]

#: Seconds allowed for TCP connect, TLS and the opening handshake together.
DEFAULT_OPEN_TIMEOUT = 10.0

logger = logging.getLogger("wskit.client")


class WebSocketClientConnection(Connection):
    """A client-side connection (see :class:`~wskit.asyncio.connection.Connection`)."""

    __slots__ = ()

    core: ClientConnection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.core.send_request()
        self._write_pending()


class connect(Opener[WebSocketClientConnection]):  # used as a function (async with / await)
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    ``async with connect("ws://127.0.0.1:8765/") as ws: await ws.send("hi")``, or
    ``ws = await connect(...)`` and ``await ws.close()`` later.

    ``ssl`` is an ``SSLContext`` for ``wss://`` (default: ``ssl.create_default_context()``);
    ``extra_headers``, ``user_agent`` (``None`` sends none), ``origin`` and ``subprotocols`` go
    into the request; ``compression="deflate"`` offers permessage-deflate (``None``: no
    compression). ``open_timeout`` bounds connect + handshake (raises ``TimeoutError``).
    ``max_size``/``max_fragments``/``limits`` bound what the server may send, ``max_queue`` the
    messages buffered before reading pauses, ``fragment_size`` the frames sent;
    ``ping_interval``/``ping_timeout`` drive keepalive (``None`` disables it).
    Handshake failures raise :class:`~wskit.exceptions.InvalidHandshake`
    (:class:`~wskit.exceptions.InvalidStatus` when the server refused, with its response).
    Other keyword arguments go to ``loop.create_connection``; ``sock`` connects over an
    existing socket, ``unix_path`` over a Unix socket. ``handler``, a class-based handler
    (a :class:`wskit.handlers.Handler` subclass), receives the messages in its hooks instead
    of ``recv()``; the instance is ``connection.handler``.
    """

    def __init__(
        self,
        uri: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        extra_headers: HeadersLike | None = None,
        user_agent: str | None = USER_AGENT,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        compression: str | Sequence[ClientExtensionFactory] | None = "deflate",
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        limits: Limits | None = None,
        fragment_size: int | None = None,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        unix_path: str | None = None,
        handler: type[CallbackHandler] | None = None,
        logger: logging.Logger | None = None,
        **kwargs: Any,
    ) -> None:
        self.wsuri = parse_uri(uri)
        if limits is None:
            limits = Limits.for_size(max_size, max_fragments=max_fragments)
        self._core_args: dict[str, Any] = {
            "extensions": extension_factories(
                compression,
                functools.partial(ClientPerMessageDeflateFactory, zlib_module=_zlib.module),
            ),
            "subprotocols": subprotocols,
            "extra_headers": extra_headers,
            "origin": origin,
            "limits": limits,
            "fragment_size": fragment_size,
            "user_agent": user_agent,
        }
        if self.wsuri.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        elif not self.wsuri.secure and ssl is not None:
            raise ValueError("ssl= is only for wss:// URIs")
        self._ssl = ssl
        self._open_timeout = open_timeout
        self._unix_path = unix_path
        self._connection_kwargs: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "logger": logger or globals()["logger"],
            "handler": handler,
        }
        self._kwargs = kwargs
        self.connection: WebSocketClientConnection | None = None

    def _protocol(self) -> WebSocketClientConnection:
        core = ClientConnection(self.wsuri, **self._core_args)
        connection = WebSocketClientConnection(core, **self._connection_kwargs)
        connection._opened_waiter = connection.loop.create_future()
        return connection

    async def _connect(self) -> WebSocketClientConnection:
        loop = asyncio.get_running_loop()
        kwargs = dict(self._kwargs)
        if self._ssl is not None:
            kwargs.setdefault("server_hostname", self.wsuri.host)
        if self._unix_path is not None:
            _, protocol = await loop.create_unix_connection(
                self._protocol, self._unix_path, ssl=self._ssl, **kwargs
            )
        elif "sock" in kwargs:
            _, protocol = await loop.create_connection(self._protocol, ssl=self._ssl, **kwargs)
        else:
            _, protocol = await loop.create_connection(
                self._protocol, self.wsuri.host, self.wsuri.port, ssl=self._ssl, **kwargs
            )
        try:
            assert protocol._opened_waiter is not None
            await asyncio.shield(protocol._opened_waiter)
        except asyncio.CancelledError:
            protocol.transport.abort()
            raise
        # The server may answer 101 and close at once: the handshake still succeeded, and the
        # messages and Close frame that came with it are there for recv().
        if not protocol.opened:
            protocol.transport.abort()
            cause = protocol.core.cause
            if isinstance(cause, InvalidHandshake):
                raise cause
            raise InvalidHandshake("connection closed during the opening handshake") from cause
        return protocol

    async def _open(self) -> WebSocketClientConnection:
        try:
            if self._open_timeout is None:
                connection = await self._connect()
            else:
                connection = await asyncio.wait_for(self._connect(), self._open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("timed out during the opening handshake") from None
        self.connection = connection
        return connection

    async def _close(self, connection: WebSocketClientConnection) -> None:
        await connection.close()

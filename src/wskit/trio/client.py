"""The Trio WebSocket client: ``connect(url)``."""

from __future__ import annotations

import functools
import logging
import ssl as ssl_module
from collections.abc import Generator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import trio

from wskit import _zlib
from wskit.core.connection import ClientConnection as CoreClientConnection
from wskit.core.connection import State
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
from wskit.trio.connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    READ_SIZE,
    Connection,
    _timeout,
)

__all__ = ["DEFAULT_OPEN_TIMEOUT", "WebSocketClientConnection", "connect"]

#: Seconds allowed for TCP connect, TLS and the opening handshake together.
DEFAULT_OPEN_TIMEOUT = 10.0

logger = logging.getLogger("wskit.client")


class WebSocketClientConnection(Connection):
    """A client-side connection (see :class:`~wskit.trio.connection.Connection`)."""

    core: CoreClientConnection


class connect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    ``async with connect("ws://127.0.0.1:8765/") as ws: await ws.send("hi")``: the
    connection's background task lives in a nursery the block owns, and leaving the block
    closes the connection (the block's exception propagates as it is, never wrapped in an
    ExceptionGroup). Or ``ws = await connect(uri, nursery=nursery)``: the background task runs
    in ``nursery``, and ``await ws.aclose()`` closes it.

    The options are :func:`wskit.asyncio.connect`'s: ``ssl`` (an ``SSLContext`` for
    ``wss://``, a default one otherwise), ``server_hostname``, ``extra_headers``,
    ``user_agent``, ``origin``, ``subprotocols``, ``compression``, ``open_timeout`` (TCP
    connect, TLS and the handshake together: :class:`TimeoutError`), ``ping_interval``,
    ``ping_timeout``, ``close_timeout``, ``max_size``, ``max_fragments``, ``limits``,
    ``fragment_size``, ``max_queue``, ``unix_path``; ``stream`` is a connected Trio stream to
    use instead of connecting; ``read_size`` the bytes asked of each read. Raises
    :class:`~wskit.exceptions.InvalidHandshake` (``InvalidStatus`` for a non-101 answer) when
    the server refuses, :class:`OSError` when it cannot be reached.
    """

    def __init__(
        self,
        uri: str,
        *,
        nursery: trio.Nursery | None = None,
        stream: trio.abc.Stream | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        unix_path: str | None = None,
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
        read_size: int = READ_SIZE,
        logger: logging.Logger | None = None,
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
        self._server_hostname = server_hostname
        self._nursery = nursery
        self._stream = stream
        self._unix_path = unix_path
        self._open_timeout = open_timeout
        self._read_size = read_size
        self._connection_kwargs: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "read_size": read_size,
            "logger": logger or globals()["logger"],
        }
        self.connection: WebSocketClientConnection | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None

    async def _open_stream(self) -> trio.abc.Stream:
        if self._stream is not None:
            stream: trio.abc.Stream = self._stream
        elif self._unix_path is not None:
            stream = await trio.open_unix_socket(self._unix_path)
        else:
            stream = await trio.open_tcp_stream(self.wsuri.host, self.wsuri.port)
        if self._ssl is not None:
            stream = trio.SSLStream(
                stream,
                self._ssl,
                server_hostname=self._server_hostname or self.wsuri.host,
                https_compatible=True,
            )
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return stream

    async def _handshake(self, stream: trio.abc.Stream) -> WebSocketClientConnection:
        core = CoreClientConnection(self.wsuri, **self._core_args)
        connection = WebSocketClientConnection(stream, core, **self._connection_kwargs)
        core.send_request()
        await stream.send_all(b"".join(core.data_to_send()))
        while core.state is State.CONNECTING:
            try:
                data = await stream.receive_some(self._read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if data:
                core.receive_data(data)
            else:
                core.receive_eof()
        # The server may answer 101 and close at once: the handshake still succeeded, and
        # the messages and Close frame that came with it are there for recv().
        cause = core.cause
        if isinstance(cause, InvalidHandshake):
            raise cause
        if core.response is None or core.response.status != 101:  # pragma: no cover
            raise InvalidHandshake("connection closed during the opening handshake")
        return connection

    async def _connect(self, nursery: trio.Nursery) -> WebSocketClientConnection:
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(_timeout(self._open_timeout)):
                stream = await self._open_stream()
                connection = await self._handshake(stream)
            await nursery.start(connection._run)
        except trio.TooSlowError:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise TimeoutError("timed out during the opening handshake") from None
        except BaseException:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise
        self.connection = connection
        return connection

    def __await__(self) -> Generator[Any, None, WebSocketClientConnection]:
        if self._nursery is None:
            raise TypeError(
                "await connect(...) needs nursery=: the connection's task must live in a "
                "nursery you own (or use async with connect(...))"
            )
        return self._connect(self._nursery).__await__()

    async def __aenter__(self) -> WebSocketClientConnection:
        if self._nursery is not None:
            return await self._connect(self._nursery)
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            connection = await self._connect(nursery)
        except BaseException:
            await manager.__aexit__(None, None, None)
            raise
        self._nursery_manager = manager
        return connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self.connection
        manager = self._nursery_manager
        try:
            if connection is not None:
                await connection.aclose()
        finally:
            if manager is not None:
                self._nursery_manager = None
                # Exit the nursery cleanly: the block's own exception propagates as it is,
                # not inside an ExceptionGroup.
                await manager.__aexit__(None, None, None)

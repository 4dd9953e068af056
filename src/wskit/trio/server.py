"""The Trio WebSocket server: ``serve(handler, host, port)`` and ``accept(nursery, stream)``."""

from __future__ import annotations

import functools
import http
import inspect
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import trio

from wskit import _zlib
from wskit.core.connection import ServerConnection as CoreServerConnection
from wskit.core.connection import State
from wskit.core.events import Request, Response
from wskit.core.extensions import (
    ServerExtensionFactory,
    ServerPerMessageDeflateFactory,
    extension_factories,
)
from wskit.core.headers import HeadersLike
from wskit.core.limits import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    LINGER_TIMEOUT,
    Limits,
)
from wskit.exceptions import ConnectionClosed, InvalidHandshake, LocalProtocolError
from wskit.trio.connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    READ_SIZE,
    Connection,
    _timeout,
)

__all__ = [
    "DEFAULT_OPEN_TIMEOUT",
    "Server",
    "WebSocketServerConnection",
    "accept",
    "serve",
]

#: Seconds a client has to complete TLS and the opening handshake (websockets: 10 s).
DEFAULT_OPEN_TIMEOUT = 10.0

#: What ``serve`` runs per connection, in a task of its own.
Handler = Callable[["WebSocketServerConnection"], Awaitable[None]]
#: May return a Response (or an awaitable of one) to answer with plain HTTP instead.
ProcessRequest = Callable[
    ["WebSocketServerConnection", Request], "Response | Awaitable[Response | None] | None"
]
SelectSubprotocol = Callable[["WebSocketServerConnection", Sequence[str]], "str | None"]

logger = logging.getLogger("wskit.server")


class WebSocketServerConnection(Connection):
    """A server-side connection (see :class:`~wskit.trio.connection.Connection`).

    Besides what :func:`serve` does with it, the opening handshake can be run step by step
    (as trio-websocket's request objects need): :meth:`receive_request`, then
    :meth:`send_response` with ``core.accept(request, ...)`` or :meth:`respond`.
    """

    core: CoreServerConnection

    def __init__(
        self,
        server: Server,
        stream: trio.abc.Stream,
        core: CoreServerConnection,
        **kwargs: Any,
    ) -> None:
        super().__init__(stream, core, **kwargs)
        self.server = server

    @property
    def request(self) -> Request:
        """The opening handshake's request: path, query, headers, remote address."""
        request = self.core.request
        if request is None:
            raise RuntimeError("no request received yet")
        return request

    def respond(self, status: int, text: str = "", headers: HeadersLike | None = None) -> Response:
        """Build an HTTP response for ``process_request`` to return (health checks, 401...)."""
        body = text or f"{http.HTTPStatus(status).phrase}\n"
        return self.core.reject(status, body, headers)

    async def receive_request(self) -> Request | None:
        """Read until the opening handshake's request is in; None when the client sent an
        invalid head (the core's 400/431/505 is then written) or went away."""
        core = self.core
        stream = self.stream
        while core.state is State.CONNECTING and core.request is None:
            try:
                data = await stream.receive_some(self.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if data:
                core.receive_data(data)
            else:
                core.receive_eof()
        request = core.request
        if request is None or core.state is not State.CONNECTING:
            await self._write_handshake()  # the core's answer to a bad head, if any
            return None
        object.__setattr__(request, "remote_address", self.remote_address)
        return request

    async def send_response(self, response: Response) -> bool:
        """Send the handshake's answer: True when it was the 101 that opened the connection.
        Start :meth:`_run` (``nursery.start``) after a True."""
        core = self.core
        if core.state is not State.CONNECTING:
            return False
        core.send_response(response)
        await self._write_handshake()
        request = core.request
        if response.status != 101:
            if request is not None:
                self.logger.info("%s %s -> %d", request.method, request.target, response.status)
            return False
        return True

    async def _write_handshake(self) -> None:
        data = self.core.data_to_send()
        if data:
            try:
                await self.stream.send_all(b"".join(data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.core.receive_eof()

    async def _handshake(self) -> bool:
        """Read the request and answer it; True when the connection opened."""
        request = await self.receive_request()
        if request is None:
            return False
        server = self.server
        response: Response | None = None
        if server.process_request is not None:
            try:
                result = server.process_request(self, request)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None and not isinstance(result, Response):
                    raise TypeError(f"process_request returned {type(result).__name__}")
                response = result
            except Exception:
                response = self._internal_error()
        if response is None:
            response = self._accept(request)
        try:
            return await self.send_response(response)
        except LocalProtocolError:  # e.g. a 101 that accept() did not make
            if self.core.response is not None:
                raise
            return await self.send_response(self._internal_error())

    def _accept(self, request: Request) -> Response:
        """The answer when ``process_request`` gave none: check the origin, choose the
        subprotocol, accept (or refuse an invalid upgrade)."""
        server = self.server
        core = self.core
        try:
            if server.origins is not None and request.origin not in server.origins:
                return core.reject(403, "Origin not allowed.\n")
            if server.select_subprotocol is not None:
                offered = request.subprotocols
                chosen = server.select_subprotocol(self, offered) if offered else None
                return core.accept(request, subprotocol=chosen, extra_headers=server.extra_headers)
            return core.accept(request, extra_headers=server.extra_headers)
        except Exception:
            return self._internal_error()

    def _internal_error(self) -> Response:
        self.logger.exception("opening handshake failed")
        return self.core.reject(500, "Failed to open a WebSocket connection.\n")

    async def _linger_close(self) -> None:
        """Close after a refused handshake without resetting the connection: half-close,
        then read and discard what the client still sends, at most ``LINGER_TIMEOUT``
        seconds (RFC 9112 9.6; see :data:`wskit.core.limits.LINGER_TIMEOUT`)."""
        stream = self.stream
        if not self._stream_closed and isinstance(stream, trio.abc.HalfCloseableStream):
            with trio.move_on_after(LINGER_TIMEOUT):
                try:
                    await stream.send_eof()
                    while await stream.receive_some(self.read_size):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        self._stream_closed = True
        await trio.aclose_forcefully(stream)


class Server(trio.abc.AsyncResource):
    """A running Trio WebSocket server (what ``async with serve(...)`` gives).

    ``connections`` is the set of open connections (a registry for broadcasts);
    ``listeners`` the Trio listeners; ``port`` the TCP port (useful with port 0).
    """

    def __init__(
        self,
        handler: Handler | None,
        *,
        process_request: ProcessRequest | None,
        select_subprotocol: SelectSubprotocol | None,
        subprotocols: Sequence[str] | None,
        origins: Sequence[str | None] | None,
        extra_headers: HeadersLike | None,
        extensions: list[ServerExtensionFactory],
        limits: Limits,
        fragment_size: int | None,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float | None,
        connection_kwargs: dict[str, Any],
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.select_subprotocol = select_subprotocol
        self.subprotocols = list(subprotocols or ())
        self.origins = None if origins is None else list(origins)
        self.extra_headers = extra_headers
        self.extensions = extensions
        self.limits = limits
        self.fragment_size = fragment_size
        self.ssl = ssl
        self.open_timeout = open_timeout
        self.connection_kwargs = connection_kwargs
        self.logger: logging.Logger = connection_kwargs["logger"]
        #: The open connections: handshake done, not yet closed.
        self.connections: set[WebSocketServerConnection] = set()
        #: The listeners serving (empty for a server made by :func:`accept`).
        self.listeners: list[trio.abc.Listener[Any]] = []
        self._nursery: trio.Nursery | None = None
        self._listen_scope: trio.CancelScope | None = None
        self._closing = False
        self._closed = trio.Event()

    @property
    def port(self) -> int | None:
        """The TCP port of the first listener (None for Unix sockets)."""
        for listener in self.listeners:
            sock = getattr(listener, "socket", None)
            if sock is None:
                sock = getattr(getattr(listener, "transport_listener", None), "socket", None)
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        return None

    async def serve_forever(self) -> None:
        """Wait until the server is closed (by :meth:`aclose` from another task)."""
        await self._closed.wait()

    async def aclose(self) -> None:
        """Stop listening, close every connection with 1001 (going away) and wait for them
        (each at most its ``close_timeout``); cancelled, drop them at once."""
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        self._closing = True
        self._closed.set()
        try:
            async with trio.open_nursery() as nursery:
                for connection in list(self.connections):
                    nursery.start_soon(connection.aclose, 1001, "server shutting down")
        finally:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()

    def _connection(self, stream: trio.abc.Stream) -> WebSocketServerConnection:
        core = CoreServerConnection(
            extensions=self.extensions,
            subprotocols=self.subprotocols,
            limits=self.limits,
            fragment_size=self.fragment_size,
        )
        return WebSocketServerConnection(self, stream, core, **self.connection_kwargs)

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        """One connection's task: handshake, then the handler, then the close."""
        connection = self._connection(stream)
        try:
            with trio.move_on_after(_timeout(self.open_timeout)) as scope:
                opened = await connection._handshake()
            if scope.cancelled_caught:
                self.logger.info("opening handshake timed out")
                return
            if not opened:
                await connection._linger_close()
                return
            async with trio.open_nursery() as nursery:
                await nursery.start(connection._run)
                if self._closing:
                    await connection.aclose(1001, "server shutting down")
                    return
                self.connections.add(connection)
                try:
                    await self._run_handler(connection)
                finally:
                    self.connections.discard(connection)
        except (OSError, trio.BrokenResourceError, ssl_module.SSLError) as exc:
            self.logger.info("opening handshake failed: %r", exc)
        except Exception:  # a bug: this connection ends, the server serves on
            self.logger.exception("connection failed")
        finally:
            if not connection._stream_closed:
                connection._stream_closed = True
                await trio.aclose_forcefully(stream)

    async def _run_handler(self, connection: WebSocketServerConnection) -> None:
        """Run the handler; close with 1000 when it returns, 1011 if it fails."""
        assert self.handler is not None
        code = 1000
        try:
            await self.handler(connection)
        except ConnectionClosed as exc:
            if connection.state is State.OPEN:
                # Another connection the handler used closed, not this one: a handler error.
                self.logger.exception("connection handler failed")
                code = 1011
            else:
                self.logger.debug("connection handler ended: %s", exc)
        except Exception:
            self.logger.exception("connection handler failed")
            code = 1011
        await connection.aclose(code)


class serve:
    """Start a WebSocket server; ``await handler(connection)`` runs once per connection.

    ``async with serve(handler, "127.0.0.1", 8765) as server: await server.serve_forever()``.
    The server and its connections' tasks live in a nursery the ``async with`` block owns:
    leaving the block closes every connection with 1001 and waits for them. When the handler
    returns the connection is closed with 1000; if it raises, with 1011 (logged under
    ``wskit.server``), and the server serves on.

    The options are :func:`wskit.asyncio.serve`'s: ``process_request`` (plain or async),
    ``select_subprotocol``, ``subprotocols``, ``origins``, ``extra_headers``, ``compression``,
    ``ssl``, ``open_timeout``, ``ping_interval``, ``ping_timeout``, ``close_timeout``,
    ``max_size``, ``max_fragments``, ``limits``, ``fragment_size``, ``max_queue``,
    ``unix_path``; ``read_size`` is the bytes asked of each read; ``backlog`` the listen
    backlog; ``listeners`` serves on Trio listeners made elsewhere instead of ``host:port``.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = None,
        port: int | None = None,
        *,
        unix_path: str | None = None,
        listeners: Sequence[trio.abc.Listener[Any]] | None = None,
        process_request: ProcessRequest | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str | None] | None = None,
        extra_headers: HeadersLike | None = None,
        compression: str | Sequence[ServerExtensionFactory] | None = "deflate",
        ssl: ssl_module.SSLContext | None = None,
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
        backlog: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._server = _server(
            handler,
            process_request=process_request,
            select_subprotocol=select_subprotocol,
            subprotocols=subprotocols,
            origins=origins,
            extra_headers=extra_headers,
            compression=compression,
            ssl=ssl,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=max_size,
            max_fragments=max_fragments,
            limits=limits,
            fragment_size=fragment_size,
            max_queue=max_queue,
            read_size=read_size,
            logger=logger,
        )
        self._host = host
        self._port = port
        self._unix_path = unix_path
        self._listeners = listeners
        self._backlog = backlog
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None

    async def _open_listeners(self) -> list[trio.abc.Listener[Any]]:
        if self._listeners is not None:
            listeners = list(self._listeners)
        elif self._unix_path is not None:
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(self._unix_path):
                os.unlink(self._unix_path)
            await sock.bind(self._unix_path)
            sock.listen(self._backlog or 128)
            listeners = [trio.SocketListener(sock)]
        else:
            listeners = list(
                await trio.open_tcp_listeners(
                    self._port or 0, host=self._host, backlog=self._backlog
                )
            )
        context = self._server.ssl
        if context is not None:
            listeners = [
                trio.SSLListener(listener, context, https_compatible=True) for listener in listeners
            ]
        return listeners

    async def __aenter__(self) -> Server:
        server = self._server
        server.listeners = await self._open_listeners()
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        self._nursery_manager = manager
        server._nursery = nursery
        server._listen_scope = trio.CancelScope()
        nursery.start_soon(self._listen, server, nursery)
        return server

    async def _listen(self, server: Server, nursery: trio.Nursery) -> None:
        assert server._listen_scope is not None
        with server._listen_scope:
            await trio.serve_listeners(
                server._serve_connection, server.listeners, handler_nursery=nursery
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        manager = self._nursery_manager
        assert manager is not None
        try:
            with trio.CancelScope(shield=exc_type is not None and exc_type is not trio.Cancelled):
                await self._server.aclose()
        finally:
            # Exit the nursery cleanly: the block's own exception propagates as it is, not
            # inside an ExceptionGroup.
            await manager.__aexit__(None, None, None)


async def accept(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    head: bytes = b"",
    *,
    process_request: ProcessRequest | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    subprotocols: Sequence[str] | None = None,
    origins: Sequence[str | None] | None = None,
    extra_headers: HeadersLike | None = None,
    compression: str | Sequence[ServerExtensionFactory] | None = "deflate",
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
) -> WebSocketServerConnection:
    """Run the server side of the opening handshake on a connected stream (accepted by
    your own listener); return the open connection, whose background task runs in
    ``nursery``. ``head`` is what was already read from the stream (the request head or its
    beginning). The other options are :func:`serve`'s.

    Raises :class:`~wskit.exceptions.InvalidHandshake` when the request is not a WebSocket
    upgrade the server accepts (the HTTP answer was sent and the stream closed) and
    :class:`TimeoutError` when the client does not finish within ``open_timeout``.
    """
    server = _server(
        None,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        subprotocols=subprotocols,
        origins=origins,
        extra_headers=extra_headers,
        compression=compression,
        ssl=None,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_fragments=max_fragments,
        limits=limits,
        fragment_size=fragment_size,
        max_queue=max_queue,
        read_size=read_size,
        logger=logger,
    )
    connection = server._connection(stream)
    try:
        if head:
            connection.core.receive_data(head)
        with trio.fail_after(_timeout(open_timeout)):
            opened = await connection._handshake()
        if not opened:
            core = connection.core
            response = core.response
            status = response.status if response is not None else 400
            await connection._linger_close()
            if isinstance(core.cause, InvalidHandshake):
                raise core.cause
            raise InvalidHandshake(f"the handshake was refused with HTTP {status}", status)
        await nursery.start(connection._run)
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise TimeoutError("timed out during the opening handshake") from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return connection


def _server(
    handler: Handler | None,
    *,
    compression: str | Sequence[ServerExtensionFactory] | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    close_timeout: float | None,
    max_size: int | None,
    max_fragments: int | None,
    limits: Limits | None,
    max_queue: int | None,
    read_size: int,
    logger: logging.Logger | None,
    **settings: Any,
) -> Server:
    """The :class:`Server` behind :func:`serve` and :func:`accept`."""
    if limits is None:
        limits = Limits.for_size(max_size, max_fragments=max_fragments)
    return Server(
        handler,
        extensions=extension_factories(
            compression,
            functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module),
        ),
        limits=limits,
        connection_kwargs={
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "read_size": read_size,
            "logger": logger or globals()["logger"],
        },
        **settings,
    )

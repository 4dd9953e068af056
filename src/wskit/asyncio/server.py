"""The asyncio WebSocket server: ``serve(handler, host, port)``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import http
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
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
from wskit.core.connection import ServerConnection, State
from wskit.core.events import Request, Response
from wskit.core.extensions import (
    ServerExtensionFactory,
    ServerPerMessageDeflateFactory,
    extension_factories,
)
from wskit.core.headers import HeadersLike
from wskit.core.limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE, Limits
from wskit.exceptions import ConnectionClosed, InvalidHandshake, LocalProtocolError

__all__ = ["DEFAULT_OPEN_TIMEOUT", "Server", "WebSocketServerConnection", "accept", "serve"]

#: Seconds a client has to complete the opening handshake (websockets: 10 s), so a slow or
#: silent client cannot hold a slot.
DEFAULT_OPEN_TIMEOUT = 10.0

#: What ``serve`` runs per connection: a coroutine function taking the connection, or a
#: class-based handler (:class:`wskit.handlers.Handler` subclass) instantiated per connection.
Handler = Callable[["WebSocketServerConnection"], Awaitable[None]] | type[CallbackHandler]
ProcessRequest = Callable[
    ["WebSocketServerConnection", Request], "Response | Awaitable[Response | None] | None"
]
SelectSubprotocol = Callable[["WebSocketServerConnection", Sequence[str]], "str | None"]

logger = logging.getLogger("wskit.server")


#: The handler task a coroutine runs in (tasks it starts inherit it): Server.wait_closed()
#: called from a handler does not wait for that handler.
_current_handler: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "wskit_current_handler", default=None
)


class WebSocketServerConnection(Connection):
    """A server-side connection: answers the opening handshake, then runs the handler."""

    __slots__ = ("_handler_task", "_handshake_timer", "server")

    def __init__(self, server: Server, core: ServerConnection, **kwargs: Any) -> None:
        super().__init__(core, **kwargs)
        self.server = server
        self.core: ServerConnection = core
        self._handshake_timer: asyncio.TimerHandle | None = None
        # Held so the task lives: the event loop keeps only a weak reference to tasks.
        self._handler_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._handshaking.add(self)
        if self.server.open_timeout:
            self._handshake_timer = self.loop.call_later(
                self.server.open_timeout, self._handshake_timeout
            )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.server._handshaking.discard(self)
        self.server.connections.discard(self)
        task = self._handler_task
        if task is not None and not self.opened:
            # Gone during the opening handshake (open_timeout, the client left): stop an
            # awaited process_request, which may never return (wait_closed() waits for it).
            task.cancel()

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self.core.state is State.CONNECTING:
            self.logger.info("opening handshake timed out")
            self.transport.abort()

    def _on_request(self, request: Request) -> None:
        """Answer the request, in this callback unless ``process_request`` must be awaited;
        then run a coroutine handler in a task of its own (a class-based one needs none)."""
        peer = self.remote_address
        if peer is not None:
            object.__setattr__(request, "remote_address", peer)
        process_request = self.server.process_request
        response: Response | None = None
        if process_request is not None:
            try:
                result = process_request(self, request)
            except Exception:
                response = self._internal_error()
            else:
                if inspect.isawaitable(result):
                    self._handler_task = self.server._track(self._run(request, result))
                    return
                response = result
        if response is None:
            response = self._accept(request)
        if self._answer(request, response) and self.server.coroutine_handler is not None:
            self._handler_task = self.server._track(self._run_handler())

    async def _run(self, request: Request, pending: Awaitable[Response | None]) -> None:
        """The opening handshake when ``process_request`` is a coroutine, then the handler."""
        _current_handler.set(asyncio.current_task())
        try:
            response = await pending
        except Exception:
            response = self._internal_error()
        if response is None:
            response = self._accept(request)
        if self._answer(request, response) and self.server.coroutine_handler is not None:
            await self._run_handler()

    def _internal_error(self) -> Response:
        self.logger.exception("opening handshake failed")
        return self.core.reject(500, "Failed to open a WebSocket connection.\n")

    def _accept(self, request: Request) -> Response:
        """The answer when ``process_request`` gave none: check the origin, choose the
        subprotocol, accept (or refuse an invalid upgrade)."""
        server = self.server
        try:
            if server.origins is not None and request.origin not in server.origins:
                return self.core.reject(403, "Origin not allowed.\n")
            if server.select_subprotocol is not None:
                offered = request.subprotocols
                chosen = server.select_subprotocol(self, offered) if offered else None
                return self.core.accept(
                    request, subprotocol=chosen, extra_headers=server.extra_headers
                )
            return self.core.accept(request, extra_headers=server.extra_headers)
        except Exception:
            return self._internal_error()

    def _answer(self, request: Request, response: Response) -> bool:
        """Send ``response``; True when it opened the connection."""
        server = self.server
        if self.core.state is not State.CONNECTING:
            return False  # the client went away meanwhile
        try:
            if not isinstance(response, Response):
                raise TypeError(f"process_request returned {type(response).__name__}")
            self.core.send_response(response)
        except (TypeError, LocalProtocolError):  # not a Response, a forged 101, bad headers
            response = self._internal_error()
            self.core.send_response(response)
        self._write_pending()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        server._handshaking.discard(self)
        if response.status != 101:
            self._process()
            self.logger.info("%s %s -> %d", request.method, request.target, response.status)
            return False
        server.connections.add(self)
        # Opened (and a class-based handler's on_open run) before the messages that arrived
        # right behind the request are dispatched.
        self._on_open()
        self._process()
        return True

    async def _run_handler(self) -> None:
        """Run the coroutine handler; close with 1000 when it returns, 1011 if it fails."""
        handler = self.server.coroutine_handler
        assert handler is not None
        _current_handler.set(asyncio.current_task())
        try:
            await handler(self)
        except ConnectionClosed as exc:
            if self.state is State.OPEN:
                # Another connection the handler used closed, not this one: a handler error.
                self.logger.exception("connection handler failed")
                self._close_after_handler(1011)
            else:
                # The usual way a handler learns that its client left: not an error.
                self.logger.debug("connection handler ended: %s", exc)
        except Exception:
            self.logger.exception("connection handler failed")
            self._close_after_handler(1011)
        else:
            self._close_after_handler(1000)

    def _close_after_handler(self, code: int) -> None:
        """The handler is done: close with ``code`` unless the connection is closing already
        (reading resumes if max_queue paused it, so that the client's Close is seen)."""
        self.close_nowait(code, "")

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


class Server:
    """A running WebSocket server: ``serve_forever()``, ``close()``, ``wait_closed()``.

    ``connections`` holds the open connections (a registry for broadcasting); connections
    still in the opening handshake, or answered with plain HTTP, are not in it.
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
        open_timeout: float | None,
        connection_kwargs: dict[str, Any],
    ) -> None:
        self.handler = handler
        # A class is a class-based handler, run from callbacks; anything else is awaited.
        self.handler_class: type[CallbackHandler] | None = None
        self.coroutine_handler: Callable[[WebSocketServerConnection], Awaitable[None]] | None
        if isinstance(handler, type):
            self.handler_class, self.coroutine_handler = handler, None
        else:
            self.coroutine_handler = handler
        self.process_request = process_request
        self.select_subprotocol = select_subprotocol
        self.subprotocols = list(subprotocols or ())
        self.origins = None if origins is None else list(origins)
        self.extra_headers = extra_headers
        self.extensions = extensions
        self.limits = limits
        self.fragment_size = fragment_size
        self.open_timeout = open_timeout
        self.connection_kwargs = connection_kwargs
        #: The open connections: handshake done, not yet closed (a registry for broadcasts).
        self.connections: set[WebSocketServerConnection] = set()
        self._handshaking: set[WebSocketServerConnection] = set()
        self.server: asyncio.Server | None = None
        self._port = 0
        self._closing = False
        # The coroutine handlers still running: wait_closed() waits for them too.
        self._handler_tasks: set[asyncio.Task[None]] = set()

    def _protocol(self) -> WebSocketServerConnection:
        core = ServerConnection(
            extensions=self.extensions,
            subprotocols=self.subprotocols,
            limits=self.limits,
            fragment_size=self.fragment_size,
        )
        return WebSocketServerConnection(
            self, core, handler=self.handler_class, **self.connection_kwargs
        )

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets."""
        return tuple(self.server.sockets) if self.server is not None else ()

    @property
    def port(self) -> int:
        """The TCP port the server listens (or listened) on: handy with ``port=0``.

        0 for a server on a Unix socket.
        """
        return self._port

    async def serve_forever(self) -> None:
        """Serve until cancelled or :meth:`close` is called."""
        assert self.server is not None
        try:
            await self.server.serve_forever()
        except asyncio.CancelledError:
            if not self._closing:
                raise

    def close(self, close_connections: bool = True) -> None:
        """Stop listening and, by default, close every connection with 1001 (going away).

        Returns at once; :meth:`wait_closed` waits for the connections to finish.
        """
        if self._closing:
            return
        self._closing = True
        if self.server is not None:
            self.server.close()
        if close_connections:
            for connection in list(self._handshaking):
                connection.transport.abort()
            for connection in list(self.connections):
                connection.close_nowait(1001, "server shutting down")

    async def wait_closed(self) -> None:
        """Wait until the listeners are closed, every connection is gone and every handler
        has returned."""
        if self.server is not None:
            await self.server.wait_closed()
        pending = [c.wait_closed() for c in [*self._handshaking, *self.connections]]
        if pending:
            await asyncio.gather(*pending)
        # (Called from a handler, as an admin command that shuts the server down might: not
        # for that handler itself, which is waiting here, maybe through wait_for's task.)
        caller = _current_handler.get()
        while pending_tasks := [task for task in self._handler_tasks if task is not caller]:
            await asyncio.wait(pending_tasks)

    def _track(self, handler: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a connection's handler in a task that :meth:`wait_closed` waits for."""
        task = asyncio.get_running_loop().create_task(handler)
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)
        return task

    async def aclose(self) -> None:
        """``close()`` then ``wait_closed()``."""
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class serve(Opener[Server]):  # used as a function: ``async with serve(...)`` / ``await serve(...)``
    """Start a WebSocket server; ``handler(connection)`` runs once per connection.

    ``async with serve(handler, "127.0.0.1", 8765) as server: await server.serve_forever()``.
    When the handler returns the connection is closed with 1000; if it raises, with 1011
    (and the error is logged under the ``wskit.server`` logger). ``handler`` may instead be a
    class-based handler (a :class:`wskit.handlers.Handler` subclass): one instance per
    connection gets its hooks called from the read callback, with no task per connection
    (the fastest way to serve; a hook that raises closes its connection with 1011).

    Handshake: ``origins`` allow-lists ``Origin`` values (``None`` in the list admits clients
    that send none); ``process_request(connection, request)`` may return a
    :class:`~wskit.core.events.Response` (see ``connection.respond``) to answer with plain
    HTTP instead (health checks, 401, 404); ``subprotocols`` lists what the server speaks and
    ``select_subprotocol(connection, offered)`` may choose otherwise. ``compression="deflate"``
    negotiates permessage-deflate (``None`` disables it). ``open_timeout`` bounds the opening
    handshake. ``max_size`` bounds a message (after decompression), ``max_fragments`` its
    frames, ``limits`` (a :class:`~wskit.core.limits.Limits`) sets every bound at once;
    ``max_queue`` is the number of messages buffered before reading pauses; ``fragment_size``
    splits outgoing messages into frames of at most that many bytes; ``unix_path`` serves on a
    Unix socket; other keyword arguments go to ``loop.create_server`` (``reuse_port``, ...).
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = None,
        port: int | None = None,
        *,
        unix_path: str | None = None,
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
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        logger: logging.Logger | None = None,
        **kwargs: Any,
    ) -> None:
        if limits is None:
            limits = Limits.for_size(max_size, max_fragments=max_fragments)
        self._server = Server(
            handler,
            process_request=process_request,
            select_subprotocol=select_subprotocol,
            subprotocols=subprotocols,
            origins=origins,
            extra_headers=extra_headers,
            extensions=extension_factories(
                compression,
                functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module),
            ),
            limits=limits,
            fragment_size=fragment_size,
            open_timeout=open_timeout,
            connection_kwargs={
                "ping_interval": ping_interval,
                "ping_timeout": ping_timeout,
                "close_timeout": close_timeout,
                "max_queue": max_queue,
                "write_limit": write_limit,
                "logger": logger or globals()["logger"],
            },
        )
        self._host = host
        self._port = port
        self._unix_path = unix_path
        self._ssl = ssl
        self._kwargs = kwargs

    async def _open(self) -> Server:
        loop = asyncio.get_running_loop()
        if self._unix_path is not None:
            server = await loop.create_unix_server(
                self._server._protocol, self._unix_path, ssl=self._ssl, **self._kwargs
            )
        else:
            server = await loop.create_server(
                self._server._protocol, self._host, self._port, ssl=self._ssl, **self._kwargs
            )
        self._server.server = server
        sockname = server.sockets[0].getsockname() if server.sockets else None
        if isinstance(sockname, tuple):
            self._server._port = int(sockname[1])
        return self._server

    async def _close(self, server: Server) -> None:
        await server.aclose()


async def accept(
    sock: socket.socket | None = None,
    head: bytes = b"",
    *,
    transport: asyncio.Transport | None = None,
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
    write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
    logger: logging.Logger | None = None,
) -> WebSocketServerConnection:
    """Run the server side of the opening handshake on a connection accepted elsewhere;
    return the open connection.

    The connection is a connected ``sock`` (wrapped in a transport of the running loop), or
    the ``transport`` of another protocol, which this one replaces (a web framework's: see
    :mod:`wskit.integrations.aiohttp`). ``head`` is what was already read of the request: the
    head, or its beginning (the rest is read here). The options are :func:`serve`'s; the
    connection has no handler: the caller uses it (``recv``, ``send``, ``close``).

    Raises :class:`~wskit.exceptions.InvalidHandshake` when the request is not a WebSocket
    upgrade the server accepts (the client got the HTTP error), :class:`TimeoutError` after
    ``open_timeout``.
    """
    if (sock is None) == (transport is None):
        raise ValueError("pass either sock or transport")
    if limits is None:
        limits = Limits.for_size(max_size, max_fragments=max_fragments)
    settings = Server(
        None,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        subprotocols=subprotocols,
        origins=origins,
        extra_headers=extra_headers,
        extensions=extension_factories(
            compression,
            functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module),
        ),
        limits=limits,
        fragment_size=fragment_size,
        open_timeout=open_timeout,
        connection_kwargs={
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "logger": logger or globals()["logger"],
        },
    )
    loop = asyncio.get_running_loop()
    if transport is not None:
        connection = settings._protocol()
        transport.set_protocol(connection)
        connection.connection_made(transport)
        transport.resume_reading()  # the previous protocol may have paused it
    else:
        assert sock is not None
        _, connection = await loop.connect_accepted_socket(settings._protocol, sock)
    opened = connection._opened_waiter = loop.create_future()
    if head:
        connection.core.receive_data(head)
        connection._process()
    try:
        # The connection's own handshake timer drops it at open_timeout too.
        await asyncio.wait_for(asyncio.shield(opened), open_timeout)
    except asyncio.CancelledError:
        connection.transport.abort()
        raise
    except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
        connection.transport.abort()
        raise TimeoutError("timed out during the opening handshake") from None
    if not connection.opened:
        cause = connection.core.cause
        response = connection.core.response
        if isinstance(cause, InvalidHandshake):
            raise cause
        status = response.status if response is not None else 400
        raise InvalidHandshake(f"the handshake was refused with HTTP {status}", status)
    return connection

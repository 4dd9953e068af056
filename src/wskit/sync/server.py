"""The threads WebSocket server: ``serve(handler, host, port)``, a thread per connection."""

from __future__ import annotations

import contextlib
import functools
import http
import logging
import os
import selectors
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

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
from wskit.sync.connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    READ_SIZE,
    Connection,
    EventLike,
    ThreadLike,
    read_handshake,
    remaining,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_OPEN_TIMEOUT",
    "Server",
    "WebSocketServerConnection",
    "accept",
    "serve",
]

#: Seconds a client has to complete TLS and the opening handshake (websockets: 10 s), so a
#: slow or silent client cannot hold a thread.
DEFAULT_OPEN_TIMEOUT = 10.0
#: Connections served at once (a thread each, two once open); more are answered with
#: HTTP 503 at once. simple_ws calls this its connection limit.
DEFAULT_MAX_CONNECTIONS = 1024

#: What ``serve`` runs per connection, in the connection's own thread.
Handler = Callable[["WebSocketServerConnection"], None]
ProcessRequest = Callable[["WebSocketServerConnection", Request], "Response | None"]
SelectSubprotocol = Callable[["WebSocketServerConnection", Sequence[str]], "str | None"]

logger = logging.getLogger("wskit.server")

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 29\r\nConnection: close\r\n\r\nToo many connections, sorry.\n"
)


def _linger_close(sock: socket.socket) -> None:
    """Close a connection whose handshake was refused without resetting it.

    Half-close, then read and discard what the client still sends until it closes (at most
    ``LINGER_TIMEOUT`` seconds): closing with unread bytes would send a reset that can destroy
    the refusal before the client read it (RFC 9112 9.6).
    """
    deadline = time.monotonic() + LINGER_TIMEOUT
    try:
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(READ_SIZE):
                break
    except OSError:  # TimeoutError, a reset, a TLS socket that cannot half-close
        pass
    finally:
        sock.close()


class WebSocketServerConnection(Connection):
    """A server-side connection (see :class:`~wskit.sync.connection.Connection`)."""

    core: CoreServerConnection

    def __init__(
        self, server: Server, sock: socket.socket, core: CoreServerConnection, **kwargs: Any
    ):
        super().__init__(sock, core, **kwargs)
        self.server = server

    def respond(self, status: int, text: str = "", headers: HeadersLike | None = None) -> Response:
        """Build an HTTP response for ``process_request`` to return (health checks, 401...)."""
        body = text or f"{http.HTTPStatus(status).phrase}\n"
        return self.core.reject(status, body, headers)

    def _handshake(self, deadline: float | None) -> bool:
        """Read the request and answer it; True when the connection opened."""
        core = self.core
        server = self.server
        read_handshake(self.socket, core, deadline, self.read_size)
        request = core.request
        if request is None or core.state is not State.CONNECTING:
            self._write_handshake(deadline)  # the core's 400 for a bad head, if any
            return False
        object.__setattr__(request, "remote_address", self.remote_address)
        response: Response | None = None
        if server.process_request is not None:
            try:
                response = server.process_request(self, request)
            except Exception:
                response = self._internal_error()
        if response is None:
            response = self._accept(request)
        try:
            if not isinstance(response, Response):
                raise TypeError(f"process_request returned {type(response).__name__}")
            core.send_response(response)
        except (TypeError, LocalProtocolError):  # not a Response, a forged 101, bad headers
            response = self._internal_error()
            core.send_response(response)
        self._write_handshake(deadline)
        if response.status != 101:
            self.logger.info("%s %s -> %d", request.method, request.target, response.status)
            return False
        return True

    def _write_handshake(self, deadline: float | None) -> None:
        data = self.core.data_to_send()
        if data:
            self.socket.settimeout(remaining(deadline))
            self.socket.sendall(b"".join(data))

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

    @property
    def request(self) -> Request:
        """The opening handshake's request: path, query, headers, remote address."""
        request = self.core.request
        if request is None:
            raise RuntimeError("no request received yet")
        return request


class Server:
    """A running threads WebSocket server: ``serve_forever()``, ``shutdown()``.

    ``connections`` holds the open connections (a registry for broadcasting); connections
    still in the opening handshake, or answered with plain HTTP, are not in it.
    """

    def __init__(
        self,
        handler: Handler | None,
        listener: socket.socket | None,
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
        max_connections: int | None,
        thread_class: Callable[..., ThreadLike] | None,
        event_class: Callable[[], EventLike] | None,
        selector_class: Callable[[], selectors.BaseSelector] | None,
        connection_kwargs: dict[str, Any],
    ) -> None:
        self.handler = handler
        self.socket = listener
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
        self.max_connections = max_connections
        self.connection_kwargs = connection_kwargs
        self.logger: logging.Logger = connection_kwargs["logger"]
        self._thread_class: Callable[..., ThreadLike] = thread_class or threading.Thread
        self._selector_class = selector_class or selectors.DefaultSelector
        #: The open connections: handshake done, not yet closed (a registry for broadcasts).
        self.connections: set[WebSocketServerConnection] = set()
        # Held briefly, never across a blocking call (see wskit.sync.connection).
        self._lock = threading.Lock()
        self._event_class: Callable[[], EventLike] = event_class or threading.Event
        self._active = 0  # connection threads running (handshake included)
        self._idle = self._event_class()  # set: no connection thread runs
        self._idle.set()
        self._handshaking: set[socket.socket] = set()
        self._local = threading.local()  # in_connection: this thread serves a connection
        self._shutdown = False
        self._serving = False
        self._served = self._event_class()
        # Wakes serve_forever() for shutdown(); made only by a server that listens.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        if listener is not None:
            self._wake_r, self._wake_w = socket.socketpair()

    @property
    def port(self) -> int:
        """The TCP port the server listens on: handy with ``port=0``; 0 on a Unix socket."""
        name = self.socket.getsockname() if self.socket is not None else None
        return int(name[1]) if isinstance(name, tuple) else 0

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (from another thread or a handler)."""
        if self.socket is None:
            raise RuntimeError("this server has no listening socket (it came from accept())")
        self._serving = True
        selector = self._selector_class()
        selector.register(self.socket, selectors.EVENT_READ)
        assert self._wake_r is not None
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._shutdown:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._shutdown:
                        return
                    self._accept_one()
        finally:
            selector.close()
            self._served.set()

    def _accept_one(self) -> None:
        assert self.socket is not None
        try:
            sock, _ = self.socket.accept()
            sock.setblocking(True)
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # EMFILE and the like: log, keep serving
            self.logger.error("accept() failed: %s", exc)
            time.sleep(0.1)
            return
        with self._lock:
            if self.max_connections is not None and self._active >= self.max_connections:
                busy = True
            else:
                busy = False
                self._active += 1
                self._idle.clear()
        if busy:
            self.logger.warning("too many connections (%d): answered 503", self.max_connections)
            try:
                sock.setblocking(False)
                sock.send(_BUSY)
            except OSError:
                pass
            sock.close()
            return
        thread = self._thread_class(
            target=self._serve_connection, args=(sock,), daemon=True, name="wskit-connection"
        )
        thread.start()

    def _serve_connection(self, raw: socket.socket) -> None:
        """One connection's thread: handshake, then the handler, then the close."""
        connection: WebSocketServerConnection | None = None
        sock = raw
        self._local.in_connection = True
        try:
            with self._lock:
                self._handshaking.add(raw)
            deadline = None if self.open_timeout is None else time.monotonic() + self.open_timeout
            try:
                if raw.family in (socket.AF_INET, socket.AF_INET6):
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.ssl is not None:
                    raw.settimeout(remaining(deadline))
                    sock = self.ssl.wrap_socket(raw, server_side=True)
                    with self._lock:  # wrap_socket detached raw: shutdown() needs this one
                        self._handshaking.discard(raw)
                        self._handshaking.add(sock)
                connection = self._connection(sock)
                if not connection._handshake(deadline):
                    _linger_close(sock)  # still listed: shutdown() cuts the linger short
                    return
            except OSError as exc:  # TimeoutError and ssl.SSLError included
                self.logger.info("opening handshake failed: %s", exc)
                sock.close()
                return
            finally:
                with self._lock:
                    self._handshaking.discard(raw)
                    self._handshaking.discard(sock)
            sock.settimeout(None)
            with self._lock:
                shutting_down = self._shutdown
                if not shutting_down:
                    self.connections.add(connection)
            connection._start("wskit-reader")
            if shutting_down:
                connection.close(1001, "server shutting down")
                return
            self._run_handler(connection)
        finally:
            with self._lock:
                if connection is not None:
                    self.connections.discard(connection)
                self._active -= 1
                if not self._active:
                    self._idle.set()

    def _connection(self, sock: socket.socket) -> WebSocketServerConnection:
        core = CoreServerConnection(
            extensions=self.extensions,
            subprotocols=self.subprotocols,
            limits=self.limits,
            fragment_size=self.fragment_size,
        )
        return WebSocketServerConnection(self, sock, core, **self.connection_kwargs)

    def _run_handler(self, connection: WebSocketServerConnection) -> None:
        """Run the handler; close with 1000 when it returns, 1011 if it fails."""
        assert self.handler is not None
        code = 1000
        try:
            self.handler(connection)
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
        connection.close(code)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, close every connection with 1001 (going away) and wait for their
        threads (at most ``timeout`` seconds; None: as long as the close timeouts and the
        handlers take). Called again, it waits again.

        From a handler (a connection's own thread), it starts all that and returns without
        waiting: that thread is one of those it would wait for.
        """
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            connections = list(self.connections)
            handshaking = list(self._handshaking)
        if first:
            with contextlib.suppress(OSError):
                if self._wake_w is not None:
                    self._wake_w.send(b"x")
            if self._serving:
                self._served.wait(1.0)  # serve_forever() is on its way out
            if self.socket is not None:
                self.socket.close()
            for wake in (self._wake_r, self._wake_w):
                if wake is not None:
                    wake.close()
            for sock in handshaking:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            for connection in connections:
                self._thread_class(
                    target=connection.close,
                    args=(1001, "server shutting down"),
                    daemon=True,
                    name="wskit-shutdown",
                ).start()
        if not getattr(self._local, "in_connection", False):
            self._idle.wait(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
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
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
    read_size: int = READ_SIZE,
    backlog: int = 128,
    logger: logging.Logger | None = None,
    thread_class: Callable[..., ThreadLike] | None = None,
    event_class: Callable[[], EventLike] | None = None,
    selector_class: Callable[[], selectors.BaseSelector] | None = None,
) -> Server:
    """Listen on ``host:port`` and return the :class:`Server`; ``handler(connection)`` runs
    in a thread of its own for each connection.

    ``with serve(handler, "127.0.0.1", 8765) as server: server.serve_forever()``; another
    thread (or a signal handler) calls ``server.shutdown()``. When the handler returns the
    connection is closed with 1000; if it raises, with 1011 (logged under ``wskit.server``).

    The options are :func:`wskit.asyncio.serve`'s (``process_request`` and
    ``select_subprotocol`` are plain functions here), plus: ``max_connections`` bounds the
    connections served at once (more get HTTP 503); ``sock`` is a listening socket to use;
    ``thread_class``, ``event_class`` and ``selector_class`` replace ``threading.Thread``,
    ``threading.Event`` and ``selectors.DefaultSelector`` (green threads).
    """
    if sock is None:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            sock.bind(unix_path)
            sock.listen(backlog)
        else:
            sock = socket.create_server((host or "", port or 0), backlog=backlog)
    sock.setblocking(False)
    return _server(
        handler,
        sock,
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
        max_connections=max_connections,
        read_size=read_size,
        logger=logger,
        thread_class=thread_class,
        event_class=event_class,
        selector_class=selector_class,
    )


def accept(
    sock: socket.socket,
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
    close_socket: bool = True,
    logger: logging.Logger | None = None,
    thread_class: Callable[..., ThreadLike] | None = None,
    event_class: Callable[[], EventLike] | None = None,
    selector_class: Callable[[], selectors.BaseSelector] | None = None,
) -> WebSocketServerConnection:
    """Run the server side of the opening handshake on a connected socket; return the open
    connection.

    For a socket accepted elsewhere: a web server that hands over its connection (see
    :mod:`wskit.integrations.wsgi`), or your own ``socket.accept()``. ``head`` is what was
    already read from the socket: the request head, or its beginning (the rest is read here,
    within ``open_timeout``). ``close_socket=False`` leaves the socket open at the end (shut
    down, not closed) for its owner to close. The other options are :func:`serve`'s.

    Raises :class:`~wskit.exceptions.InvalidHandshake` when the request is not a WebSocket
    upgrade the server accepts (the HTTP answer, 400, 403, 426, or what ``process_request``
    returned, was sent), :class:`TimeoutError` or :class:`OSError` when the client does not
    finish the handshake.
    """
    settings = _server(
        None,
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
        max_connections=None,
        read_size=read_size,
        logger=logger,
        thread_class=thread_class,
        event_class=event_class,
        selector_class=selector_class,
    )
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    connection = settings._connection(sock)
    connection._owns_socket = close_socket
    if head:
        connection.core.receive_data(head)
    if not connection._handshake(deadline):
        cause = connection.core.cause
        response = connection.core.response
        status = response.status if response is not None else 400
        connection._close_socket()
        if isinstance(cause, InvalidHandshake):
            raise cause
        raise InvalidHandshake(f"the handshake was refused with HTTP {status}", status)
    sock.settimeout(None)
    connection._start("wskit-reader")
    return connection


def _server(
    handler: Handler | None,
    listener: socket.socket | None,
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
    thread_class: Callable[..., ThreadLike] | None,
    event_class: Callable[[], EventLike] | None,
    selector_class: Callable[[], selectors.BaseSelector] | None,
    **settings: Any,
) -> Server:
    """The :class:`Server` behind :func:`serve` and :func:`accept`."""
    if limits is None:
        limits = Limits.for_size(max_size, max_fragments=max_fragments)
    return Server(
        handler,
        listener,
        extensions=extension_factories(
            compression,
            functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module),
        ),
        limits=limits,
        thread_class=thread_class,
        event_class=event_class,
        selector_class=selector_class,
        connection_kwargs={
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "read_size": read_size,
            "logger": logger or globals()["logger"],
            "thread_class": thread_class,
            "event_class": event_class,
            "selector_class": selector_class,
        },
        **settings,
    )

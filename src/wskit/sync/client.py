"""The threads WebSocket client: ``connect(url)``."""

from __future__ import annotations

import functools
import logging
import selectors
import socket
import ssl as ssl_module
import time
from collections.abc import Callable, Sequence

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

__all__ = ["DEFAULT_OPEN_TIMEOUT", "WebSocketClientConnection", "connect"]

#: Seconds allowed for TCP connect, TLS and the opening handshake together.
DEFAULT_OPEN_TIMEOUT = 10.0

logger = logging.getLogger("wskit.client")


class WebSocketClientConnection(Connection):
    """A client-side connection (see :class:`~wskit.sync.connection.Connection`)."""

    core: CoreClientConnection


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
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
    thread_class: Callable[..., ThreadLike] | None = None,
    event_class: Callable[[], EventLike] | None = None,
    selector_class: Callable[[], selectors.BaseSelector] | None = None,
) -> WebSocketClientConnection:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``) and return it once
    the opening handshake succeeded.

    ``with connect("ws://127.0.0.1:8765/") as ws: ws.send("hi"); print(ws.recv())``.

    The options are :func:`wskit.asyncio.connect`'s: ``open_timeout`` bounds TCP connect,
    TLS and the handshake together (:class:`TimeoutError`); ``sock`` is a connected socket to
    use instead of connecting; ``unix_path`` connects to a Unix socket; ``ssl`` a TLS context
    for ``wss://`` (a default one otherwise). ``thread_class``, ``event_class`` and
    ``selector_class`` replace ``threading.Thread``, ``threading.Event`` and
    ``selectors.DefaultSelector`` (green threads). Raises
    :class:`~wskit.exceptions.InvalidHandshake` (``InvalidStatus`` for a non-101 answer) when
    the server refuses, :class:`OSError` when it cannot be reached.
    """
    wsuri = parse_uri(uri)
    if limits is None:
        limits = Limits.for_size(max_size, max_fragments=max_fragments)
    if wsuri.secure and ssl is None:
        ssl = ssl_module.create_default_context()
    elif not wsuri.secure and ssl is not None:
        raise ValueError("ssl= is only for wss:// URIs")
    deadline = None if open_timeout is None else time.monotonic() + open_timeout

    if sock is None:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(open_timeout)
            try:
                sock.connect(unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((wsuri.host, wsuri.port), timeout=open_timeout)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl is not None:
            sock.settimeout(remaining(deadline))
            sock = ssl.wrap_socket(sock, server_hostname=server_hostname or wsuri.host)
        core = CoreClientConnection(
            wsuri,
            extensions=extension_factories(
                compression,
                functools.partial(ClientPerMessageDeflateFactory, zlib_module=_zlib.module),
            ),
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            origin=origin,
            limits=limits,
            fragment_size=fragment_size,
            user_agent=user_agent,
        )
        core.send_request()
        sock.settimeout(remaining(deadline))
        sock.sendall(b"".join(core.data_to_send()))
        read_handshake(sock, core, deadline, read_size)
        # The server may answer 101 and close at once: the handshake still succeeded, and
        # the messages and Close frame that came with it are there for recv().
        cause = core.cause
        if isinstance(cause, InvalidHandshake):
            raise cause
        if core.state is State.CONNECTING:  # pragma: no cover - read_handshake ends it
            raise InvalidHandshake("connection closed during the opening handshake")
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    connection = WebSocketClientConnection(
        sock,
        core,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
        read_size=read_size,
        logger=logger or globals()["logger"],
        thread_class=thread_class,
        event_class=event_class,
        selector_class=selector_class,
    )
    connection._start(f"wskit-client-{wsuri.host}:{wsuri.port}")
    return connection

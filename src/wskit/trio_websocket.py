"""trio-websocket's API on wskit: ``from wskit.trio_websocket import open_websocket_url``.

The functions, classes, parameters and defaults of trio-websocket 0.12, so that code written
for it runs on wskit by changing the import: :func:`open_websocket` /
:func:`open_websocket_url` (async context managers), :func:`connect_websocket` /
:func:`connect_websocket_url` (a nursery of yours), :func:`wrap_client_stream` /
:func:`wrap_server_stream`, :func:`serve_websocket` and :class:`WebSocketServer`, whose
handler receives a :class:`WebSocketRequest` to ``accept()`` or ``reject()``;
:class:`WebSocketConnection` with ``get_message``, ``send_message``, ``ping``, ``pong`` and
``aclose``. Underneath, every connection is a :mod:`wskit.trio` connection on wskit's core.

Exceptions, as in trio-websocket (none of them derives from wskit's)::

    Exception
    ├── ConnectionClosed(reason: CloseReason | None)
    └── HandshakeError
        ├── ConnectionTimeout
        ├── DisconnectionTimeout
        └── ConnectionRejected(status_code, headers, body)

Where wskit differs, on purpose (docs/trio_websocket.md lists it all):

* A full message queue stops reading from the socket between reads, not in the middle of
  one: pings and the Close frame already read are still answered (trio-websocket #82).
* ``max_message_size`` counts bytes (after decompression), not ``len()`` of the message.
* A handler that raises closes its connection with 1011 and the server serves on;
  trio-websocket closes with 1000 and the exception ends ``serve_websocket``.
* A handler that neither accepts nor rejects the request answers 500; trio-websocket drops
  TCP without an HTTP answer.
* Keyword-only extras: ``compression="deflate"`` (off by default, as trio-websocket has
  none) and keepalive ``ping_interval``/``ping_timeout`` (off by default, likewise).
"""

from __future__ import annotations

import functools
import http
import ipaddress
import itertools
import logging
import math
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, NoReturn

import trio

from wskit import _zlib
from wskit.abc import Data
from wskit.core.connection import ServerConnection as CoreServerConnection
from wskit.core.connection import State
from wskit.core.events import Request, Response
from wskit.core.extensions import (
    ClientExtensionFactory,
    ServerExtensionFactory,
    ServerPerMessageDeflateFactory,
    extension_factories,
)
from wskit.core.headers import Headers
from wskit.core.limits import Limits
from wskit.exceptions import ConcurrencyError, InvalidHandshake, InvalidStatus
from wskit.exceptions import ConnectionClosed as WskitConnectionClosed
from wskit.trio.client import connect as wskit_connect
from wskit.trio.connection import DEFAULT_PING_TIMEOUT, READ_SIZE, Connection
from wskit.trio.server import Server, WebSocketServerConnection

__all__ = [
    "CONN_TIMEOUT",
    "MAX_MESSAGE_SIZE",
    "MESSAGE_QUEUE_SIZE",
    "RECEIVE_BYTES",
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DisconnectionTimeout",
    "Endpoint",
    "HandshakeError",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
    "wrap_client_stream",
    "wrap_server_stream",
]

# trio-websocket 0.12's defaults, kept so that migrated code behaves the same.
#: Seconds for the opening handshake, and for the closing one (trio-websocket: 60).
CONN_TIMEOUT = 60
#: Messages received but not yet read before reading stops (trio-websocket: 1).
MESSAGE_QUEUE_SIZE = 1
#: Largest message, in bytes here (trio-websocket counts ``len()``): 1 MiB.
MAX_MESSAGE_SIZE = 2**20
#: Bytes asked of each read (trio-websocket: 4 KiB); ``None`` means wskit's 64 KiB.
RECEIVE_BYTES = 4 * 2**10

logger = logging.getLogger("wskit.trio_websocket")

#: The request headers trio-websocket (through wsproto) leaves out of
#: :attr:`WebSocketRequest.headers`: their content is in ``path``/``proposed_subprotocols``.
_HIDDEN_REQUEST_HEADERS = frozenset({"host", "sec-websocket-extensions", "sec-websocket-protocol"})
#: The response headers left out of :attr:`WebSocketConnection.handshake_headers` (wsproto).
_HIDDEN_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)

#: Close code names, as trio-websocket gives them (wsproto's ``CloseReason`` enum); codes
#: missing here are named by range in :class:`CloseReason`.
_CLOSE_CODE_NAMES = {
    1000: "NORMAL_CLOSURE",
    1001: "GOING_AWAY",
    1002: "PROTOCOL_ERROR",
    1003: "UNSUPPORTED_DATA",
    1005: "NO_STATUS_RCVD",
    1006: "ABNORMAL_CLOSURE",
    1007: "INVALID_FRAME_PAYLOAD_DATA",
    1008: "POLICY_VIOLATION",
    1009: "MESSAGE_TOO_BIG",
    1010: "MANDATORY_EXT",
    1011: "INTERNAL_ERROR",
    1012: "SERVICE_RESTART",
    1013: "TRY_AGAIN_LATER",
    1015: "TLS_HANDSHAKE_FAILED",
}

HeaderList = list[tuple[bytes, bytes]]
Handler = Callable[["WebSocketRequest"], Awaitable[None]]


# ---------------------------------------------------------------------------------- exceptions


class HandshakeError(Exception):
    """The opening or closing handshake failed (network error, timeout, refusal)."""


class ConnectionTimeout(HandshakeError):
    """The opening handshake took longer than ``connect_timeout``."""


class DisconnectionTimeout(HandshakeError):
    """The closing handshake took longer than ``disconnect_timeout`` (TCP was dropped)."""


class ConnectionClosed(Exception):
    """The connection is closed, or closing: ``reason`` says how (a :class:`CloseReason`)."""

    def __init__(self, reason: CloseReason | None) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}<{self.reason}>"


class ConnectionRejected(HandshakeError):
    """The server answered the opening handshake with an HTTP status other than 101.

    ``headers`` are (lowercase name, value) pairs of bytes; ``body`` is the response body.
    """

    def __init__(
        self, status_code: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes | None
    ) -> None:
        super().__init__(status_code, headers, body)
        self.status_code = status_code
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"{type(self).__name__}<status_code={self.status_code}>"


# ------------------------------------------------------------------------------ small records


class CloseReason:
    """Why a connection closed: ``code``, its ``name`` and the peer's ``reason``."""

    def __init__(self, code: int, reason: str | None) -> None:
        self._code = code
        self._reason = reason
        name = _CLOSE_CODE_NAMES.get(code)
        if name is None:
            # RFC 6455 7.4.2: 1000-2999 are for the protocol and its extensions, 3000-3999 are
            # registered with IANA, 4000-4999 are private.
            if 1000 <= code <= 2999:
                name = "RFC_RESERVED"
            elif 3000 <= code <= 3999:
                name = "IANA_RESERVED"
            elif 4000 <= code <= 4999:
                name = "PRIVATE_RESERVED"
            else:
                name = "INVALID_CODE"
        self._name = name

    @property
    def code(self) -> int:
        """The close code."""
        return self._code

    @property
    def name(self) -> str:
        """The close code's name (``NORMAL_CLOSURE``, ...)."""
        return self._name

    @property
    def reason(self) -> str | None:
        """The close reason, or None if there was none."""
        return self._reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}<code={self.code}, name={self.name}, reason={self.reason}>"


class Endpoint:
    """One end of a TCP connection: ``address`` (an :mod:`ipaddress` object), ``port``,
    ``is_ssl``."""

    def __init__(self, address: str | int, port: int, is_ssl: bool) -> None:
        self.address = ipaddress.ip_address(address)
        self.port = port
        self.is_ssl = is_ssl

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:8000``: the endpoint as a URL (default ports left out)."""
        scheme = "wss" if self.is_ssl else "ws"
        default = 443 if self.is_ssl else 80
        port = "" if self.port == default else f":{self.port}"
        host = str(self.address) if self.address.version == 4 else f"[{self.address}]"
        return f"{scheme}://{host}{port}"

    def __repr__(self) -> str:
        return f'Endpoint(address="{self.address}", port={self.port}, is_ssl={self.is_ssl})'


def _endpoint(stream: trio.abc.Stream, *, local: bool) -> Endpoint | str:
    """The local or remote end of ``stream``; its ``repr()`` when it is not a TCP socket."""
    is_ssl = isinstance(stream, trio.SSLStream)
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = inner.socket if isinstance(inner, trio.SocketStream) else None
    if sock is None or sock.family not in (trio.socket.AF_INET, trio.socket.AF_INET6):
        return repr(stream)
    address, port, *_ = sock.getsockname() if local else sock.getpeername()
    return Endpoint(address, port, is_ssl)


def _to_bytes(headers: Iterable[tuple[str, str]], hidden: frozenset[str]) -> HeaderList:
    """wskit's (name, value) strings as trio-websocket's (lowercase name, value) bytes
    (latin-1: wskit decoded each octet to one character)."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in hidden
    ]


def _to_str(headers: Iterable[tuple[bytes, bytes]] | None) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers or ()]


# ------------------------------------------------------------------------------- connections


class WebSocketConnection(trio.abc.AsyncResource):
    """A WebSocket connection, client or server side (a :mod:`wskit.trio` connection inside).

    Made by the functions of this module, not by hand. ``get_message()`` returns the next
    message, ``send_message()`` sends one, ``ping()`` waits for its pong, ``aclose()`` runs
    the closing handshake (at most ``disconnect_timeout``, then TCP is dropped).
    """

    CONNECTION_ID = itertools.count()

    def __init__(
        self,
        connection: Connection,
        *,
        path: str | None,
        disconnect_timeout: float | None = CONN_TIMEOUT,
    ) -> None:
        self._ws = connection
        self._id = next(WebSocketConnection.CONNECTION_ID)
        self._is_client = not isinstance(connection, WebSocketServerConnection)
        self._path = path
        self._disconnect_timeout = disconnect_timeout
        self._local_close = False
        self._receive_lock = trio.StrictFIFOLock()  # get_message() from several tasks
        response = connection.response
        self._handshake_headers: tuple[tuple[bytes, bytes], ...] = ()
        if self._is_client and response is not None:
            self._handshake_headers = tuple(
                _to_bytes(response.headers.items(), _HIDDEN_RESPONSE_HEADERS)
            )

    @property
    def closed(self) -> CloseReason | None:
        """How the connection closed (or is closing), or None while it is open: the peer's
        Close frame; else the one this side sent (a local close, or a failure such as 1009);
        else 1006, TCP closed without a Close frame (as trio-websocket reports them)."""
        ws = self._ws
        core = ws.core
        for frame in (core.close_rcvd, core.close_sent):
            if frame is not None:
                return CloseReason(frame[0], frame[1] or None)
        code = ws.close_code
        return None if code is None else CloseReason(code, ws.close_reason or None)

    @property
    def is_client(self) -> bool:
        """True for a client connection."""
        return self._is_client

    @property
    def is_server(self) -> bool:
        """True for a server connection."""
        return not self._is_client

    @property
    def local(self) -> Endpoint | str:
        """This side's endpoint (the stream's ``repr()`` for other streams than TCP)."""
        return _endpoint(self._ws.stream, local=True)

    @property
    def remote(self) -> Endpoint | str:
        """The peer's endpoint (the stream's ``repr()`` for other streams than TCP)."""
        return _endpoint(self._ws.stream, local=False)

    @property
    def path(self) -> str | None:
        """The request target (``/chat?room=1``)."""
        return self._path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the opening handshake, or None."""
        return self._ws.subprotocol

    @property
    def handshake_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """(Client) the server's 101 response headers, lowercase names, without those of
        the handshake itself; empty on the server side."""
        return self._handshake_headers

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection: send a Close frame, wait for the peer's and the end of
        TCP, at most ``disconnect_timeout`` (then TCP is dropped). Later calls return."""
        await self._close(code, reason)

    async def _close(self, code: int = 1000, reason: str | None = None) -> bool:
        """Close; False when the closing handshake did not finish within
        ``disconnect_timeout``."""
        self._local_close = True
        ws = self._ws
        # This scope bounds the close, not the connection's own timer, so that a timeout is
        # seen here (and becomes DisconnectionTimeout in open_websocket).
        ws.close_timeout = None
        timeout = self._disconnect_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            await ws.aclose(code, reason or "")
        return not scope.cancelled_caught

    async def get_message(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        After the peer closes, the messages received before its Close frame are returned
        first; after a local :meth:`aclose`, :class:`ConnectionClosed` is raised at once.
        Several tasks may wait at once: each gets a different message.
        """
        if self._local_close:
            raise ConnectionClosed(self.closed)
        async with self._receive_lock:
            try:
                message: Data = await self._ws.recv()
            except WskitConnectionClosed:
                raise ConnectionClosed(self.closed) from None
        return message if isinstance(message, str) else bytes(message)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a Ping and wait for its Pong (a Pong also answers earlier pings).

        ``payload`` defaults to 4 random bytes; a payload already waiting for its Pong raises
        :class:`ValueError`.
        """
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._ws.ping(payload)
        except ConcurrencyError:
            raise ValueError(f"Payload value {payload!r} is already in flight.") from None
        except WskitConnectionClosed:
            raise ConnectionClosed(self.closed) from None

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited Pong (a one-way heartbeat)."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            await self._ws.pong(payload or b"")
        except WskitConnectionClosed:
            raise ConnectionClosed(self.closed) from None

    async def send_message(self, message: str | bytes) -> None:
        """Send ``str`` as a text message, ``bytes`` as a binary one; anything else raises
        :class:`ValueError`. Raises :class:`ConnectionClosed` once the connection closes."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if not isinstance(message, (str, bytes)):
            raise ValueError("message must be str or bytes")
        try:
            await self._ws.send(message)
        except WskitConnectionClosed:
            raise ConnectionClosed(self.closed) from None

    def __str__(self) -> str:
        return f"{'client' if self._is_client else 'server'}-{self._id}"


# -------------------------------------------------------------------------------- the client


def _ssl_context(use_ssl: bool | ssl.SSLContext) -> ssl.SSLContext | None:
    if use_ssl is True:
        return ssl.create_default_context()
    if use_ssl is False:
        return None
    if isinstance(use_ssl, ssl.SSLContext):
        return use_ssl
    raise TypeError("`use_ssl` argument must be bool or ssl.SSLContext")


def _client(
    uri: str,
    resource: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    stream: trio.abc.Stream | None = None,
    nursery: trio.Nursery | None = None,
    host_header: str | None = None,
    subprotocols: Iterable[str] | None,
    extra_headers: HeaderList | None,
    message_queue_size: int,
    max_message_size: int,
    receive_buffer_size: int | None,
    connect_timeout: float | None,
    disconnect_timeout: float | None,
    compression: str | Sequence[ClientExtensionFactory] | None,
    ping_interval: float | None,
    ping_timeout: float | None,
) -> wskit_connect:
    """The :func:`wskit.trio.connect` call behind every client function, with
    trio-websocket's options translated to wskit's."""
    headers = _to_str(extra_headers)
    if host_header is not None and not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", host_header))
    return wskit_connect(
        uri,
        nursery=nursery,
        stream=stream,
        ssl=ssl_context,
        extra_headers=headers,
        user_agent=None,  # trio-websocket sends none
        subprotocols=list(subprotocols or ()),
        compression=compression,
        open_timeout=connect_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=disconnect_timeout,
        max_size=max_message_size,
        max_queue=message_queue_size,
        read_size=receive_buffer_size or READ_SIZE,
        logger=logger,
    )


def _handshake_error(exc: Exception) -> HandshakeError:
    """wskit's failure of the opening handshake as trio-websocket's exception."""
    if isinstance(exc, TimeoutError):
        return ConnectionTimeout()
    if isinstance(exc, InvalidStatus):
        response = exc.response
        headers = tuple(_to_bytes(response.headers.items(), frozenset()))
        return ConnectionRejected(response.status, headers, bytes(response.body))
    return HandshakeError(str(exc))


async def _open(
    client: wskit_connect, path: str, disconnect_timeout: float | None
) -> WebSocketConnection:
    """Run ``client`` (given a nursery); trio-websocket's exceptions for its failures."""
    try:
        ws = await client
    except (TimeoutError, InvalidHandshake, trio.BrokenResourceError) as exc:
        raise _handshake_error(exc) from exc
    return WebSocketConnection(ws, path=path, disconnect_timeout=disconnect_timeout)


def _host_uri(host: str, port: int, resource: str, secure: bool) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{'wss' if secure else 'ws'}://{netloc}:{port}{resource}"


class _OpenWebSocket:
    """What :func:`open_websocket` returns: connect on entry, close on exit.

    Errors of the block propagate as they are, never inside an ExceptionGroup; a close that
    takes longer than ``disconnect_timeout`` raises :class:`DisconnectionTimeout`.
    """

    def __init__(self, client: wskit_connect, path: str, disconnect_timeout: float | None):
        self._client = client
        self._path = path
        self._disconnect_timeout = disconnect_timeout
        self._connection: WebSocketConnection | None = None

    async def __aenter__(self) -> WebSocketConnection:
        try:
            ws = await self._client.__aenter__()
        except (TimeoutError, InvalidHandshake, trio.BrokenResourceError) as exc:
            raise _handshake_error(exc) from exc
        except OSError as exc:
            raise HandshakeError() from exc
        self._connection = WebSocketConnection(
            ws, path=self._path, disconnect_timeout=self._disconnect_timeout
        )
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        assert connection is not None
        try:
            closed_in_time = await connection._close()
        finally:
            await self._client.__aexit__(exc_type, exc, tb)
        if not closed_in_time:
            raise DisconnectionTimeout


def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: HeaderList | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    connect_timeout: float = CONN_TIMEOUT,
    disconnect_timeout: float = CONN_TIMEOUT,
    compression: str | Sequence[ClientExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> _OpenWebSocket:
    """``async with open_websocket(host, port, resource, use_ssl=False) as ws``: connect
    on entry, close on exit.

    Raises :class:`HandshakeError` when the connection fails (an :class:`OSError` is its
    cause), :class:`ConnectionTimeout` after ``connect_timeout`` seconds,
    :class:`ConnectionRejected` when the server refuses, :class:`DisconnectionTimeout` when
    the close takes longer than ``disconnect_timeout``. The block's own exception propagates
    as it is. ``compression="deflate"`` offers permessage-deflate; ``ping_interval``
    turns keepalive pings on (``ping_timeout``: 1011 after that long without an answer).
    """
    client = _client(
        _host_uri(host, port, resource, use_ssl is not False),
        resource,
        ssl_context=_ssl_context(use_ssl),
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    return _OpenWebSocket(client, resource, disconnect_timeout)


async def connect_websocket(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: HeaderList | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    disconnect_timeout: float | None = CONN_TIMEOUT,
    compression: str | Sequence[ClientExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketConnection:
    """Connect, with the connection's task in ``nursery``; close it with ``aclose()``.

    No timeout, as in trio-websocket (wrap the call in ``trio.fail_after``). Raises
    :class:`OSError` when the server cannot be reached, :class:`ConnectionRejected` when it
    refuses (from this call, not from the nursery), :class:`HandshakeError` otherwise.
    """
    client = _client(
        _host_uri(host, port, resource, use_ssl is not False),
        resource,
        ssl_context=_ssl_context(use_ssl),
        nursery=nursery,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=None,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    return await _open(client, resource, disconnect_timeout)


def _url_to_host(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[str, int, str, ssl.SSLContext | bool]:
    """``(host, port, resource, use_ssl)`` of a ``ws:``/``wss:`` URL; ValueError otherwise."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme not in ("ws", "wss"):
        raise ValueError('WebSocket URL scheme must be "ws:" or "wss:"')
    use_ssl: ssl.SSLContext | bool
    if ssl_context is None:
        use_ssl = parts.scheme == "wss"
    elif parts.scheme == "ws":
        raise ValueError("SSL context must be None for ws: URL scheme")
    else:
        use_ssl = ssl_context
    if parts.hostname is None:
        raise ValueError("URL host must not be None")
    port = parts.port if parts.port is not None else (443 if use_ssl else 80)
    # RFC 9112 3.2.1: "If the target URI's path component is empty, the client MUST send "/"
    # as the path within the origin-form of request-target."
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return parts.hostname, port, resource, use_ssl


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: HeaderList | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    connect_timeout: float = CONN_TIMEOUT,
    disconnect_timeout: float = CONN_TIMEOUT,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    compression: str | Sequence[ClientExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> _OpenWebSocket:
    """:func:`open_websocket` for a ``ws://`` or ``wss://`` URL (``ssl_context`` for
    ``wss://``; a default one if None)."""
    host, port, resource, use_ssl = _url_to_host(url, ssl_context)
    return open_websocket(
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )


async def connect_websocket_url(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: HeaderList | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    disconnect_timeout: float | None = CONN_TIMEOUT,
    compression: str | Sequence[ClientExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketConnection:
    """:func:`connect_websocket` for a ``ws://`` or ``wss://`` URL."""
    host, port, resource, use_ssl = _url_to_host(url, ssl_context)
    return await connect_websocket(
        nursery,
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )


async def wrap_client_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: HeaderList | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    disconnect_timeout: float | None = CONN_TIMEOUT,
    compression: str | Sequence[ClientExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketConnection:
    """Run the client handshake on a connected ``stream`` (TLS already set up, if any);
    ``host`` is the ``Host`` header, ``resource`` the request target."""
    client = _client(
        "ws://localhost" + resource,  # only the target matters: Host is given, TLS is done
        resource,
        stream=stream,
        nursery=nursery,
        host_header=host,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=None,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    return await _open(client, resource, disconnect_timeout)


# -------------------------------------------------------------------------------- the server


class WebSocketRequest:
    """A client's opening handshake, given to the server's handler: look at ``path``,
    ``headers`` and ``proposed_subprotocols``, then :meth:`accept` (which returns the
    connection) or :meth:`reject` (an HTTP answer)."""

    def __init__(
        self,
        connection: WebSocketServerConnection,
        event: Request,
        *,
        nursery: trio.Nursery | None = None,
        disconnect_timeout: float | None = CONN_TIMEOUT,
    ) -> None:
        self._connection = connection
        self._event = event
        self._nursery = nursery
        self._disconnect_timeout = disconnect_timeout
        # Read now: the core compacts the request's headers once the connection opens.
        self._headers = _to_bytes(event.headers.items(), _HIDDEN_REQUEST_HEADERS)
        self._answered = False
        self._websocket: WebSocketConnection | None = None

    @property
    def headers(self) -> HeaderList:
        """The request's headers, (lowercase name, value) bytes, in order, without ``host``,
        ``sec-websocket-extensions`` and ``sec-websocket-protocol`` (as wsproto gives them)."""
        return self._headers

    @property
    def path(self) -> str:
        """The request target (``/chat?room=1``)."""
        return self._event.target

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offers, in its order."""
        return tuple(self._event.subprotocols)

    @property
    def local(self) -> Endpoint | str:
        """The server's endpoint."""
        return _endpoint(self._connection.stream, local=True)

    @property
    def remote(self) -> Endpoint | str:
        """The client's endpoint."""
        return _endpoint(self._connection.stream, local=False)

    async def accept(
        self, *, subprotocol: str | None = None, extra_headers: HeaderList | None = None
    ) -> WebSocketConnection:
        """Accept the handshake (with ``subprotocol``, one the client offered, and
        ``extra_headers`` in the 101 response) and return the open connection."""
        if self._answered:
            raise RuntimeError("the request was already answered")
        if subprotocol is not None and subprotocol not in self.proposed_subprotocols:
            raise ValueError(f"unexpected subprotocol {subprotocol}")
        if self._nursery is None:
            raise RuntimeError("this request has no nursery for the connection's task")
        connection = self._connection
        response = connection.core.accept(
            self._event, subprotocol=subprotocol, extra_headers=_to_str(extra_headers)
        )
        # Answered once the response is out: if making it failed (bad extra_headers, found
        # when it is serialized), nothing was sent and the server answers 500 for the handler
        # that raised.
        opened = await connection.send_response(response)
        self._answered = True
        if not opened:
            raise HandshakeError(f"the handshake failed with HTTP {response.status}")
        await self._nursery.start(connection._run)
        self._websocket = WebSocketConnection(
            connection, path=self._event.target, disconnect_timeout=self._disconnect_timeout
        )
        return self._websocket

    async def reject(
        self,
        status_code: int,
        *,
        extra_headers: HeaderList | None = None,
        body: bytes | None = None,
    ) -> None:
        """Refuse the handshake with an HTTP response: ``status_code``, ``extra_headers``
        and ``body`` (none by default), then close the connection."""
        if self._answered:
            raise RuntimeError("the request was already answered")
        connection = self._connection
        await connection.send_response(_refusal(status_code, _to_str(extra_headers), body or b""))
        self._answered = True  # once the response is out (see accept())
        await connection._linger_close()


def _refusal(status: int, extra_headers: list[tuple[str, str]], body: bytes) -> Response:
    """A plain HTTP response that refuses the upgrade."""
    headers = Headers(
        [(n, v) for n, v in extra_headers if n.lower() not in ("content-length", "connection")]
    )
    headers.add("Content-Length", str(len(body)))
    # RFC 9112 9.6: "A server that sends a "close" connection option MUST initiate a close of
    # the connection [...] after it sends the response containing "close"."
    headers.add("Connection", "close")
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return Response(status, headers, body, phrase)


async def _send_refusal(connection: WebSocketServerConnection, response: Response) -> None:
    """Answer with ``response`` and close (lingering, so that it is not reset)."""
    await connection.send_response(response)
    await connection._linger_close()


def _wskit_server(
    *,
    message_queue_size: int,
    max_message_size: int,
    receive_buffer_size: int | None,
    connect_timeout: float | None,
    disconnect_timeout: float | None,
    compression: str | Sequence[ServerExtensionFactory] | None,
    ping_interval: float | None,
    ping_timeout: float | None,
) -> Server:
    """The :class:`wskit.trio.server.Server` holding the options of the connections."""
    return Server(
        None,
        process_request=None,
        select_subprotocol=None,
        subprotocols=None,
        origins=None,
        extra_headers=None,
        extensions=extension_factories(
            compression,
            functools.partial(ServerPerMessageDeflateFactory, zlib_module=_zlib.module),
        ),
        limits=Limits.for_size(max_message_size),
        fragment_size=None,
        ssl=None,
        open_timeout=connect_timeout,
        connection_kwargs={
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": disconnect_timeout,
            "max_queue": message_queue_size,
            "read_size": receive_buffer_size or READ_SIZE,
            "logger": logger,
        },
    )


def _server_connection(server: Server, stream: trio.abc.Stream) -> WebSocketServerConnection:
    core = CoreServerConnection(extensions=server.extensions, limits=server.limits)
    return WebSocketServerConnection(server, stream, core, **server.connection_kwargs)


async def _receive_request(
    connection: WebSocketServerConnection, timeout: float | None
) -> Request | None:
    """The client's request if it is a valid upgrade; otherwise None, after the core's HTTP
    error answer (trio-websocket's handlers only ever see valid upgrades)."""
    with trio.move_on_after(math.inf if timeout is None else timeout):
        request = await connection.receive_request()
        if request is None:
            return None
        # The same checks as the final accept() (a bad key, version, upgrade...); the 101 built
        # here is discarded: the handler's accept() builds the one sent.
        response = connection.core.accept(request)
        if response.status == 101:
            return request
        await connection.send_response(response)
        await connection._linger_close()
    return None


async def wrap_server_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    *,
    disconnect_timeout: float | None = CONN_TIMEOUT,
    compression: str | Sequence[ServerExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketRequest:
    """Read the opening handshake from a connected ``stream`` and return the request;
    ``accept()`` starts the connection's task in ``nursery``. Raises
    :class:`HandshakeError` when the client sends no valid upgrade request (it got the HTTP
    error, and the stream is closed)."""
    server = _wskit_server(
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=None,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    connection = _server_connection(server, stream)
    request = await _receive_request(connection, None)
    if request is None:
        await trio.aclose_forcefully(stream)
        raise HandshakeError("no valid WebSocket upgrade request")
    return WebSocketRequest(
        connection, request, nursery=nursery, disconnect_timeout=disconnect_timeout
    )


class WebSocketServer:
    """A WebSocket server on Trio listeners: ``await nursery.start(server.run)``.

    ``handler(request)`` runs once per connection, with a :class:`WebSocketRequest`. When it
    returns, its connection is closed with 1000; when it raises, the error is logged (under
    ``wskit.trio_websocket``), the connection closed with 1011, and the server serves on. A
    handler that neither accepts nor rejects the request answers 500.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        handler_nursery: trio.Nursery | None = None,
        message_queue_size: int = MESSAGE_QUEUE_SIZE,
        max_message_size: int = MAX_MESSAGE_SIZE,
        receive_buffer_size: int | None = RECEIVE_BYTES,
        connect_timeout: float = CONN_TIMEOUT,
        disconnect_timeout: float = CONN_TIMEOUT,
        compression: str | Sequence[ServerExtensionFactory] | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    ) -> None:
        if len(listeners) == 0:
            raise ValueError("Listeners must contain at least one item.")
        self._handler = handler
        self._handler_nursery = handler_nursery
        self._listeners = list(listeners)
        self._connect_timeout = connect_timeout
        self._disconnect_timeout = disconnect_timeout
        self._server = _wskit_server(
            message_queue_size=message_queue_size,
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=disconnect_timeout,
            compression=compression,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )

    @property
    def port(self) -> int:
        """The TCP port (of the only listener; RuntimeError with several)."""
        if len(self._listeners) > 1:
            raise RuntimeError("Cannot get port because this server has more than 1 listener.")
        listener = self.listeners[0]
        if not isinstance(listener, Endpoint):
            raise RuntimeError(f"This socket does not have a port: {listener}")
        return listener.port

    @property
    def listeners(self) -> list[Endpoint | str]:
        """Each listener as an :class:`Endpoint` (TCP), or its ``repr()``."""
        endpoints: list[Endpoint | str] = []
        for listener in self._listeners:
            is_ssl = isinstance(listener, trio.SSLListener)
            inner = (
                listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
            )
            if isinstance(inner, trio.SocketListener) and inner.socket.family in (
                trio.socket.AF_INET,
                trio.socket.AF_INET6,
            ):
                address, port, *_ = inner.socket.getsockname()
                endpoints.append(Endpoint(address, port, is_ssl))
            else:
                endpoints.append(repr(listener))
        return endpoints

    async def run(
        self, *, task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Serve until cancelled; with ``nursery.start``, the server once it listens."""
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    trio.serve_listeners,
                    self._handle_connection,
                    self._listeners,
                    handler_nursery=self._handler_nursery,
                )
            )
            logger.debug("listening on %s", ", ".join(map(str, self.listeners)))
            task_status.started(self)
            await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        """One client: read its request, run the handler, close (1000, or 1011 on error)."""
        connection = _server_connection(self._server, stream)
        try:
            request = await _receive_request(connection, self._connect_timeout)
            if request is None:
                return
            async with trio.open_nursery() as nursery:
                proposal = WebSocketRequest(
                    connection,
                    request,
                    nursery=nursery,
                    disconnect_timeout=self._disconnect_timeout,
                )
                await self._run_handler(proposal)
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_handler(self, request: WebSocketRequest) -> None:
        code = 1000
        try:
            await self._handler(request)
        except ConnectionClosed as exc:
            websocket = request._websocket
            if websocket is not None and websocket._ws.state is State.OPEN:
                # Another connection the handler used closed, not this one: a handler error.
                logger.exception("connection handler failed")
                code = 1011
            else:
                logger.debug("connection handler ended: %r", exc)
        except Exception:
            logger.exception("connection handler failed")
            code = 1011
        websocket = request._websocket
        if websocket is not None:
            await websocket._close(code)
        elif not request._answered:
            # Neither accepted nor rejected: the client gets an answer, not a bare TCP close.
            request._answered = True
            if code == 1000:
                logger.error("connection handler neither accepted nor rejected the request")
            body = b"Failed to open a WebSocket connection.\n"
            await _send_refusal(request._connection, _refusal(500, [], body))


async def serve_websocket(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    handler_nursery: trio.Nursery | None = None,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
    max_message_size: int = MAX_MESSAGE_SIZE,
    receive_buffer_size: int | None = RECEIVE_BYTES,
    connect_timeout: float = CONN_TIMEOUT,
    disconnect_timeout: float = CONN_TIMEOUT,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    compression: str | Sequence[ServerExtensionFactory] | None = None,
    ping_interval: float | None = None,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> NoReturn:
    """Serve WebSocket connections on ``host:port`` (TLS with ``ssl_context``) until
    cancelled: ``server = await nursery.start(serve_websocket, handler, host, port, None)``
    gives the :class:`WebSocketServer` once it listens. See :class:`WebSocketServer` for
    what happens around ``handler``."""
    listeners: Sequence[trio.abc.Listener[Any]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    server = WebSocketServer(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    await server.run(task_status=task_status)

"""The whole exception hierarchy of wskit, in one place.

Every exception wskit raises on purpose is one of these (or a standard ``TimeoutError`` /
``OSError`` from the I/O layer)::

    WebSocketError
    ├── ProtocolError
    │   ├── LocalProtocolError        (also RuntimeError) this side misused the API
    │   └── RemoteProtocolError       the peer broke RFC 6455 / 7692; carries a close code
    │       ├── PayloadTooBig         a limit was exceeded (close code 1009)
    │       └── InvalidHandshake      the opening handshake failed; carries an HTTP status
    │           ├── InvalidStatus     (client) the server answered with something other than 101
    │           └── NegotiationError  an extension or subprotocol offer could not be accepted
    ├── ConnectionClosed              the connection is closed; carries code and reason
    │   ├── ConnectionClosedOK        ... after a normal closing handshake (1000, 1001, 1005)
    │   └── ConnectionClosedError     ... abnormally; ``__cause__`` says why
    ├── ConcurrencyError              (also RuntimeError) two coroutines/threads in recv at once
    ├── IntegrationError              (also RuntimeError) the host server cannot hand over
    │                                 its connection (a WSGI server that hides its sockets)
    └── InvalidURI                    (also ValueError) not a ws:// or wss:// URI

The sans-I/O core never raises because of what the peer sent: it records a
:class:`RemoteProtocolError` as the cause of the ``Closed`` event, and the front ends raise
:class:`ConnectionClosedError` from it (``raise ... from cause``), translating once per layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wskit.core.events import Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "IntegrationError",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "LocalProtocolError",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "RemoteProtocolError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every exception defined by wskit."""


class ProtocolError(WebSocketError):
    """A breach of the WebSocket protocol, by this side or by the peer."""


class LocalProtocolError(ProtocolError, RuntimeError):
    """This side asked for something the protocol forbids in the current state.

    Examples: sending a data frame after a Close frame, a control frame over 125 bytes, a close
    code that must not be sent on the wire (1005, 1006, 1015).
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection is failed with :attr:`code`.

    :attr:`code` is the WebSocket close code sent to the peer (1002 protocol error, 1007
    invalid payload data, 1009 message too big, ...); :attr:`reason` is the short text sent with
    it (at most 123 bytes of UTF-8).
    """

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class PayloadTooBig(RemoteProtocolError):
    """A frame, a message or a fragment count exceeded its limit (close code 1009)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 1009)


class InvalidHandshake(RemoteProtocolError):
    """The opening handshake failed.

    On a server, :attr:`status` is the HTTP status the client is answered with (400, 405,
    426, 431, 505, ...) and :attr:`headers` the extra response headers (``Sec-WebSocket-Version``
    for 426). On a client the handshake failed because of what the server sent.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(reason, 1002)
        self.status = status
        self.headers = headers


class InvalidStatus(InvalidHandshake):
    """(Client) the server answered the upgrade request with a status other than 101."""

    def __init__(self, response: Response) -> None:
        super().__init__(
            f"server rejected WebSocket connection: HTTP {response.status}", response.status
        )
        self.response = response


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol offer or answer is invalid or cannot be accepted."""


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed.

    :attr:`code` and :attr:`reason` are those of the Close frame received from the peer
    (1005 if it had no code, 1006 if no Close frame was received at all); :attr:`sent_code`
    is the code this side sent, or ``None``.
    """

    def __init__(self, code: int, reason: str = "", sent_code: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"received {self.code}"
        if self.reason:
            text += f" ({self.reason})"
        if self.sent_code is not None:
            text += f"; sent {self.sent_code}"
        return text


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed after a normal closing handshake (code 1000, 1001 or 1005)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally; ``__cause__`` holds the reason when one is known."""


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines or threads tried to receive from one connection at the same time."""


class IntegrationError(WebSocketError, RuntimeError):
    """The web server a WebSocket route runs in cannot hand its connection over to wskit.

    A WSGI server that does not expose the client's socket in the environ, for example; the
    message names the servers that do.
    """


class InvalidURI(WebSocketError, ValueError):
    """A URI is not a valid ``ws://`` or ``wss://`` URI."""

    def __init__(self, uri: str, why: str) -> None:
        super().__init__(f"{uri!r} is not a valid WebSocket URI: {why}")
        self.uri = uri

"""What the sans-I/O core hands out: one small frozen class per kind of event.

``Connection.events()`` returns these, in the order the peer sent them:

* :class:`Request` (server) a complete HTTP request head was received; answer it with
  ``accept()``/``reject()`` and ``send_response()``.
* :class:`Response` (client) the server answered 101 and the connection is open.
* :class:`Text` / :class:`Binary` a message (or, in streaming mode, a fragment of one).
* :class:`Ping` / :class:`Pong` control frames (the pong to a ping is already queued).
* :class:`Closed` the connection is over; always the last event, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from wskit.core.headers import Headers

__all__ = ["Binary", "Closed", "Event", "Ping", "Pong", "Request", "Response", "Text"]


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request head, as the server received it or the client sent it.

    ``target`` is the request-target as sent (``/chat?room=1``); :attr:`path` and
    :attr:`query` split it. ``remote_address`` is filled in by the I/O layer.
    """

    target: str
    headers: Headers
    method: str = "GET"
    http_version: str = "HTTP/1.1"
    remote_address: object = field(default=None, compare=False)

    @property
    def path(self) -> str:
        """The path of the request target, without the query (``/chat``)."""
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """The query string as a dict (last value wins; see :attr:`query_string`)."""
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    @property
    def query_string(self) -> str:
        """The raw query string, without ``?``."""
        return urlsplit(self.target).query

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header (sent by browsers), for the server's cross-site checks."""
        return self.headers.get("Origin")

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offers, in its order of preference."""
        values = self.headers.get_all("Sec-WebSocket-Protocol")
        return [p.strip() for v in values for p in v.split(",") if p.strip()]


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response head and body, as the client received it or the server sent it."""

    status: int
    headers: Headers
    body: bytes = b""
    reason: str = ""
    http_version: str = "HTTP/1.1"


# Text, Binary, Ping and Pong are the events of the hot path: when Cython compiles this module
# they become extension types (events.pxd), ten times cheaper to create. Cython's dataclass
# support does not take ``slots=True``, so these four go without it (they are short-lived).


@dataclass(frozen=True)
class Text:
    """A text message. In streaming mode, a fragment; ``final`` marks the last one."""

    data: str
    final: bool = True


@dataclass(frozen=True)
class Binary:
    """A binary message. In streaming mode, a fragment; ``final`` marks the last one."""

    data: bytes
    final: bool = True


@dataclass(frozen=True)
class Ping:
    """A Ping frame was received (the core has already queued the Pong)."""

    payload: bytes = b""


@dataclass(frozen=True)
class Pong:
    """A Pong frame was received."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: the last event a connection emits.

    ``code``/``reason`` come from the peer's Close frame: 1005 when it carried no code,
    1006 when no Close frame arrived at all. ``sent_code``/``sent_reason`` are what this side
    sent (``None`` when it sent nothing). ``cause`` is the exception that failed the connection,
    if any (a :class:`~wskit.exceptions.RemoteProtocolError` for a peer error).
    """

    code: int = 1006
    reason: str = ""
    sent_code: int | None = None
    sent_reason: str = ""
    cause: BaseException | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True for a normal close: no failure, and codes 1000, 1001 or 1005 both ways."""
        return (
            self.cause is None
            and self.code in _OK_CODES
            and (self.sent_code is None or self.sent_code in _OK_CODES)
        )


_OK_CODES = frozenset((1000, 1001, 1005))

Event = Request | Response | Text | Binary | Ping | Pong | Closed

"""The read-only state every front end's connection shows, written once.

A connection of any front end holds its sans-I/O core as ``core`` and, once the core said the
connection is closed, the :class:`~wskit.core.events.Closed` event as ``_closed_event``; what
the application reads about the handshake and the close follows from those two alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wskit.core.connection import State
from wskit.core.events import Closed, Request, Response
from wskit.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

if TYPE_CHECKING:
    from wskit.core.connection import Connection as CoreConnection

__all__ = ["ConnectionState"]


class ConnectionState:
    """Properties of a connection read from its core and its ``Closed`` event (a mixin:
    the class that uses it sets ``core`` and ``_closed_event``)."""

    __slots__ = ()

    if TYPE_CHECKING:
        core: CoreConnection
        _closed_event: Closed | None

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED (the core's state)."""
        return self.core.state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the opening handshake, if any."""
        return self.core.subprotocol

    @property
    def request(self) -> Request | None:
        """The opening handshake's request (sent by a client, received by a server)."""
        return getattr(self.core, "request", None)

    @property
    def response(self) -> Response | None:
        """The opening handshake's response."""
        return getattr(self.core, "response", None)

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer (1005 if none, 1006 if TCP just dropped);
        None while the connection is open."""
        event = self._closed_event
        return None if event is None else event.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received from the peer; None while the connection is open."""
        event = self._closed_event
        return None if event is None else event.reason

    def _closed_exception(self) -> ConnectionClosed:
        """The ``ConnectionClosed`` to raise once the connection is closed or closing."""
        event = self._closed_event
        if event is None:
            core = self.core
            if core.close_rcvd is None:
                return ConnectionClosedError(1006, "", None)
            # The core handled the peer's Close frame, but its Closed event is not dispatched
            # yet (the application runs from an earlier event of the same read).
            code, reason = core.close_rcvd
            sent_code = core.close_sent[0] if core.close_sent else None
            event = Closed(code, reason, sent_code, "", core.cause)
        cls = ConnectionClosedOK if event.ok else ConnectionClosedError
        exc = cls(event.code, event.reason, event.sent_code)
        exc.__cause__ = event.cause
        return exc

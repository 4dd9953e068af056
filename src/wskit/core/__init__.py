"""The sans-I/O WebSocket protocol core: bytes in, events out; calls in, bytes out.

No sockets, no event loop, no threads, no clock: every front end (asyncio, threads, trio, the
integrations) drives the same :class:`ClientConnection` / :class:`ServerConnection` through the
loop written at the top of :mod:`wskit.core.connection`.
"""

from __future__ import annotations

from wskit.core.connection import ClientConnection, Connection, ServerConnection, State
from wskit.core.events import Binary, Closed, Event, Ping, Pong, Request, Response, Text
from wskit.core.frames import IMPLEMENTATION, CloseCode, Frame, Opcode
from wskit.core.headers import Headers
from wskit.core.limits import DEFAULT_LIMITS, Limits
from wskit.core.uri import WSURI, parse_uri

__all__ = [
    "DEFAULT_LIMITS",
    "IMPLEMENTATION",
    "WSURI",
    "Binary",
    "ClientConnection",
    "CloseCode",
    "Closed",
    "Connection",
    "Event",
    "Frame",
    "Headers",
    "Limits",
    "Opcode",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "ServerConnection",
    "State",
    "Text",
    "parse_uri",
]

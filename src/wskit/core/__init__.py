"""The sans-I/O WebSocket protocol core: bytes in, events out; calls in, bytes out.

No sockets, no event loop, no threads, no clock: every front end (asyncio, threads, trio, the
integrations) drives the same :class:`ClientConnection` / :class:`ServerConnection` through the
loop written at the top of :mod:`wskit.core.connection`.
"""

from __future__ import annotations

from types import ModuleType

from wskit.core import connection as _connection
from wskit.core import events as _events
from wskit.core import frames as _frames
from wskit.core.connection import ClientConnection, Connection, ServerConnection, State
from wskit.core.events import Binary, Closed, Event, Ping, Pong, Request, Response, Text
from wskit.core.frames import CloseCode, Frame, Opcode
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


def _compiled(module: ModuleType) -> bool:
    return not (module.__file__ or "").endswith(".py")


def _implementation() -> str:
    parts = [_compiled(m) for m in (_connection, _events, _frames)]
    parts.append(_frames.apply_mask is not _frames.apply_mask_py)
    if all(parts):
        return "compiled"
    return "partial" if any(parts) else "python"


#: Which hot path runs: "compiled" (the Cython-compiled core and the C module, built when
#: Cython and a compiler were there at install time), "python" (none of it: no compiler, or
#: ``WSKIT_NO_EXTENSIONS=1`` in the environment), or "partial" (a build that half failed).
IMPLEMENTATION = _implementation()

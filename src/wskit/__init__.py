"""wskit: one WebSocket library (RFC 6455, RFC 7692) for every Python stack.

The layers, each looking only down::

    applications   wskit.handlers (class-based hooks), cli (python -m wskit connect | serve)
    interfaces     wskit.abc (what applications ask of a connection, on any front end)
    front ends     wskit.asyncio (connect, serve)
    core           wskit.core: sans-I/O handshake, frames, messages & UTF-8, close/ping state
                   machine, permessage-deflate, limits
    errors         wskit.exceptions (imported by every layer)

Start with :func:`wskit.asyncio.serve` and :func:`wskit.asyncio.connect`.
"""

from __future__ import annotations

# First: with WSKIT_NO_EXTENSIONS=1, the core's .py sources load even where compiled ones exist.
import wskit._purepath  # noqa: F401
from wskit.core import Headers, Limits, Request, Response, State
from wskit.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    IntegrationError,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    LocalProtocolError,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    RemoteProtocolError,
    WebSocketError,
)

__version__ = "0.1.0"

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "IntegrationError",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "Limits",
    "LocalProtocolError",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "State",
    "WebSocketError",
    "__version__",
]

"""The asyncio front end: :func:`serve` and :func:`connect` on the sans-I/O core."""

from __future__ import annotations

from wskit.asyncio.client import WebSocketClientConnection, connect
from wskit.asyncio.connection import (
    BroadcastResult,
    Connection,
    ConnectionStatistics,
    Data,
    broadcast,
)
from wskit.asyncio.server import Server, WebSocketServerConnection, accept, serve

__all__ = [
    "BroadcastResult",
    "Connection",
    "ConnectionStatistics",
    "Data",
    "Server",
    "WebSocketClientConnection",
    "WebSocketServerConnection",
    "accept",
    "broadcast",
    "connect",
    "serve",
]

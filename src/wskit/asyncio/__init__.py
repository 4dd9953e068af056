"""The asyncio front end: :func:`serve` and :func:`connect` on the sans-I/O core."""

from __future__ import annotations

from wskit.asyncio.client import WebSocketClientConnection, connect
from wskit.asyncio.connection import Connection, ConnectionStatistics, Data
from wskit.asyncio.server import Server, WebSocketServerConnection, serve

__all__ = [
    "Connection",
    "ConnectionStatistics",
    "Data",
    "Server",
    "WebSocketClientConnection",
    "WebSocketServerConnection",
    "connect",
    "serve",
]

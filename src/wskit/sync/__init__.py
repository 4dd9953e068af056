"""The threads front end: :func:`serve` and :func:`connect` on the sans-I/O core.

It mirrors :mod:`wskit.asyncio` module for module (``connection``, ``client``, ``server``)
with blocking calls: ``recv(timeout=...)``, ``send``, ``ping``, ``close``; a reader thread
per connection answers pings and runs the keepalive and close timers, and the server gives
each connection a thread of its own for its handler.
"""

from __future__ import annotations

from wskit.abc import ConnectionStatistics, Data
from wskit.sync.client import WebSocketClientConnection, connect
from wskit.sync.connection import Connection
from wskit.sync.server import Server, WebSocketServerConnection, accept, serve

__all__ = [
    "Connection",
    "ConnectionStatistics",
    "Data",
    "Server",
    "WebSocketClientConnection",
    "WebSocketServerConnection",
    "accept",
    "connect",
    "serve",
]

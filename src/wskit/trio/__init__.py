"""The Trio front end: :func:`serve` and :func:`connect` on the sans-I/O core.

It mirrors :mod:`wskit.asyncio` module for module (``connection``, ``client``, ``server``)
with Trio's idioms: every task runs in a nursery the caller controls (the ``async with``
block of ``serve``/``connect``, or a nursery passed in), ``aclose()`` closes, ``ping()``
waits for its pong, and timeouts are Trio cancel scopes around any call.
"""

from __future__ import annotations

from wskit.abc import ConnectionStatistics, Data
from wskit.trio.client import WebSocketClientConnection, connect
from wskit.trio.connection import Connection
from wskit.trio.server import Server, WebSocketServerConnection, accept, serve

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

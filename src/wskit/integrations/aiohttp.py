"""WebSocket routes in aiohttp apps, on wskit's protocol core.

aiohttp has WebSockets of its own; this module lets a route hand its connection to wskit
instead (wskit's limits, compression, strictness and API), on the app's port::

    async def echo(request):
        ws = await wskit.integrations.aiohttp.accept(request)
        async for message in ws:
            await ws.send(message)
        return web.Response()             # not sent: the connection is wskit's by now

:func:`accept` takes the request's transport over and returns a :mod:`wskit.asyncio`
connection. aiohttp's side of the connection is detached from the transport: what the route
returns is never written (it may return at once and leave the connection to other tasks),
and aiohttp forgets the connection when the WebSocket ends. aiohttp is not imported here:
the request is only read.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from wskit.asyncio import WebSocketServerConnection
from wskit.asyncio import accept as accept_transport
from wskit.exceptions import IntegrationError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["accept", "request_head"]


def request_head(request: web.BaseRequest) -> bytes:
    """The request head as the client sent it (aiohttp keeps the raw target and headers)."""
    version = request.version
    lines = [f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}".encode()]
    lines += [name + b": " + value for name, value in request.raw_headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def accept(request: web.BaseRequest, **options: Any) -> WebSocketServerConnection:
    """Take over ``request``'s connection and run the WebSocket opening handshake.

    Returns an open :class:`wskit.asyncio.WebSocketServerConnection`. ``options`` are those
    of :func:`wskit.asyncio.accept` (``subprotocols``, ``compression``, ``max_size``,
    ``ping_interval``, ...). Raises :class:`~wskit.exceptions.InvalidHandshake` when the
    request is not an acceptable upgrade (the client got the HTTP error) and
    :class:`~wskit.exceptions.IntegrationError` when the connection is already gone.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise IntegrationError("the request's connection is closed: nothing to take over")
    protocol = request.protocol
    # aiohttp serves no further request on this connection, and loses its reference to the
    # transport: its writes (the route's response) then fail quietly instead of reaching
    # the client between WebSocket frames, and it never closes what is wskit's.
    protocol.close()
    protocol.transport = None
    try:
        connection = await accept_transport(
            transport=transport, head=request_head(request), **options
        )
    except BaseException:
        protocol.connection_lost(None)
        raise
    # When the WebSocket ends, aiohttp forgets the connection as if TCP had closed under it.
    ended = asyncio.ensure_future(connection.wait_closed())
    ended.add_done_callback(lambda _: protocol.connection_lost(None))
    connection.__dict__["_aiohttp_cleanup"] = ended  # the task lives as long as the connection
    return connection

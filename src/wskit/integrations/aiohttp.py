"""WebSocket routes in aiohttp apps, on wskit's protocol core.

aiohttp has WebSockets of its own; this module lets a route hand its connection to wskit
instead (wskit's limits, compression, strictness and API), on the app's port::

    async def echo(request):
        ws = await wskit.integrations.aiohttp.accept(request)
        async for message in ws:
            await ws.send(message)
        return web.Response()             # not sent: the connection is wskit's by now

:func:`accept` takes the request's transport over (aiohttp stops reading it and will close
nothing that is wskit's) and returns a :mod:`wskit.asyncio` connection. aiohttp is not
imported here: the request is only read.
"""

from __future__ import annotations

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
    # aiohttp serves no further request on this connection and leaves the transport alone
    # once the route returns (its response is dropped: the transport is closed by then).
    request.protocol.close()
    return await accept_transport(transport=transport, head=request_head(request), **options)

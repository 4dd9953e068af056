"""simple-websocket's aiohttp example on wskit: only the import changed.

    python examples/simple_aiohttp_echo.py     # ws://127.0.0.1:5000/echo
    python examples/simple_aio_client.py       # then type lines

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens (default 127.0.0.1:5000).
"""

from __future__ import annotations

import os

from aiohttp import web

from wskit.simple import AioServer, ConnectionClosed

app = web.Application()


async def echo(request: web.Request) -> web.Response:
    ws = await AioServer.accept(aiohttp=request)
    try:
        while True:
            data = await ws.receive()
            await ws.send(data)
    except ConnectionClosed:
        pass
    return web.Response(text="")


app.add_routes([web.get("/echo", echo)])

if __name__ == "__main__":
    web.run_app(
        app,
        host=os.environ.get("WSKIT_HOST", "127.0.0.1"),
        port=int(os.environ.get("WSKIT_PORT", "5000")),
        print=None,
    )

"""simple-websocket's ASGI example on wskit: only the import changed.

    uvicorn --lifespan off --port 5000 simple_asgi_echo:echo    # from this directory
    python examples/simple_asgi_echo.py                         # the same, through uvicorn.run
    python examples/simple_aio_client.py                        # then type lines

Any path is the echo endpoint. ``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens
(default 127.0.0.1:5000). Hypercorn runs it too: ``hypercorn simple_asgi_echo:echo``.
"""

from __future__ import annotations

import os
from typing import Any

from wskit.simple import AioServer, ConnectionClosed


async def echo(scope: Any, receive: Any, send: Any) -> None:
    ws = await AioServer.accept(asgi=(scope, receive, send))
    try:
        while True:
            data = await ws.receive()
            await ws.send(data)
    except ConnectionClosed:
        pass


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        echo,
        host=os.environ.get("WSKIT_HOST", "127.0.0.1"),
        port=int(os.environ.get("WSKIT_PORT", "5000")),
        lifespan="off",
        log_level="warning",
    )

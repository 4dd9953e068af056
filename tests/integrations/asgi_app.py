"""An ASGI app with WebSocket routes through wskit.integrations.asgi, and a launcher that runs
it under a real ASGI server: ``python -m tests.integrations.asgi_app SERVER PORT [deflate]``.

The routes are those of wsgi_app.py: ``/echo`` (subprotocol "chat", messages up to 2 MiB),
``/echo-plain`` (64 KiB), ``/closer`` (closes with the ``"<code> <reason>"`` it is sent),
``/last-close`` (plain HTTP: the code and reason of the last client that closed ``/echo``),
and ``/`` (plain HTTP).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from wskit.exceptions import ConnectionClosed
from wskit.integrations.asgi import AsgiConnection, accept

last_close: dict[str, Any] = {}


async def echo(ws: AsgiConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    last_close.update(code=ws.close_code, reason=ws.close_reason)


async def closer(ws: AsgiConnection) -> None:
    code, _, reason = str(await ws.recv()).partition(" ")
    await ws.close(int(code), reason)


async def http(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps(last_close).encode() if scope["path"] == "/last-close" else b"plain HTTP"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await http(scope, receive, send)
        return
    path = scope["path"]
    if path == "/echo":
        ws = await accept(scope, receive, send, subprotocols=["chat"], max_size=2 * 1024 * 1024)
        await echo(ws)
    elif path == "/echo-plain":
        await echo(await accept(scope, receive, send, max_size=64 * 1024))
    elif path == "/closer":
        await closer(await accept(scope, receive, send))
    else:
        await send({"type": "websocket.close", "code": 1008})


def main(server: str, port: int, deflate: bool) -> None:
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws_per_message_deflate=deflate,
            ws_max_size=16 * 1024 * 1024,
        )
    elif server == "hypercorn":
        import asyncio

        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.websocket_max_message_size = 16 * 1024 * 1024
        asyncio.run(serve(app, config))  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown server {server!r}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "deflate")

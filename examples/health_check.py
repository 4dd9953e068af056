"""process_request: answer plain HTTP before the WebSocket handshake.

``GET /healthz`` gets ``200 OK`` (for a load balancer); every other request must carry
``Authorization: Bearer <token>`` or is refused with ``401``; the rest becomes a WebSocket
connection that echoes messages.

    WSKIT_TOKEN=s3cret python examples/health_check.py      # ws://127.0.0.1:8765/
    curl -i http://127.0.0.1:8765/healthz
    python -m wskit connect ws://127.0.0.1:8765/ --header "Authorization: Bearer s3cret"
"""

from __future__ import annotations

import asyncio
import hmac
import os

from wskit.asyncio import WebSocketServerConnection, serve
from wskit.core.events import Request, Response

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))
TOKEN = os.environ.get("WSKIT_TOKEN", "s3cret")


def process_request(connection: WebSocketServerConnection, request: Request) -> Response | None:
    """Return a response to answer with plain HTTP, or None to go on with the handshake."""
    if request.path == "/healthz":
        return connection.respond(200, "OK\n")
    offered = request.headers.get("Authorization") or ""
    # compare_digest takes as long whatever the mismatch: no timing hint about the token.
    if not hmac.compare_digest(offered.encode(), f"Bearer {TOKEN}".encode()):
        return connection.respond(
            401, "Missing or invalid token.\n", [("WWW-Authenticate", "Bearer")]
        )
    return None


async def echo(websocket: WebSocketServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    async with serve(echo, HOST, PORT, process_request=process_request) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

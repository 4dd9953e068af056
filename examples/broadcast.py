"""Broadcast server: every message a client sends goes to every connected client.

The registration pattern: a handler adds its connection to a set when it starts and removes it
in ``finally``, however the connection ends, so the set holds exactly the live connections.

    python examples/broadcast.py            # ws://127.0.0.1:8765/ (WSKIT_HOST, WSKIT_PORT)
    python -m wskit connect ws://127.0.0.1:8765/     # in two or three terminals
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from wskit.asyncio import Data, WebSocketServerConnection, serve
from wskit.exceptions import ConnectionClosed

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))

#: The connected clients. One process only: several processes need a message broker.
CONNECTIONS: set[WebSocketServerConnection] = set()


async def send_quietly(websocket: WebSocketServerConnection, message: Data) -> None:
    """Send, ignoring a client that is leaving: its own handler will unregister it."""
    with contextlib.suppress(ConnectionClosed):
        await websocket.send(message)


async def broadcast(message: Data) -> None:
    """Send ``message`` to every client at once; a slow client does not hold up the others
    (``send`` only waits while that client's write buffer is over its high-water mark)."""
    await asyncio.gather(*(send_quietly(ws, message) for ws in CONNECTIONS))


async def handler(websocket: WebSocketServerConnection) -> None:
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            await broadcast(message)
    finally:
        CONNECTIONS.discard(websocket)


async def main() -> None:
    async with serve(handler, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

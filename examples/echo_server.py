"""Echo server: send every message back as it came, text as text and binary as binary.

    python examples/echo_server.py          # ws://127.0.0.1:8765/
    python -m wskit connect ws://127.0.0.1:8765/     # then type lines

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens.
"""

from __future__ import annotations

import asyncio
import os

from wskit.asyncio import WebSocketServerConnection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


async def echo(websocket: WebSocketServerConnection) -> None:
    # The loop ends quietly when the client closes normally (1000 or 1001).
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    async with serve(echo, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

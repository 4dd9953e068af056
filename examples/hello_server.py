"""Hello server: read a name, answer with a greeting, and close (pairs with hello_client.py).

    python examples/hello_server.py         # listens on ws://127.0.0.1:8765/

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens.
"""

from __future__ import annotations

import asyncio
import os

from wskit.asyncio import WebSocketServerConnection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


async def hello(websocket: WebSocketServerConnection) -> None:
    """Runs once per connection; the connection is closed (1000) when it returns."""
    name = await websocket.recv()
    if not isinstance(name, str):  # recv() returns str for text, bytes for binary
        await websocket.close(1003, "send your name as text")
        return
    print(f"<<< {name}")

    greeting = f"Hello {name}!"
    await websocket.send(greeting)
    print(f">>> {greeting}")


async def main() -> None:
    async with serve(hello, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

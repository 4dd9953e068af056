"""Hello client: send a name, print the greeting (pairs with hello_server.py).

    python examples/hello_client.py Alice    # or without a name: it asks for one

``WSKIT_HOST`` and ``WSKIT_PORT`` say where the server is (default 127.0.0.1:8765).
"""

from __future__ import annotations

import asyncio
import os
import sys

from wskit.asyncio import connect

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


async def hello(name: str) -> None:
    async with connect(f"ws://{HOST}:{PORT}/") as websocket:
        await websocket.send(name)
        print(f">>> {name}")

        greeting = await websocket.recv()
        print("<<<", greeting)


if __name__ == "__main__":
    asyncio.run(hello(sys.argv[1] if len(sys.argv) > 1 else input("What's your name? ")))

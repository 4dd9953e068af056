"""Ticker server: pushes a numbered tick to every connected client with ``broadcast()``.

``broadcast(server.connections, message)`` encodes the frame once and writes the same bytes
to every connection, without waiting; a client that reads too slowly is skipped (and counted)
instead of holding up the others.

    python examples/ticker.py               # ws://127.0.0.1:8765/ (WSKIT_HOST, WSKIT_PORT)
    python -m wskit connect ws://127.0.0.1:8765/     # in two or three terminals
"""

from __future__ import annotations

import asyncio
import os

from wskit.asyncio import Connection, broadcast, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))
#: Seconds between ticks.
PERIOD = float(os.environ.get("WSKIT_PERIOD", "1"))


async def handler(websocket: Connection) -> None:
    """Keep the connection open until the client leaves; the ticker does the sending."""
    await websocket.wait_closed()


async def main() -> None:
    async with serve(handler, HOST, PORT) as server:
        tick = 0
        while True:
            tick += 1
            result = broadcast(server.connections, f"tick {tick}")
            if result.skipped_slow:
                print(f"tick {tick}: {result.skipped_slow} slow client(s) skipped", flush=True)
            await asyncio.sleep(PERIOD)


if __name__ == "__main__":
    asyncio.run(main())

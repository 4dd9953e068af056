"""Consumer and producer on one connection: read what the client sends while pushing ticks.

``consume`` reads every message (here it only counts them); ``produce`` sends a tick every
second saying how many arrived so far. The handler runs both and stops the other as soon as
one ends, which is how a handler learns that the client left either way. Written with
``asyncio.wait`` so that it runs on Python 3.10 (``asyncio.TaskGroup`` is 3.11+; see
docs/quickstart.md for that version).

    python examples/consumer_producer.py    # ws://127.0.0.1:8765/ (WSKIT_HOST, WSKIT_PORT)
"""

from __future__ import annotations

import asyncio
import os

from wskit.asyncio import Data, WebSocketServerConnection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))
#: Seconds between two ticks.
PERIOD = 1.0


async def consume(websocket: WebSocketServerConnection, inbox: list[Data]) -> None:
    """Ends when the client closes the connection."""
    async for message in websocket:
        inbox.append(message)


async def produce(websocket: WebSocketServerConnection, inbox: list[Data]) -> None:
    """Ends with ConnectionClosed when a send finds the connection closed."""
    tick = 0
    while True:
        await asyncio.sleep(PERIOD)
        tick += 1
        await websocket.send(f"tick {tick}: {len(inbox)} messages received")


async def handler(websocket: WebSocketServerConnection) -> None:
    inbox: list[Data] = []
    tasks = {
        asyncio.create_task(consume(websocket, inbox)),
        asyncio.create_task(produce(websocket, inbox)),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Stop the other task (or both, if this handler itself is cancelled).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        # Re-raise how the task ended. ConnectionClosed (the client left) ends the handler
        # quietly; any other error reaches the server's log, and the client gets 1011.
        task.result()


async def main() -> None:
    async with serve(handler, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""Clock server: push the current UTC time to every client, once a second.

    python examples/time_server.py          # ws://127.0.0.1:8765/ (WSKIT_HOST, WSKIT_PORT)

Then open ``examples/time.html`` in a browser: it connects to ws://127.0.0.1:8765/ (another
address with ``time.html?ws=ws://host:port/``) and lists the times as they arrive.
"""

from __future__ import annotations

import asyncio
import datetime
import os

from wskit.asyncio import WebSocketServerConnection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))
#: Seconds between two messages.
PERIOD = 1.0


async def show_time(websocket: WebSocketServerConnection) -> None:
    # Once the client went away, send() raises ConnectionClosed: that is how a producer learns
    # it. The exception ends the handler, and the server takes it as the client leaving, not as
    # an error (it logs it at DEBUG only).
    while True:
        now = datetime.datetime.now(datetime.timezone.utc)
        await websocket.send(now.isoformat())
        await asyncio.sleep(PERIOD)


async def main() -> None:
    async with serve(show_time, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""simple-websocket's asyncio client example on wskit: only the import changed.

    python examples/simple_aio_client.py       # talks to ws://127.0.0.1:5000/echo

Type lines; each is sent, and the reply printed. Ctrl-D (or Ctrl-C) closes the connection.
``WSKIT_HOST`` and ``WSKIT_PORT`` say where the server is.
"""

from __future__ import annotations

import asyncio
import os

from wskit.simple import AioClient, ConnectionClosed

URL = (
    f"ws://{os.environ.get('WSKIT_HOST', '127.0.0.1')}:{os.environ.get('WSKIT_PORT', '5000')}/echo"
)


async def main() -> None:
    ws = await AioClient.connect(URL)
    try:
        while True:
            data = input("> ")
            await ws.send(data)
            reply = await ws.receive()
            print(f"< {reply!s}")
    except (KeyboardInterrupt, EOFError, ConnectionClosed):
        await ws.close()


if __name__ == "__main__":
    asyncio.run(main())

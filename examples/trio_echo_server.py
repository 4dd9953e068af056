"""Echo server on Trio (wskit.trio): each connection runs the handler in a task of its own.

    python examples/trio_echo_server.py       # ws://127.0.0.1:8765/
    python examples/trio_client.py            # then type lines

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens; Ctrl-C (or SIGTERM) stops it,
closing every connection with 1001.
"""

from __future__ import annotations

import os
import signal

import trio

from wskit.trio import Connection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


async def echo(websocket: Connection) -> None:
    # The loop ends quietly when the client closes normally (1000 or 1001).
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    # The server and every connection's task live in the nursery of the ``async with``
    # block: leaving it (here: on a signal) closes every connection with 1001.
    async with serve(echo, HOST, PORT):
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


if __name__ == "__main__":
    trio.run(main)

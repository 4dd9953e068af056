"""trio-websocket's echo server example (its README) on wskit: only the import changed.

    python examples/trio_websocket_echo_server.py    # ws://127.0.0.1:8000
    python examples/trio_websocket_client.py         # with WSKIT_PORT=8000 set

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens (defaults as in the README). Type
hints were added, so that the example passes mypy --strict like the others.
"""

from __future__ import annotations

import os

import trio

from wskit.trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8000"))


async def echo_server(request: WebSocketRequest) -> None:
    ws = await request.accept()
    while True:
        try:
            message = await ws.get_message()
            await ws.send_message(message)
        except ConnectionClosed:
            break


async def main() -> None:
    await serve_websocket(echo_server, HOST, PORT, ssl_context=None)


trio.run(main)

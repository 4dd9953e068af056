"""trio-websocket's client example (its README) on wskit: only the import changed.

    python examples/trio_websocket_client.py     # wss://echo.websocket.org, as in the README

With ``WSKIT_HOST`` or ``WSKIT_PORT`` set it talks to ws://WSKIT_HOST:WSKIT_PORT instead
(defaults 127.0.0.1 and 8000, where trio_websocket_echo_server.py listens). Type hints were
added, so that the example passes mypy --strict like the others.
"""

from __future__ import annotations

import os
from sys import stderr

import trio

from wskit.trio_websocket import open_websocket_url

if "WSKIT_HOST" in os.environ or "WSKIT_PORT" in os.environ:
    URL = f"ws://{os.environ.get('WSKIT_HOST', '127.0.0.1')}:{os.environ.get('WSKIT_PORT', '8000')}"
else:
    URL = "wss://echo.websocket.org"


async def main() -> None:
    try:
        async with open_websocket_url(URL) as ws:
            await ws.send_message("hello world!")
            message = await ws.get_message()
            print("Received message: %s" % message)  # type: ignore[str-bytes-safe]  # noqa: UP031
    except OSError as ose:
        print("Connection attempt failed: %s" % ose, file=stderr)  # noqa: UP031


trio.run(main)

"""Echo server on threads (wskit.sync): each connection runs the handler in a thread of its own.

    python examples/sync_echo_server.py       # ws://127.0.0.1:8765/
    python examples/sync_client.py            # then type lines

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens; Ctrl-C (or SIGTERM) stops it,
closing every connection with 1001.
"""

from __future__ import annotations

import contextlib
import os
import signal

from wskit.sync import Connection, serve

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


def echo(websocket: Connection) -> None:
    # The loop ends quietly when the client closes normally (1000 or 1001).
    for message in websocket:
        websocket.send(message)


def main() -> None:
    # SIGTERM stops the server as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Leaving the block (here: on Ctrl-C) shuts the server down.
    with serve(echo, HOST, PORT) as server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()

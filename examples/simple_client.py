"""simple-websocket's blocking client example on wskit: only the import changed.

    python examples/simple_client.py           # talks to ws://127.0.0.1:5000/echo

Type lines; each is sent, and the reply printed. Ctrl-D (or Ctrl-C) closes the connection.
``WSKIT_HOST`` and ``WSKIT_PORT`` say where the server is.
"""

from __future__ import annotations

import os

from wskit.simple import Client, ConnectionClosed

URL = (
    f"ws://{os.environ.get('WSKIT_HOST', '127.0.0.1')}:{os.environ.get('WSKIT_PORT', '5000')}/echo"
)


def main() -> None:
    ws = Client.connect(URL)
    try:
        while True:
            data = input("> ")
            ws.send(data)
            reply = ws.receive()
            print(f"< {reply!s}")
    except (KeyboardInterrupt, EOFError, ConnectionClosed):
        ws.close()


if __name__ == "__main__":
    main()

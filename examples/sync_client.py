"""Blocking client (wskit.sync): send each line typed, print each message that comes back.

    python examples/sync_client.py            # talks to ws://127.0.0.1:8765/

A reply that takes more than a second is reported as such (``recv(timeout=...)`` raises
``TimeoutError`` and loses nothing: the late reply is printed with the next one). End with
Ctrl-D. ``WSKIT_HOST`` and ``WSKIT_PORT`` say where the server is.
"""

from __future__ import annotations

import os
import sys

from wskit.exceptions import ConnectionClosed
from wskit.sync import connect

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


def main() -> None:
    with connect(f"ws://{HOST}:{PORT}/") as websocket:
        for line in sys.stdin:
            try:
                websocket.send(line.rstrip("\n"))
                print(f"< {websocket.recv(timeout=1.0)!s}")
            except TimeoutError:
                print("(no reply within a second)")
            except ConnectionClosed as exc:
                print(f"connection closed: {exc}")
                return


if __name__ == "__main__":
    main()

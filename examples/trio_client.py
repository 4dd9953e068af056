"""Trio client (wskit.trio): send each line typed, print each message that comes back.

    python examples/trio_client.py            # talks to ws://127.0.0.1:8765/

A reply that takes more than a second is reported as such: ``recv()`` under a Trio cancel
scope loses nothing when the scope expires (the late reply is printed with the next one).
End with Ctrl-D. ``WSKIT_HOST`` and ``WSKIT_PORT`` say where the server is.
"""

from __future__ import annotations

import os
import sys

import trio

from wskit.exceptions import ConnectionClosed
from wskit.trio import connect

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


async def main() -> None:
    async with connect(f"ws://{HOST}:{PORT}/") as websocket:
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            try:
                await websocket.send(line.rstrip("\n"))
                with trio.move_on_after(1.0) as scope:
                    print(f"< {await websocket.recv()!s}", flush=True)
                if scope.cancelled_caught:
                    print("(no reply within a second)", flush=True)
            except ConnectionClosed as exc:
                print(f"connection closed: {exc}", flush=True)
                return


if __name__ == "__main__":
    trio.run(main)

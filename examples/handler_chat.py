"""Chat room with a class-based handler: every message goes to everyone else in the room.

    python examples/handler_chat.py                  # ws://127.0.0.1:8765/
    python -m wskit connect ws://127.0.0.1:8765/     # in two terminals, then type lines

The hooks run from the server's read callback, with no task per member: ``on_message`` is
called as each message arrives, and ``send`` writes at once. A member whose write buffer is
above its high-water mark (a client that reads too slowly) misses messages instead of making
the server buffer without bound. ``WSKIT_HOST`` and ``WSKIT_PORT`` choose where it listens.
"""

from __future__ import annotations

import asyncio
import os

from wskit.asyncio import serve
from wskit.handlers import Handler

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))


class ChatMember(Handler):
    #: Everyone in the room (one handler instance per connection).
    room: set[ChatMember] = set()

    def on_open(self) -> None:
        self.send(f"welcome; {len(self.room)} other(s) here")
        self.room.add(self)

    def on_message(self, message: str | bytes) -> None:
        for member in self.room:
            if member is not self and not member.connection.writing_paused:
                member.send(message)

    def on_close(self, code: int, reason: str) -> None:
        self.room.discard(self)


async def main() -> None:
    async with serve(ChatMember, HOST, PORT) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

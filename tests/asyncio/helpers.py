"""Helpers shared by the asyncio tests: a raw-socket peer and a write counter."""

from __future__ import annotations

import asyncio
from typing import Any

from wskit.core import ClientConnection, Response


async def open_raw(
    port: int,
) -> tuple[ClientConnection, asyncio.StreamReader, asyncio.StreamWriter]:
    """A client core over a plain socket, past the opening handshake: the test decides what
    goes out in each write (several frames in one TCP segment, say)."""
    client = ClientConnection(f"ws://127.0.0.1:{port}/", extensions=[])
    client.send_request()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(client.data_to_send()))
    client.receive_data(await reader.readuntil(b"\r\n\r\n"))
    assert [type(e) for e in client.events()] == [Response]
    return client, reader, writer


def count_writes(transport: Any) -> list[int]:
    """Record the size of every ``transport.write`` from now on (the selector transport of
    asyncio's default loop takes an instance attribute; the writes still happen)."""
    sizes: list[int] = []
    original = transport.write

    def write(data: bytes | bytearray | memoryview) -> None:
        sizes.append(len(data))
        original(data)

    transport.write = write
    return sizes

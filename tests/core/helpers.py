"""Shared helpers for the core tests: in-memory handshakes and ways of feeding bytes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from wskit.core import ClientConnection, ServerConnection
from wskit.core.events import Event, Request, Response

#: Every vector is fed whole, byte by byte, and in random splits with these pinned seeds.
SPLIT_SEEDS = (1, 2, 3)


def splits(data: bytes, how: str) -> Iterator[bytes]:
    """``data`` cut as ``how`` says: "whole", "bytes" (one at a time) or "random-N"."""
    if how == "whole":
        yield data
    elif how == "bytes":
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        rng = random.Random(int(how.split("-")[1]))
        i = 0
        while i < len(data):
            n = rng.randint(1, 7)
            yield data[i : i + n]
            i += n


FEED_MODES = ["whole", "bytes"] + [f"random-{s}" for s in SPLIT_SEEDS]


def feed(conn: ClientConnection | ServerConnection, data: bytes, how: str = "whole") -> list[Event]:
    """Feed ``data`` to ``conn`` cut as ``how`` says; return every event it produced."""
    events: list[Event] = []
    for chunk in splits(data, how):
        conn.receive_data(chunk)
        events.extend(conn.events())
    return events


def drain(conn: ClientConnection | ServerConnection) -> bytes:
    return b"".join(conn.data_to_send())


def open_pair(
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
    uri: str = "ws://example.com/chat",
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server connection that completed the opening handshake in memory."""
    client = ClientConnection(uri, **(client_kwargs or {}))
    server = ServerConnection(**(server_kwargs or {}))
    client.send_request()
    server.receive_data(drain(client))
    (request,) = server.events()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(drain(server))
    (response,) = client.events()
    assert isinstance(response, Response) and response.status == 101
    return client, server


def exchange(
    sender: ClientConnection | ServerConnection, receiver: ClientConnection | ServerConnection
) -> list[Event]:
    """Move what ``sender`` queued into ``receiver``; return the receiver's events."""
    receiver.receive_data(drain(sender))
    return receiver.events()

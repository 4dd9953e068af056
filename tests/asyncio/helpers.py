"""Helpers shared by the asyncio tests (and the uvicorn engine's): raw-socket peers and a
write counter."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from wskit.core import ClientConnection, Response, State
from wskit.core.events import Pong

#: Bound on each wait of the peer below (seconds).
PEER_WAIT = 10.0


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


@contextlib.asynccontextmanager
async def small_buffers() -> AsyncIterator[tuple[socket.socket, socket.socket, int]]:
    """A TCP connection on 127.0.0.1 whose server side sends through a 4 KiB buffer (no
    autotuning) and whose client side reads through one: a peer that reads nothing fills
    them fast. Yields the server's socket, the client's (both non-blocking) and the port."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    client_sock = socket.socket()
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_sock.setblocking(False)
    try:
        connecting = loop.create_task(loop.sock_connect(client_sock, listener.getsockname()))
        server_sock, _ = await loop.sock_accept(listener)
        await connecting
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        yield server_sock, client_sock, listener.getsockname()[1]
    finally:
        client_sock.close()
        listener.close()


async def send_request(sock: socket.socket, port: int) -> ClientConnection:
    """A client core without extensions that sent its upgrade request on ``sock``."""
    client = ClientConnection(f"ws://127.0.0.1:{port}/", extensions=[])
    client.send_request()
    await asyncio.get_running_loop().sock_sendall(sock, b"".join(client.data_to_send()))
    return client


async def read_response(client: ClientConnection, sock: socket.socket) -> None:
    """Read the server's answer until the connection is open."""
    loop = asyncio.get_running_loop()
    while client.state is State.CONNECTING:
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), PEER_WAIT)
        assert data, "the server closed during the handshake"
        client.receive_data(data)
    assert [type(event) for event in client.events()] == [Response]


async def flood_with_pings(client: ClientConnection, sock: socket.socket, text: str) -> None:
    """13 MB of pings (about 16 pongs owed per read of the server), then a text message."""
    for _ in range(100_000):
        client.send_ping(b"p" * 125)
    client.send_text(text)
    await asyncio.wait_for(
        asyncio.get_running_loop().sock_sendall(sock, b"".join(client.data_to_send())),
        PEER_WAIT,
    )


async def ping_and_read_until_answered(client: ClientConnection, sock: socket.socket) -> None:
    """Send one more ping and read (all that is owed) until its pong arrives."""
    loop = asyncio.get_running_loop()
    client.send_ping(b"last")
    await loop.sock_sendall(sock, b"".join(client.data_to_send()))
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), PEER_WAIT)
        assert data, "the server closed"
        client.receive_data(data)
        if Pong(b"last") in client.events():
            return


async def open_silent(port: int, *texts: str) -> asyncio.StreamWriter:
    """A client that sends its upgrade request (and ``texts``, framed, in the same write)
    through a 4 KiB receive buffer, then reads nothing: the server's writes soon block.
    Close the returned writer when done."""
    client = ClientConnection(f"ws://127.0.0.1:{port}/", extensions=[])
    client.send_request()
    request = b"".join(client.data_to_send())
    client.state = State.OPEN  # only to frame the texts for the same write
    for text in texts:
        client.send_text(text)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    _reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    writer.write(request + b"".join(client.data_to_send()))
    return writer


async def wait_until(condition: Callable[[], object], timeout: float = PEER_WAIT) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)

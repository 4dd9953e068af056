"""uvicorn with wskit's WebSocket engine (``--ws wskit.integrations.uvicorn:WebSocketProtocol``)
serving Starlette's own WebSocket routes, in a real uvicorn process on 127.0.0.1.

Covers the ASGI WebSocket spec as Starlette uses it (accept with a subprotocol and headers,
denial responses, close before accept, close codes and reasons both ways, errors before and
after accept) with wskit's and websockets' clients: text, binary and 1 MiB messages,
compression on and off (``--ws-per-message-deflate``), a message over ``--ws-max-size``
(1009) and a protocol violation (1002), both now decided by wskit's core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect
from websockets.typing import Subprotocol

import wskit.sync
from tests.asyncio.helpers import (
    flood_with_pings,
    ping_and_read_until_answered,
    read_response,
    send_request,
    small_buffers,
)
from tests.integrations import WAIT, free_port, server_process, violation_close_code
from wskit.exceptions import ConnectionClosedError, InvalidStatus

ENGINE = "wskit.integrations.uvicorn:WebSocketProtocol"
MAX_SIZE = 2 * 1024 * 1024


@pytest.fixture(scope="module", params=["deflate", "plain"])
def uvicorn_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    """The Starlette app under uvicorn with wskit's engine; yields (address, deflate)."""
    deflate = request.param == "deflate"
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "tests.integrations.starlette_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--ws", ENGINE,
        "--ws-max-size", str(MAX_SIZE), "--ws-per-message-deflate", str(deflate).lower(),
        "--log-level", "warning",
    ]  # fmt: skip
    # The only tracebacks are those of the two routes that fail on purpose.
    with server_process("uvicorn", command, port, expected_errors="route failed") as address:
        yield address, deflate


def test_messages_subprotocol_headers_and_compression(uvicorn_server: tuple[str, bool]) -> None:
    address, deflate = uvicorn_server
    big = os.urandom(1 << 20)
    with wskit.sync.connect(f"ws://{address}/echo", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response is not None
        assert ws.response.headers.get("X-Engine") == "wskit"
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) == deflate
        for message in ("hello ✓", b"\x00\xff", big, "z" * 300_000):
            ws.send(message)
            assert ws.recv(timeout=WAIT) == message
        before = ws.statistics().bytes_sent
        ws.send("compressible " * 10_000)
        ws.recv(timeout=WAIT)
        sent = ws.statistics().bytes_sent - before
        assert sent < 5_000 if deflate else sent > 130_000
    with peer_connect(
        f"ws://{address}/echo", subprotocols=[Subprotocol("chat")], max_size=MAX_SIZE
    ) as peer:
        assert peer.subprotocol == "chat"
        for message in ("hello ✓", b"\x00\xff", big):
            peer.send(message)
            assert peer.recv(timeout=WAIT) == message


def test_close_code_and_reason_each_way(uvicorn_server: tuple[str, bool]) -> None:
    address, _ = uvicorn_server
    with wskit.sync.connect(f"ws://{address}/echo") as ws:
        ws.send("hi")
        ws.recv(timeout=WAIT)
        ws.close(4001, "client says bye")
    deadline = time.monotonic() + WAIT
    while True:
        with urllib.request.urlopen(f"http://{address}/last-close", timeout=WAIT) as r:
            if json.loads(r.read()) == {"code": 4001, "reason": "client says bye"}:
                break
        assert time.monotonic() < deadline, "the route did not see the client's close"
        time.sleep(0.05)
    with wskit.sync.connect(f"ws://{address}/closer") as ws:
        ws.send("4002 server says bye")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert (info.value.code, info.value.reason) == (4002, "server says bye")
    with peer_connect(f"ws://{address}/closer") as peer:
        peer.send("1001 going away")
        with pytest.raises(PeerClosed) as peer_info:
            peer.recv(timeout=WAIT)
        assert peer_info.value.rcvd is not None
        assert (peer_info.value.rcvd.code, peer_info.value.rcvd.reason) == (1001, "going away")


def test_denial_response_and_close_before_accept(uvicorn_server: tuple[str, bool]) -> None:
    address, _ = uvicorn_server
    with pytest.raises(InvalidStatus) as info:
        wskit.sync.connect(f"ws://{address}/deny")
    assert info.value.response.status == 401 and info.value.response.body == b"no token\n"
    with pytest.raises(InvalidStatus) as info:
        wskit.sync.connect(f"ws://{address}/forbid")
    assert info.value.response.status == 403
    with pytest.raises(InvalidStatus) as info:
        wskit.sync.connect(f"ws://{address}/no-such-route")
    assert info.value.response.status == 403  # Starlette closes unknown WebSocket routes


def test_route_errors_give_500_before_accept_and_1011_after(
    uvicorn_server: tuple[str, bool],
) -> None:
    address, _ = uvicorn_server
    with pytest.raises(InvalidStatus) as info:
        wskit.sync.connect(f"ws://{address}/fail-early")
    assert info.value.response.status == 500
    with wskit.sync.connect(f"ws://{address}/fail") as ws:
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=WAIT)
        assert closed.value.code == 1011


def test_message_over_ws_max_size_closes_with_1009(uvicorn_server: tuple[str, bool]) -> None:
    address, _ = uvicorn_server
    with wskit.sync.connect(f"ws://{address}/echo", max_size=4 * MAX_SIZE) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.send(os.urandom(MAX_SIZE + 1))
            ws.recv(timeout=WAIT)
        assert info.value.code == 1009


def test_protocol_violation_closes_with_1002(uvicorn_server: tuple[str, bool]) -> None:
    address, _ = uvicorn_server
    assert violation_close_code(address, "/echo") == 1002


def test_a_bad_upgrade_is_answered_by_the_engine(uvicorn_server: tuple[str, bool]) -> None:
    address, _ = uvicorn_server
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 426 "), answer[:60]


def test_a_refusal_survives_what_the_client_sends_behind_its_request(
    uvicorn_server: tuple[str, bool],
) -> None:
    """A client that goes on sending after its request and reads the answer late: the engine
    half-closes after the refusal and reads on until the client closes, so the whole 401 gets
    through. Closing instead, with the client's bytes unread, would reset the connection
    and drop the part of the answer still waiting in the server's kernel buffer."""
    address, _ = uvicorn_server
    host, port = address.split(":")
    pad = 256 * 1024  # more than the kernel buffers hold while the client is not reading
    request = (
        f"GET /deny?pad={pad} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT)
        sock.connect((host, int(port)))
        sock.sendall(request)
        deadline = time.monotonic() + 0.5  # the refusal is written meanwhile, in part
        try:
            while time.monotonic() < deadline:  # bounded: 0.5 s of 4 KiB writes
                sock.sendall(bytes(4096))
                time.sleep(0.01)
        except OSError:
            pass  # reset: what the server had not sent yet is lost (asserted below)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except ConnectionResetError:
            pass
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:60]
    assert answer.endswith(b"no token\n" + b"." * pad), len(answer)


def test_pongs_wait_in_the_core_while_writing_is_paused() -> None:
    """The engine on a real transport (in-process, a socket pair from a real listener): a
    peer that pings and never reads. Above the write buffer's high-water mark the pongs the
    core owes stay in the core (MAX_PENDING_PONGS), and the app still gets the message behind
    the flood; everything owed goes out once the peer reads again."""
    asyncio.run(asyncio.wait_for(_pongs_wait_in_the_core(), WAIT))


async def _pongs_wait_in_the_core() -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from wskit.integrations.uvicorn import WebSocketProtocol

    received: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            await received.put(message)
            if message["type"] == "websocket.disconnect":
                return

    config = Config(app, ws=WebSocketProtocol, ws_per_message_deflate=False, lifespan="off")
    config.ws_ping_interval = None
    config.load()
    loop = asyncio.get_running_loop()
    async with small_buffers() as (server_sock, client_sock, port):
        protocol = WebSocketProtocol(config, ServerState(), {})
        await loop.connect_accepted_socket(lambda: protocol, server_sock)
        protocol.transport.set_write_buffer_limits(high=4096)
        client = await send_request(client_sock, port)
        await read_response(client, client_sock)
        await flood_with_pings(client, client_sock, "after the flood")
        message = await received.get()
        assert message == {"type": "websocket.receive", "text": "after the flood"}
        # The high-water mark (4 KiB) plus one read's pongs at most; before: 2 KiB per read.
        assert protocol.transport.get_write_buffer_size() < 16 * 1024
        await ping_and_read_until_answered(client, client_sock)  # everything owed goes out
        protocol.transport.abort()


def test_a_refused_client_that_reads_nothing_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a refusal the engine lingers (LINGER_TIMEOUT), then closes; a client that reads
    nothing would keep that close waiting for the write buffer to drain, so it is dropped
    CLOSE_TIMEOUT later (both shortened here)."""
    import wskit.integrations.uvicorn as engine

    monkeypatch.setattr(engine, "LINGER_TIMEOUT", 0.1)
    monkeypatch.setattr(engine, "CLOSE_TIMEOUT", 0.2)
    asyncio.run(asyncio.wait_for(_refused_client_reads_nothing(), WAIT))


async def _refused_client_reads_nothing() -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from wskit.integrations.uvicorn import WebSocketProtocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        body = b"." * 1024 * 1024  # more than the socket buffers take
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": body})

    config = Config(app, ws=WebSocketProtocol, lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    async with small_buffers() as (server_sock, client_sock, port):
        protocol = WebSocketProtocol(config, ServerState(), {})
        await loop.connect_accepted_socket(lambda: protocol, server_sock)
        await send_request(client_sock, port)  # and never reads the answer
        start = loop.time()
        while not protocol.lost:
            assert loop.time() - start < 3, "the refused connection was never dropped"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def engine_serving(app: Any, **options: Any) -> AsyncIterator[tuple[Any, socket.socket, int]]:
    """The engine on one accepted connection in this process, serving the ASGI ``app``
    (``options`` go to uvicorn's Config): yields the protocol, the client's socket
    (non-blocking) and the port."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from wskit.integrations.uvicorn import WebSocketProtocol

    config = Config(
        app, ws=WebSocketProtocol, ws_per_message_deflate=False, lifespan="off", **options
    )
    config.ws_ping_interval = None
    config.load()
    state = ServerState()
    state.default_headers = config.encoded_headers  # what uvicorn's Server sets up
    async with small_buffers() as (server_sock, client_sock, port):
        protocol = WebSocketProtocol(config, state, {})
        await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, server_sock)
        try:
            yield protocol, client_sock, port
        finally:
            protocol.transport.abort()


async def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the engine sends until it closes (bounded by WAIT)."""
    loop = asyncio.get_running_loop()
    chunks = []
    while data := await asyncio.wait_for(loop.sock_recv(sock, 65536), WAIT):
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("how", ["accept", "denial"])
def test_a_header_the_app_may_not_send_gets_500(how: str) -> None:
    """A header value with CR LF in websocket.accept or a denial response: the app's send()
    raises, and the client gets 500 (it used to get nothing, the connection left open)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"x-user", b"evil\r\nX-Injected: 1")]
        if how == "accept":
            await send({"type": "websocket.accept", "headers": headers})
        else:
            start = {"type": "websocket.http.response.start", "status": 403, "headers": headers}
            await send(start)
            await send({"type": "websocket.http.response.body", "body": b"no"})

    async def main() -> None:
        async with engine_serving(app) as (_, client_sock, port):
            await send_request(client_sock, port)
            answer = await read_until_closed(client_sock)
            assert answer.startswith(b"HTTP/1.1 500 "), answer[:60]
            assert b"X-Injected" not in answer

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_a_bad_frame_behind_a_message_fails_even_if_the_app_only_sends() -> None:
    """The bad frame is held back behind the message the app took; an app that then only
    sends never comes back to receive(): the hold ends after HELD_ERROR_TIMEOUT (1002)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the one message; the app only sends from now on
        with contextlib.suppress(Exception):
            while True:
                await send({"type": "websocket.send", "text": "tick"})
                await asyncio.sleep(0.05)

    async def main() -> None:
        async with engine_serving(app) as (_, client_sock, port):
            client = await send_request(client_sock, port)
            await read_response(client, client_sock)
            client.send_text("hello")
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(client_sock, b"".join(client.data_to_send()))
            await asyncio.sleep(0.2)  # the app took it; the bad frame comes in a read of its own
            await loop.sock_sendall(client_sock, bytes.fromhex("8380") + bytes(4))  # opcode 3
            while client.close_rcvd is None:
                data = await asyncio.wait_for(loop.sock_recv(client_sock, 65536), WAIT)
                assert data, "closed without a Close frame"
                client.receive_data(data)
            assert client.close_rcvd[0] == 1002

    asyncio.run(asyncio.wait_for(main(), WAIT))


def test_receive_after_the_disconnect_repeats_it() -> None:
    """An app that calls receive() again after websocket.disconnect gets it again (uvicorn's
    own engines do the same) instead of waiting for ever."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await asyncio.wait_for(receive(), 1))

    async def main() -> None:
        async with engine_serving(app) as (_, client_sock, port):
            client = await send_request(client_sock, port)
            await read_response(client, client_sock)
            client.send_close(4002, "bye")
            await asyncio.get_running_loop().sock_sendall(
                client_sock, b"".join(client.data_to_send())
            )
            await read_until_closed(client_sock)
            while len(seen) < 2:
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), WAIT))
    disconnect = {"type": "websocket.disconnect", "code": 4002, "reason": "bye"}
    assert seen == [disconnect, disconnect]


@pytest.mark.parametrize("server_header", [True, False])
def test_uvicorns_server_and_custom_headers_are_sent(server_header: bool) -> None:
    """As with uvicorn's own engines: its Server header (or none with --no-server-header,
    not wskit's), --header fields, then the app's."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
        await receive()

    async def main() -> None:
        options = {"server_header": server_header, "headers": [("X-Custom", "yes")]}
        async with engine_serving(app, **options) as (_, client_sock, port):
            client = await send_request(client_sock, port)
            await read_response(client, client_sock)
            headers = client.response.headers
            assert headers.get_all("Server") == (["uvicorn"] if server_header else [])
            assert headers.get("X-Custom") == "yes" and headers.get("X-App") == "1"

    asyncio.run(asyncio.wait_for(main(), WAIT))

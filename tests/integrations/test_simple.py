"""simple-websocket's API (wskit.simple) over real servers and sockets on 127.0.0.1.

The blocking half: ``Server.accept(environ)`` in a Flask app under Werkzeug's server, and
``Client.connect(url)``, with websockets' client as a second peer; the API's semantics
(``receive(timeout)`` returning None, ``close(reason, message)``,
``ConnectionClosed.reason/.message``, ``ConnectionError`` with the status code,
``choose_subprotocol``, ``max_message_size``). The other WSGI servers are in test_wsgi.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from flask import Flask, request
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect
from websockets.typing import Subprotocol
from werkzeug.serving import make_server

import wskit.sync
from wskit.core.events import Request
from wskit.simple import (
    AioClient,
    AioServer,
    Client,
    CloseReason,
    ConnectionClosed,
    ConnectionError,
    Server,
)

WAIT = 10.0


class ChatServer(Server):
    """Prefers "chat.v2" whatever the client's order (choose_subprotocol overridden)."""

    def choose_subprotocol(self, request: Request) -> str | None:
        return "chat.v2" if "chat.v2" in request.subprotocols else None


def make_app(seen: list[Any]) -> Flask:
    app = Flask(__name__)

    @app.route("/echo", websocket=True)
    def echo() -> str:
        # One subprotocol as a string, as simple-websocket allows (a list works too, below).
        ws = Server.accept(request.environ, subprotocols="chat", max_message_size=1000)
        seen.append(("mode", ws.mode, ws.subprotocol))
        try:
            while True:
                data = ws.receive()
                ws.send(data)
        except ConnectionClosed as exc:
            seen.append(("closed", exc.reason, exc.message))
        return ""

    @app.route("/chat", websocket=True)
    def chat() -> str:
        ws = ChatServer.accept(request.environ)
        ws.send(str(ws.subprotocol))
        ws.close(CloseReason.GOING_AWAY, "bye from the server")
        return ""

    @app.route("/idle", websocket=True)
    def idle() -> str:
        ws = Server.accept(request.environ)
        started = time.monotonic()
        nothing = ws.receive(timeout=0.2)
        ws.send(f"{nothing!r} after {time.monotonic() - started:.3f}")
        ws.send(repr(ws.receive(timeout=0)))
        data = ws.receive(timeout=WAIT)
        ws.send(f"then {data!s}")
        ws.close()
        return ""

    return app


@pytest.fixture
def flask_server() -> Iterator[tuple[str, list[Any]]]:
    seen: list[Any] = []
    server = make_server("127.0.0.1", 0, make_app(seen), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def test_server_and_client_exchange_and_close_with_reason(
    flask_server: tuple[str, list[Any]],
) -> None:
    base, seen = flask_server
    ws = Client.connect(f"{base}/echo", subprotocols="chat", headers={"X-Test": "1"})
    assert ws.subprotocol == "chat" and ws.connected
    for message in ("hello", b"\x00\x01"):
        ws.send(message)
        assert ws.receive(timeout=WAIT) == message
    ws.send(42)  # type: ignore[arg-type]  # anything but bytes goes as text
    assert ws.receive(timeout=WAIT) == "42"
    ws.close(4001, "client says bye")
    assert not ws.connected
    with pytest.raises(ConnectionClosed):
        ws.send("after close")
    deadline = time.monotonic() + WAIT
    while len(seen) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert seen == [("mode", "werkzeug", "chat"), ("closed", 4001, "client says bye")]


def test_receive_timeout_returns_none_and_loses_nothing(
    flask_server: tuple[str, list[Any]],
) -> None:
    base, _ = flask_server
    ws = Client.connect(f"{base}/idle")
    nothing, after, elapsed = ws.receive(timeout=WAIT).split()
    assert (nothing, after) == ("None", "after")
    assert float(elapsed) >= 0.19  # the server's receive(timeout=0.2) waited that long
    assert ws.receive(timeout=WAIT) == "None"
    assert ws.receive(timeout=0.1) is None  # the server waits for us now
    ws.send("late")
    assert ws.receive(timeout=WAIT) == "then late"
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=WAIT)
    assert info.value.reason == CloseReason.NORMAL_CLOSURE


def test_choose_subprotocol_and_server_close_reason(flask_server: tuple[str, list[Any]]) -> None:
    base, _ = flask_server
    ws = Client.connect(f"{base}/chat", subprotocols=["chat.v1", "chat.v2"])
    assert ws.subprotocol == "chat.v2"
    assert ws.receive(timeout=WAIT) == "chat.v2"
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=WAIT)
    assert (info.value.reason, info.value.message) == (1001, "bye from the server")
    assert (ws.close_reason, ws.close_message) == (1001, "bye from the server")


def test_max_message_size_closes_with_1009(flask_server: tuple[str, list[Any]]) -> None:
    base, _ = flask_server
    with peer_connect(f"{base}/echo", subprotocols=[Subprotocol("chat")]) as ws:
        ws.send("x" * 1001)
        with pytest.raises(PeerClosed) as info:
            ws.recv(timeout=WAIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_client_connection_error_carries_the_status(flask_server: tuple[str, list[Any]]) -> None:
    base, _ = flask_server
    with pytest.raises(ConnectionError) as info:
        Client.connect(f"{base}/no-such-route")
    assert info.value.status_code == 404


def test_server_refusing_a_plain_request_raises_connection_error() -> None:
    errors: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            Server.accept(environ)
        except ConnectionError as exc:
            errors.append(exc)
        return []

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        import urllib.request

        with pytest.raises(Exception):  # noqa: B017 - the 400 the core answered, or a reset
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=WAIT)
    finally:
        thread.join(WAIT)
        server.server_close()
    (error,) = errors
    assert isinstance(error, ConnectionError) and error.status_code == 400


def test_client_against_a_wskit_sync_server() -> None:
    def echo(ws: wskit.sync.Connection) -> None:
        for message in ws:
            ws.send(message)

    server = wskit.sync.serve(echo, "127.0.0.1", 0, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ws = Client.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=5)
        ws.send(b"x" * 100_000)
        assert ws.receive(timeout=WAIT) == b"x" * 100_000
        ws.close()
    finally:
        server.shutdown(timeout=WAIT)
        thread.join(WAIT)


# --------------------------------------------------------------------------- the asyncio half


def run_async(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, WAIT))


async def aio_echo(ws: AioServer, seen: list[Any]) -> None:
    seen.append(("mode", ws.mode, ws.subprotocol))
    try:
        while True:
            data = await ws.receive()
            if data == "idle":
                nothing = await ws.receive(timeout=0.2)
                await ws.send(f"{nothing!r} then {await ws.receive(timeout=0)!r}")
            else:
                await ws.send(data)
    except ConnectionClosed as exc:
        seen.append(("closed", exc.reason, exc.message))


async def exercise_aio_client(url: str) -> None:
    ws = await AioClient.connect(url, subprotocols="chat", headers=[("X-Test", "1")])
    assert ws.subprotocol == "chat" and ws.connected
    for message in ("hello", b"\x00\x01"):
        await ws.send(message)
        assert await ws.receive(timeout=WAIT) == message
    await ws.send("idle")
    assert await ws.receive(timeout=WAIT) == "None then None"
    assert await ws.receive(timeout=0) is None
    await ws.send("late")
    await asyncio.sleep(0.1)
    assert await ws.receive(timeout=0) == "late"  # already there: returned without waiting
    await ws.close(4001, "client says bye")
    # What the client received: the server's echo of its code (with or without the reason).
    assert not ws.connected and ws.close_reason == 4001
    with pytest.raises(ConnectionClosed):
        await ws.send("after close")


def test_aio_server_on_aiohttp_and_aio_client() -> None:
    seen: list[Any] = []

    async def route(request: web.Request) -> web.Response:
        await aio_echo(await AioServer.accept(aiohttp=request, subprotocols=["chat"]), seen)
        return web.Response()

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.get("/echo", route)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            await exercise_aio_client(f"ws://127.0.0.1:{runner.addresses[0][1]}/echo")
            with pytest.raises(ConnectionError) as info:
                await AioClient.connect(f"ws://127.0.0.1:{runner.addresses[0][1]}/nothing")
            assert info.value.status_code == 404
            await asyncio.sleep(0.1)
        finally:
            await runner.cleanup()

    run_async(main())
    assert seen == [("mode", "aiohttp", "chat"), ("closed", 4001, "client says bye")]


def test_aio_server_on_a_raw_socket_with_headers() -> None:
    seen: list[Any] = []

    async def main() -> None:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")  # read elsewhere, as a host would
            headers = dict(
                line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
            )
            sock = writer.get_extra_info("socket").dup()
            writer.transport.abort()  # the host lets go of its copy
            await aio_echo(
                await AioServer.accept(sock=sock, headers=headers, subprotocols="chat"), seen
            )

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            await exercise_aio_client(f"ws://127.0.0.1:{port}/")
            await asyncio.sleep(0.1)

    run_async(main())
    assert seen == [("mode", "socket", "chat"), ("closed", 4001, "client says bye")]


def test_aio_server_on_asgi_under_uvicorn() -> None:
    import uvicorn

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await aio_echo(
            await AioServer.accept(asgi=(scope, receive, send), subprotocols=["chat"]), seen
        )

    async def main() -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            await exercise_aio_client(f"ws://127.0.0.1:{port}/")
            await asyncio.sleep(0.1)
        finally:
            server.should_exit = True
            await task

    run_async(main())
    assert seen == [("mode", "asgi", "chat"), ("closed", 4001, "client says bye")]

"""WebSocket routes in asyncio web apps, on real servers on 127.0.0.1: an aiohttp app through
wskit.integrations.aiohttp and a bare asyncio server handing sockets to wskit.asyncio.accept
(the "raw socket" host; in both, wskit's core speaks the protocol), and an ASGI app through
wskit.integrations.asgi under uvicorn (permessage-deflate on and off) and hypercorn (there
the ASGI server speaks the protocol; wskit gives the API and the message limit).

Per host, with wskit's client and websockets': text, binary and 1 MiB messages, compression
as the host negotiates it, a subprotocol, a close code and reason each way, a message over
the route's limit (1009) and a protocol violation (1002).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.client import connect as peer_connect
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.typing import Subprotocol

import wskit.asyncio
from tests.integrations import WAIT, free_port, server_process, violation_close_code
from wskit.exceptions import ConnectionClosed, ConnectionClosedError
from wskit.integrations.aiohttp import accept as aiohttp_accept

#: The hosts, and whether each negotiates permessage-deflate on /echo.
HOSTS = {
    "aiohttp": True,
    "raw-socket": True,
    "uvicorn-deflate": True,
    "uvicorn-plain": False,
    "hypercorn": True,
}
#: Where the ASGI server's own protocol code decides (hypercorn 0.18, wsproto underneath): it
#: tells the app 1006 (not the client's code) when the client closes, and drops TCP without
#: a Close frame on a protocol violation. Documented in docs/asgi.md.
HOST_CLIENT_CLOSE = {"hypercorn": (1006, "")}
HOST_VIOLATION_CODE = {"hypercorn": 1006}


# --------------------------------------------------------------------------- wskit-core hosts

#: The WebSocket routes of the hosts where wskit's core speaks the protocol (aiohttp, a raw
#: socket), as asgi_app.py's: options of each route's accept().
ROUTE_OPTIONS: dict[str, dict[str, Any]] = {
    "/echo": {"subprotocols": ["chat"], "max_size": 2 << 20},
    "/echo-plain": {"compression": None, "max_size": 64 * 1024},
    "/closer": {},
}


async def run_route(path: str, ws: wskit.asyncio.Connection, last_close: dict[str, Any]) -> None:
    if path == "/closer":
        code, _, reason = str(await ws.recv()).partition(" ")
        await ws.close(int(code), reason)
        return
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    last_close.update(code=ws.close_code, reason=ws.close_reason)


def aiohttp_app() -> web.Application:
    """The routes on aiohttp through wskit.integrations.aiohttp."""
    last_close: dict[str, Any] = {}

    async def websocket(request: web.Request) -> web.Response:
        options = ROUTE_OPTIONS[request.path]
        ws = await aiohttp_accept(request, ping_interval=None, **options)
        await run_route(request.path, ws, last_close)
        return web.Response()

    async def report(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(last_close))

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="plain HTTP")

    app = web.Application()
    app.add_routes([web.get(path, websocket) for path in ROUTE_OPTIONS])
    app.add_routes([web.get("/last-close", report), web.get("/", index)])
    return app


async def raw_socket_host(ready: Callable[[int], None], stop: asyncio.Event) -> None:
    """A bare asyncio server that reads each request head itself, answers plain HTTP, and
    hands WebSocket upgrades to wskit.asyncio.accept(sock, head): the "raw socket" host."""
    last_close: dict[str, Any] = {}

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode().partition("?")[0]
        if path not in ROUTE_OPTIONS:
            body = json.dumps(last_close).encode() if path == "/last-close" else b"plain HTTP"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()
            return
        sock = writer.get_extra_info("socket").dup()
        writer.transport.abort()  # the host lets go of its own descriptor
        ws = await wskit.asyncio.accept(sock, head, ping_interval=None, **ROUTE_OPTIONS[path])
        await run_route(path, ws, last_close)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    async with server:
        ready(server.sockets[0].getsockname()[1])
        await stop.wait()


async def aiohttp_host(ready: Callable[[int], None], stop: asyncio.Event) -> None:
    runner = web.AppRunner(aiohttp_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ready(runner.addresses[0][1])
    await stop.wait()
    await runner.cleanup()


@contextlib.contextmanager
def in_thread_host(host: Callable[..., Any]) -> Iterator[str]:
    """``host(ready, stop)`` on an event loop of its own, in a thread; yields ``host:port``."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    ports: list[int] = []
    stops: list[asyncio.Event] = []

    def ready(port: int) -> None:
        ports.append(port)
        started.set()

    async def main() -> None:
        stops.append(asyncio.Event())
        await host(ready, stops[0])

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(WAIT), "the host did not start"
    try:
        yield f"127.0.0.1:{ports[0]}"
    finally:
        loop.call_soon_threadsafe(stops[0].set)
        thread.join(WAIT)
        loop.close()


# --------------------------------------------------------------------------- ASGI servers


@contextlib.contextmanager
def asgi_server(host: str) -> Iterator[str]:
    """tests/integrations/asgi_app.py under uvicorn or hypercorn, in a process of its own."""
    server, _, variant = host.partition("-")
    port = free_port()
    command = [sys.executable, "-m", "tests.integrations.asgi_app", server, str(port), variant]
    with server_process(host, command, port) as address:
        yield address


@pytest.fixture(scope="module", params=list(HOSTS))
def host(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(host name, ``address:port``) of a running app."""
    name: str = request.param
    if name == "aiohttp":
        context = in_thread_host(aiohttp_host)
    elif name == "raw-socket":
        context = in_thread_host(raw_socket_host)
    else:
        context = asgi_server(name)
    with context as address:
        yield name, address


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, WAIT))


# --------------------------------------------------------------------------- the tests


def test_plain_http_on_the_same_port(host: tuple[str, str]) -> None:
    _, address = host
    with urllib.request.urlopen(f"http://{address}/", timeout=WAIT) as response:
        assert response.read() == b"plain HTTP"


def test_messages_compression_and_subprotocol(host: tuple[str, str]) -> None:
    name, address = host
    big = os.urandom(1 << 20)

    async def wskit_client() -> None:
        url = f"ws://{address}/echo"
        async with wskit.asyncio.connect(url, subprotocols=["chat"], max_size=2 << 20) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in extensions) == HOSTS[name]
            for message in ("hello ✓", b"\x00\xff", big, "y" * 300_000):
                await ws.send(message)
                assert await ws.recv() == message
            before = ws.statistics().bytes_sent
            await ws.send("compressible " * 10_000)
            assert await ws.recv() == "compressible " * 10_000
            sent = ws.statistics().bytes_sent - before
            assert sent < 5_000 if HOSTS[name] else sent > 130_000

    async def peer_client() -> None:
        url = f"ws://{address}/echo"
        async with peer_connect(url, subprotocols=[Subprotocol("chat")], max_size=2 << 20) as ws:
            assert ws.subprotocol == "chat"
            for message in ("hello ✓", b"\x00\xff", big):
                await ws.send(message)
                assert await ws.recv() == message

    run(wskit_client())
    run(peer_client())


def test_close_code_and_reason_each_way(host: tuple[str, str]) -> None:
    name, address = host
    seen_by_app = HOST_CLIENT_CLOSE.get(name, (4001, "client says bye"))

    async def main() -> None:
        async with wskit.asyncio.connect(f"ws://{address}/echo", subprotocols=["chat"]) as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4001, "client says bye")
        deadline = time.monotonic() + WAIT
        while True:
            with urllib.request.urlopen(f"http://{address}/last-close", timeout=WAIT) as r:
                if tuple(json.loads(r.read() or b"{}").values()) == seen_by_app:
                    break
            assert time.monotonic() < deadline, "the route did not see the client's close"
            await asyncio.sleep(0.05)
        async with wskit.asyncio.connect(f"ws://{address}/closer") as ws:
            await ws.send("4002 server says bye")
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4002, "server says bye")
        async with peer_connect(f"ws://{address}/closer") as peer:
            await peer.send("1001 going away")
            with pytest.raises(PeerClosed) as peer_info:
                await peer.recv()
            assert peer_info.value.rcvd is not None
            assert (peer_info.value.rcvd.code, peer_info.value.rcvd.reason) == (1001, "going away")

    run(main())


def test_message_over_the_limit_closes_with_1009(host: tuple[str, str]) -> None:
    _, address = host

    async def main() -> None:
        async with wskit.asyncio.connect(f"ws://{address}/echo-plain") as ws:
            await ws.send(os.urandom(100_000))  # the route allows 64 KiB
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009

    run(main())


def test_protocol_violation_closes_with_1002(host: tuple[str, str]) -> None:
    name, address = host
    assert violation_close_code(address, "/echo-plain") == HOST_VIOLATION_CODE.get(name, 1002)


def test_asgi_app_mounts_a_wskit_handler_under_uvicorn() -> None:
    """wskit.integrations.asgi.app(handler): 1000 when the handler returns, 1011 when it
    raises, HTTP to the fallback app (else 404), lifespan answered."""
    import uvicorn

    from wskit.integrations.asgi import AsgiConnection, app

    async def handler(ws: AsgiConnection) -> None:
        message = await ws.recv()
        if message == "fail":
            raise RuntimeError("handler failed on purpose")
        await ws.send(f"{ws.request.path} {message!s}")

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the rest of the site"})

    async def main() -> None:
        servers = []
        for asgi_app in (app(handler, subprotocols=["chat"]), app(handler, fallback=fallback)):
            config = uvicorn.Config(asgi_app, host="127.0.0.1", port=0, log_level="critical")
            server = uvicorn.Server(config)
            servers.append((server, asyncio.ensure_future(server.serve())))
            while not server.started:
                await asyncio.sleep(0.01)
        plain, with_fallback = (s.servers[0].sockets[0].getsockname()[1] for s, _ in servers)
        try:
            url = f"ws://127.0.0.1:{plain}/room"
            async with wskit.asyncio.connect(url, subprotocols=["chat"]) as ws:
                assert ws.subprotocol == "chat"
                await ws.send("hi")
                assert await ws.recv() == "/room hi"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.code == 1000
            async with wskit.asyncio.connect(url) as ws:
                await ws.send("fail")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
            loop = asyncio.get_running_loop()
            for port, expected in ((plain, 404), (with_fallback, 200)):
                status = await loop.run_in_executor(None, http_status, port)
                assert status == expected
        finally:
            for server, task in servers:
                server.should_exit = True
                await task

    run(main())


def http_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_aiohttp_route_may_return_at_once_and_aiohttp_forgets_the_connection() -> None:
    """A route that hands the connection to a task and returns at once: aiohttp's response
    never reaches the client between frames, and once the WebSocket ends aiohttp no longer
    counts the connection (it would keep it, and its handler, for good)."""
    tasks: set[asyncio.Task[None]] = set()

    async def echo_later(ws: wskit.asyncio.Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async def route(request: web.Request) -> web.Response:
        ws = await aiohttp_accept(request, ping_interval=None)
        task = asyncio.ensure_future(echo_later(ws))
        tasks.add(task)
        return web.Response(text="must never reach the client")

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.get("/", route)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            url = f"ws://127.0.0.1:{runner.addresses[0][1]}/"
            for _ in range(3):
                async with wskit.asyncio.connect(url) as ws:
                    await asyncio.sleep(0.05)  # the route returned meanwhile
                    for message in ("one", b"two"):
                        await ws.send(message)
                        assert await ws.recv() == message
                assert ws.close_code == 1000
            deadline = time.monotonic() + WAIT
            assert runner.server is not None
            while runner.server.connections:
                assert time.monotonic() < deadline, "aiohttp still holds the connections"
                await asyncio.sleep(0.01)
        finally:
            await runner.cleanup()

    run(main())

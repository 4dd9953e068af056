"""``python -m wskit``: a demo server, a plain echo server, and an interactive client.

* ``python -m wskit serve`` serves a page at ``/`` with a small browser client, ``/echo``
  (echoes every message) and ``/time`` (pushes the time every second), on 127.0.0.1:8765.
* ``python -m wskit serve --echo`` echoes every message on every path, with permessage-deflate
  and a settable ``--max-size``: the server used by the conformance and interop tests.
* ``--front-end sync`` serves either with the threads front end (:mod:`wskit.sync`) instead
  of asyncio, ``--front-end trio`` with the Trio one (:mod:`wskit.trio`; trio must be
  installed: ``pip install wskit[trio]``); ``--front-end uvicorn`` serves the echo server
  as an ASGI app under uvicorn with wskit's WebSocket engine
  (:mod:`wskit.integrations.uvicorn`; uvicorn must be installed).
* ``python -m wskit connect URL`` sends each line typed and prints what comes back; Ctrl-D
  closes the connection with 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import wskit.sync
from wskit.asyncio import Connection, WebSocketServerConnection, connect, serve
from wskit.core.events import Request, Response
from wskit.core.headers import Headers
from wskit.core.limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from wskit.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Seconds between two pushes on ``/time``.
TIME_PERIOD = 1.0


def demo_page() -> bytes:
    """The browser client served at ``/``."""
    return resources.files("wskit").joinpath("static/demo.html").read_bytes()


async def echo(ws: Connection) -> None:
    """Send every message back as it came."""
    async for message in ws:
        await ws.send(message)


async def push_time(ws: Connection) -> None:
    """Push the current UTC time, once per :data:`TIME_PERIOD`, until the client leaves."""
    while True:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            await ws.send(now.isoformat(timespec="seconds"))
        except ConnectionClosed:
            return
        await asyncio.sleep(TIME_PERIOD)


async def demo_handler(ws: Connection) -> None:
    """Route a demo connection by path: ``/echo`` or ``/time``."""
    assert ws.request is not None
    if ws.request.path == "/time":
        await push_time(ws)
    else:
        await echo(ws)


def sync_echo(ws: wskit.sync.Connection) -> None:
    """:func:`echo` for the threads front end."""
    for message in ws:
        ws.send(message)


def sync_demo_handler(ws: wskit.sync.WebSocketServerConnection) -> None:
    """:func:`demo_handler` for the threads front end."""
    if ws.request.path != "/time":
        sync_echo(ws)
        return
    while True:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            ws.send(now.isoformat(timespec="seconds"))
            ws.recv(timeout=TIME_PERIOD)  # messages on /time are ignored
        except TimeoutError:
            continue
        except ConnectionClosed:
            return


def demo_process_request(
    ws: WebSocketServerConnection | wskit.sync.WebSocketServerConnection | Any, request: Request
) -> Response | None:
    """Serve the page at ``/``, 404 for unknown paths, WebSocket upgrades elsewhere."""
    path = request.path
    if path in ("/echo", "/time") and "websocket" in (request.headers.get("Upgrade") or "").lower():
        return None
    if path in ("/", "/index.html"):
        body = demo_page()
        headers = Headers(
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
        )
        return Response(200, headers, body)
    if path in ("/echo", "/time"):
        return ws.respond(426, "This is a WebSocket endpoint.\n", [("Upgrade", "websocket")])
    return ws.respond(404)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_server(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _set_once, stop)
    ping_interval = None if args.no_ping else 20.0
    server = await serve(
        echo if args.echo else demo_handler,
        args.host,
        args.port,
        process_request=None if args.echo else demo_process_request,
        compression=None if args.no_compression else "deflate",
        max_size=args.max_size,
        max_fragments=args.max_fragments,
        ping_interval=ping_interval,
    )
    what = "echo server" if args.echo else "demo server"
    print(f"wskit {what} on http://{args.host}:{server.port}/", flush=True)
    async with server:
        await stop


class _Stop(Exception):
    """SIGTERM: leave serve_forever() as Ctrl-C does."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def run_sync_server(args: argparse.Namespace) -> None:
    server = wskit.sync.serve(
        sync_echo if args.echo else sync_demo_handler,
        args.host,
        args.port,
        process_request=None if args.echo else demo_process_request,
        compression=None if args.no_compression else "deflate",
        max_size=args.max_size,
        max_fragments=args.max_fragments,
        ping_interval=None if args.no_ping else 20.0,
    )
    what = "echo server" if args.echo else "demo server"
    print(f"wskit {what} (threads) on http://{args.host}:{server.port}/", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        started = time.monotonic()
        server.shutdown(timeout=10.0)
        logging.getLogger("wskit.server").debug("shut down in %.2f s", time.monotonic() - started)


def run_trio_server(args: argparse.Namespace) -> None:
    # Imported here: only this front end needs trio installed.
    import trio  # noqa: PLC0415

    import wskit.trio  # noqa: PLC0415

    async def echo(ws: wskit.trio.Connection) -> None:
        async for message in ws:
            await ws.send(message)

    async def demo(ws: wskit.trio.WebSocketServerConnection) -> None:
        if ws.request.path != "/time":
            await echo(ws)
            return
        while True:
            now = datetime.datetime.now(datetime.timezone.utc)
            try:
                await ws.send(now.isoformat(timespec="seconds"))
            except ConnectionClosed:
                return
            with trio.move_on_after(TIME_PERIOD):
                try:
                    await ws.recv()  # messages on /time are ignored
                except ConnectionClosed:
                    return

    async def main() -> None:
        async with wskit.trio.serve(
            echo if args.echo else demo,
            args.host,
            args.port,
            process_request=None if args.echo else demo_process_request,
            compression=None if args.no_compression else "deflate",
            max_size=args.max_size,
            max_fragments=args.max_fragments,
            ping_interval=None if args.no_ping else 20.0,
        ) as server:
            what = "echo server" if args.echo else "demo server"
            print(f"wskit {what} (trio) on http://{args.host}:{server.port}/", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break  # leaving the block closes every connection with 1001

    trio.run(main)


def run_uvicorn_server(args: argparse.Namespace) -> None:
    # Imported here: only this front end needs uvicorn installed.
    from wskit.integrations import asgi, uvicorn  # noqa: PLC0415

    async def echo(ws: asgi.AsgiConnection) -> None:
        async for message in ws:
            await ws.send(message)

    print(f"wskit echo server (uvicorn) on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(
        asgi.app(echo, max_size=args.max_size),
        max_fragments=args.max_fragments,
        host=args.host,
        port=args.port,
        ws_max_size=args.max_size,
        ws_per_message_deflate=not args.no_compression,
        ws_ping_interval=None if args.no_ping else 20.0,
        log_level="debug" if args.verbose else "warning",
    )


async def run_client(args: argparse.Namespace) -> int:
    headers = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"--header needs 'Name: value', got {item!r}", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    try:
        ws = await connect(
            args.url,
            extra_headers=headers,
            subprotocols=args.subprotocol,
            compression=None if args.no_compression else "deflate",
            max_size=args.max_size,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        print(f"Failed to connect to {args.url}: {exc}", file=sys.stderr)
        return 1
    print(
        f"Connected to {args.url}." + (f" Subprotocol: {ws.subprotocol}" if ws.subprotocol else "")
    )
    loop = asyncio.get_running_loop()

    async def printer() -> None:
        try:
            async for message in ws:
                print(f"< {message!r}" if isinstance(message, bytes) else f"< {message}")
        except ConnectionClosed:
            pass

    reader = loop.create_task(printer())
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            try:
                await ws.send(line.rstrip("\n"))
            except ConnectionClosed:
                break
    finally:
        await ws.close()
        await reader
    print(f"Connection closed: {ws.close_code} {ws.close_reason or ''}".rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wskit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("serve", help="run the demo server (or a plain echo server)")
    server.add_argument("--host", default=DEFAULT_HOST)
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.add_argument("--echo", action="store_true", help="echo every message on every path")
    server.add_argument(
        "--front-end",
        choices=("asyncio", "sync", "trio", "uvicorn"),
        default="asyncio",
        help="asyncio (the default), sync (threads), trio, or uvicorn (with --echo only)",
    )
    client = sub.add_parser("connect", help="an interactive client")
    client.add_argument("url")
    client.add_argument("--header", action="append", default=[], help="'Name: value' (repeat)")
    client.add_argument("--subprotocol", action="append", default=[], help="offer (repeat)")
    for p in (server, client):
        p.add_argument("--no-compression", action="store_true", help="no permessage-deflate")
        p.add_argument(
            "--max-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE, help="max message bytes"
        )
        p.add_argument("--verbose", "-v", action="store_true")
    server.add_argument("--max-fragments", type=int, default=DEFAULT_MAX_FRAGMENTS)
    server.add_argument("--no-ping", action="store_true", help="disable keepalive pings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        if args.command == "serve":
            if args.front_end == "sync":
                run_sync_server(args)
            elif args.front_end == "trio":
                run_trio_server(args)
            elif args.front_end == "uvicorn":
                if not args.echo:
                    print("--front-end uvicorn serves the echo server: add --echo", file=sys.stderr)
                    return 2
                run_uvicorn_server(args)
            else:
                asyncio.run(run_server(args))
            return 0
        return asyncio.run(run_client(args))
    except KeyboardInterrupt:
        return 130

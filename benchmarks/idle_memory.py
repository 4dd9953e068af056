"""Server memory per idle connection: wskit side by side with websockets, aiohttp and picows.

Each library's server runs in its own subprocess; this process opens N connections to it (with
wskit's client, which offers permessage-deflate or not), sends one short message on each and
reads its echo, then leaves them idle. The server's resident memory (``VmRSS``) is read before
and after; the difference divided by N is the memory one idle connection costs the server,
socket buffers excluded (they live in the kernel). Run once without compression and once with
permessage-deflate negotiated (picows has no compression: "n/a").

Run: ``python benchmarks/idle_memory.py [--connections 10000] [--libs wskit,websockets]``.
Every loop is bounded by N and by a time limit.
"""

# Libraries are imported inside the server functions: a server subprocess loads only its own.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import os
import platform
import resource
import socket
import subprocess
import sys
import time

LIBRARIES = ("wskit", "websockets", "aiohttp", "picows")
HOST = "127.0.0.1"
#: Seconds allowed for opening every connection of one measurement.
OPEN_LIMIT = 120.0
#: Seconds the server gets to settle before and after (garbage, allocator).
SETTLE = 0.5


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def echo_wskit(port: int, compress: bool) -> None:
    import wskit.asyncio

    async def handler(ws: wskit.asyncio.Connection) -> None:
        async for message in ws:
            await ws.send(message)

    server = await wskit.asyncio.serve(
        handler, HOST, port, compression="deflate" if compress else None, ping_interval=None
    )
    async with server:
        await asyncio.Future()


async def echo_websockets(port: int, compress: bool) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    comp = "deflate" if compress else None
    async with serve(handler, HOST, port, compression=comp, ping_interval=None):
        await asyncio.Future()


async def echo_aiohttp(port: int, compress: bool) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress, heartbeat=None)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    await asyncio.Future()


async def echo_picows(port: int, compress: bool) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_bytes())

    server = await ws_create_server(lambda _: Echo(), HOST, port)
    async with server:
        await asyncio.Future()


SERVERS = {
    "wskit": echo_wskit,
    "websockets": echo_websockets,
    "aiohttp": echo_aiohttp,
    "picows": echo_picows,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(lib: str, compress: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [sys.executable, __file__, "--serve", lib, "--port", str(port)]
    if compress:
        args.append("--compress")
    proc = subprocess.Popen(args)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{lib} server did not start") from None
            time.sleep(0.1)


async def measure(lib: str, compress: bool, count: int) -> float | None:
    """KiB of server memory per idle connection, or None where compression is not offered."""
    import wskit.asyncio

    proc, port = start_server(lib, compress)
    connections = []
    try:
        await asyncio.sleep(SETTLE)
        before = rss_kib(proc.pid)
        deadline = time.monotonic() + OPEN_LIMIT
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            ws = await wskit.asyncio.connect(
                f"ws://{HOST}:{port}/",
                compression="deflate" if compress else None,
                ping_interval=None,
            )
            connections.append(ws)
            await ws.send("hello, idle")
            await ws.recv()
        if compress and "permessage-deflate" not in str(connections[0].response.headers):  # type: ignore[union-attr]
            return None
        await asyncio.sleep(SETTLE)
        after = rss_kib(proc.pid)
        return (after - before) / len(connections)
    finally:
        for ws in connections:
            ws.transport.abort()
        proc.kill()
        proc.wait()


def version(lib: str) -> str:
    try:
        return importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def table(results: dict[str, dict[str, float | None]], columns: list[str]) -> str:
    lines = ["library      " + "".join(f"{c:>24}" for c in columns)]
    for lib, row in results.items():
        cells = []
        for column in columns:
            value = row[column]
            values = [r[column] for r in results.values() if r[column] is not None]
            if value is None:
                cells.append(f"{'n/a':>24}")
            else:
                ratio = value / min(values) if min(values) > 0 else 1.0
                cells.append(f"{f'{value:.1f} KiB ({ratio:.2f}x)':>24}")
        lines.append(f"{lib:<13}" + "".join(cells))
    return "\n".join(lines)


async def run(libs: list[str], count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; {count} idle connections; "
        + ", ".join(f"{lib} {version(lib)}" for lib in libs)
    )
    results: dict[str, dict[str, float | None]] = {}
    for lib in libs:
        results[lib] = {
            "no compression": await measure(lib, False, count),
            "permessage-deflate": await measure(lib, True, count),
        }
    print("Server memory per idle connection (VmRSS growth / connections); ratio to the least")
    print(table(results, ["no compression", "permessage-deflate"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--compress", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(SERVERS[args.serve](args.port, args.compress))
        return
    libs = [lib for lib in args.libs.split(",") if lib]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    missing = [lib for lib in libs if importlib.util.find_spec(lib) is None]
    for lib in missing:
        print(f"{lib}: not installed, skipped (pip install -e '.[bench]')")
    asyncio.run(run([lib for lib in libs if lib not in missing], args.connections))


if __name__ == "__main__":
    main()

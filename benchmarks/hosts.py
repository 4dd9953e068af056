"""Benchmark of the threads front end and of uvicorn's WebSocket engines (issue #4).

Two comparisons, each side by side in one run, CPU time per message of the side under test
(the main figure: a 2-core machine bounds the rate) and the round-trip rate, 32 B and 1 KiB
round trips, median of ``--repeat`` runs:

* **threads**: wskit.sync against websockets' threading implementation (websockets.sync) and
  simple-websocket; servers (wskit.sync.serve, websockets.sync.server.serve, and both
  simple-websocket APIs, simple_websocket.Server and wskit.simple.Server, in the same
  Werkzeug server) driven by one load generator, and clients (wskit.sync.connect,
  websockets.sync.client.connect, simple_websocket.Client, wskit.simple.Client) against one
  echo server;
* **uvicorn**: the same raw ASGI echo app under uvicorn with each WebSocket engine: wskit's
  (wskit.integrations.uvicorn), websockets', websockets' sans-I/O one, wsproto's.

The load generator and the common echo server are wskit's asyncio front end with the callback
API, the cheapest peer here (picows is not a dependency of this benchmark). Every server runs
in a process of its own (``hosts.py --serve NAME --port N``); client and server share one CPU,
as in echo.py (a cross-core wake-up costs more than a small round trip on these machines).

    python benchmarks/hosts.py --repeat 3
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))

from benchmarks import common  # noqa: E402

SIZES = (32, 1024)
WARMUP = 200

THREAD_SERVERS = ("wskit-sync", "websockets-sync", "simple-websocket", "wskit-simple")
THREAD_CLIENTS = ("wskit-sync", "websockets-sync", "simple-websocket", "wskit-simple")
UVICORN_ENGINES = ("wskit", "websockets", "websockets-sansio", "wsproto")


# --------------------------------------------------------------------------- servers


def echo_sync(ws: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            ws.send(ws.recv())


def serve_threads(name: str, port: int) -> None:
    if name == "wskit-sync":
        import wskit.sync

        server = wskit.sync.serve(
            echo_sync, common.HOST, port, compression=None, ping_interval=None, max_size=1 << 21
        )
        server.serve_forever()
    elif name == "websockets-sync":
        from websockets.sync.server import serve

        with serve(echo_sync, common.HOST, port, compression=None, max_size=1 << 21) as server:
            server.serve_forever()
    else:
        from werkzeug.serving import make_server

        if name == "simple-websocket":
            import simple_websocket

            def app(environ: Any, start_response: Any) -> list[bytes]:
                ws = simple_websocket.Server.accept(environ, max_message_size=1 << 21)
                with contextlib.suppress(simple_websocket.ConnectionClosed):
                    while True:
                        ws.send(ws.receive())
                start_response("200 OK", [])  # not sent: the socket is the WebSocket's
                return []

        else:
            import wskit.simple

            def app(environ: Any, start_response: Any) -> list[bytes]:
                ws = wskit.simple.Server.accept(environ, max_message_size=1 << 21)
                with contextlib.suppress(wskit.simple.ConnectionClosed):
                    while True:
                        ws.send(ws.receive())
                start_response("200 OK", [])  # not sent: the socket is the WebSocket's
                return []

        from werkzeug.serving import WSGIRequestHandler

        class Quiet(WSGIRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass

        make_server(common.HOST, port, app, threaded=True, request_handler=Quiet).serve_forever()


async def asgi_echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def serve_uvicorn(engine: str, port: int) -> None:
    import uvicorn

    ws: Any = engine
    if engine == "wskit":
        from wskit.integrations.uvicorn import WebSocketProtocol

        ws = WebSocketProtocol
    uvicorn.run(
        asgi_echo,
        host=common.HOST,
        port=port,
        ws=ws,
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        lifespan="off",
        log_level="error",
        loop="uvloop" if common.importable("uvloop") else "asyncio",
    )


async def serve_common(port: int) -> None:
    """The common echo server of the client cells: wskit asyncio, callback API."""
    import wskit.asyncio
    from wskit.handlers import Handler

    class Echo(Handler):
        def on_message(self, message: Any) -> None:
            self.send(message)

    async with wskit.asyncio.serve(
        Echo, common.HOST, port, compression=None, ping_interval=None, max_size=1 << 21
    ):
        await asyncio.sleep(common.SERVER_LIFETIME)


# --------------------------------------------------------------------------- clients


async def load(
    port: int, size: int, duration: float, cpu: Callable[[], float]
) -> tuple[int, float, float]:
    """Round trips of ``size`` bytes for ``duration`` seconds: (messages, seconds, CPU seconds
    of the server by ``cpu()``, read after the warm-up and before the close: a threaded
    server's CPU is in its connection threads, gone with them)."""
    import wskit.asyncio
    from wskit.handlers import Handler

    done = asyncio.get_running_loop().create_future()
    state = {"left": WARMUP, "count": 0, "measuring": False, "t0": 0.0, "end": 0.0}
    payload = os.urandom(size)

    class Load(Handler):
        def on_message(self, message: Any) -> None:
            if state["measuring"]:
                state["count"] += 1
                if time.perf_counter() >= state["end"]:
                    if not done.done():
                        done.set_result(None)
                    return
            else:
                state["left"] -= 1
                if state["left"] <= 0 and not done.done():
                    done.set_result(None)
                    return
            self.send(payload)

    ws = await wskit.asyncio.connect(
        f"ws://{common.HOST}:{port}/", handler=Load, compression=None, ping_interval=None
    )
    assert ws.handler is not None
    ws.handler.send(payload)
    await done
    done = asyncio.get_running_loop().create_future()
    cpu0 = cpu()
    state.update(measuring=True, t0=time.perf_counter(), end=time.perf_counter() + duration)
    ws.handler.send(payload)
    await done
    elapsed = time.perf_counter() - state["t0"]
    used = cpu() - cpu0
    await ws.close()
    return int(state["count"]), elapsed, used


def client_cell(name: str, port: int, size: int, duration: float) -> tuple[int, float, float]:
    """Run one blocking client: (messages, seconds, CPU seconds of this process)."""
    payload = os.urandom(size)
    url = f"ws://{common.HOST}:{port}/"
    if name == "wskit-sync":
        import wskit.sync

        ws: Any = wskit.sync.connect(url, compression=None, ping_interval=None)
        send, recv, close = ws.send, ws.recv, ws.close
    elif name == "websockets-sync":
        from websockets.sync.client import connect

        ws = connect(url, compression=None)
        send, recv, close = ws.send, ws.recv, ws.close
    elif name == "simple-websocket":
        import simple_websocket

        ws = simple_websocket.Client.connect(url)
        send, recv, close = ws.send, ws.receive, ws.close
    else:
        import wskit.simple

        ws = wskit.simple.Client.connect(url)
        send, recv, close = ws.send, ws.receive, ws.close
    for _ in range(WARMUP):
        send(payload)
        recv()
    count = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    end = t0 + duration
    while True:
        send(payload)
        recv()
        count += 1
        if time.perf_counter() >= end:
            break
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    close()
    return count, elapsed, cpu


# --------------------------------------------------------------------------- the cells


def start(kind: str, name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = common.free_port()
    command = [
        sys.executable,
        str(Path(__file__)),
        "--serve",
        f"{kind}:{name}",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    common.pin(process.pid, {1})
    deadline = time.monotonic() + common.SERVER_START_TIMEOUT
    import socket

    while True:
        if process.poll() is not None:
            raise common.BenchmarkError(f"{kind} {name}: server exited")
        try:
            socket.create_connection((common.HOST, port), timeout=1).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise common.BenchmarkError(f"{kind} {name}: not listening") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(common.CLOSE_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_cell(kind: str, name: str, size: int, duration: float) -> tuple[float, float]:
    """(CPU us per message of the server, messages per second)."""
    process, port = start(kind, name)
    try:
        os.sched_setaffinity(0, {1})
        count, elapsed, cpu = asyncio.run(
            load(port, size, duration, lambda: common.process_cpu_seconds(process.pid) or 0.0)
        )
    finally:
        stop(process)
    return cpu / count * 1e6, count / elapsed


def client_side(name: str, size: int, duration: float) -> tuple[float, float]:
    process, port = start("common", "wskit")
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), "--client", name, "--port", str(port),
             "--size", str(size), "--duration", str(duration)],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        )  # fmt: skip
    finally:
        stop(process)
    count, elapsed, cpu = (float(x) for x in done.stdout.split())
    return cpu / count * 1e6, count / elapsed


def report(
    title: str, rows: tuple[str, ...], reference: str, measure: Callable[[str, int], Any]
) -> list[str]:
    results: dict[str, dict[int, tuple[float, float]]] = {}
    for row in rows:
        results[row] = {}
        for size in SIZES:
            results[row][size] = measure(row, size)
    lines = [title, f"{'row':22}" + "".join(f"{common.format_size(s):>34}" for s in SIZES)]
    for row in rows:
        cells = []
        for size in SIZES:
            cpu, rate = results[row][size]
            ref_cpu, ref_rate = results[reference][size]
            cells.append(
                f"{cpu:7.1f} us ({cpu / ref_cpu:4.2f}x) {rate:8,.0f}/s ({rate / ref_rate:4.2f}x)"
            )
        lines.append(f"{row:22}" + "".join(f"{c:>34}" for c in cells))
    return lines


def median_of(repeat: int, cell: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    samples = [cell() for _ in range(repeat)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per cell")
    parser.add_argument("--only", choices=("threads", "uvicorn"), help="one comparison")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        warnings.simplefilter("ignore")  # uvicorn's deprecation notice for one engine
        kind, name = args.serve.split(":")
        if kind == "threads":
            threading.Thread(target=serve_threads, args=(name, args.port), daemon=True).start()
            time.sleep(common.SERVER_LIFETIME)
        elif kind == "uvicorn":
            serve_uvicorn(name, args.port)
        else:
            asyncio.run(serve_common(args.port))
        return 0
    if args.client:
        os.sched_setaffinity(0, {1})
        print(*client_cell(args.client, args.port, args.size, args.duration))
        return 0
    print("\n".join(common.machine_lines()))
    print(f"run:       {args.duration:g} s per cell, median of {args.repeat}; CPU us/msg (x) "
          "and rate (x) against the reference row")  # fmt: skip
    lines: list[str] = []
    if args.only in (None, "threads"):
        lines += report(
            "SERVER under test (threads; reference: websockets-sync)",
            THREAD_SERVERS,
            "websockets-sync",
            lambda row, size: median_of(
                args.repeat, lambda: server_cell("threads", row, size, args.duration)
            ),
        )
        lines.append("")
        lines += report(
            "CLIENT under test (threads; reference: websockets-sync)",
            THREAD_CLIENTS,
            "websockets-sync",
            lambda row, size: median_of(args.repeat, lambda: client_side(row, size, args.duration)),
        )
    if args.only in (None, "uvicorn"):
        lines.append("")
        lines += report(
            "SERVER under test (uvicorn engines, one ASGI echo app; reference: websockets)",
            UVICORN_ENGINES,
            "websockets",
            lambda row, size: median_of(
                args.repeat, lambda: server_cell("uvicorn", row, size, args.duration)
            ),
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the Trio front end (issue #5): wskit.trio against trio-websocket and websockets'
Trio implementation (websockets.trio), and wskit's trio-websocket API (wskit.trio_websocket).

Rows, servers and clients alike:

* ``wskit-trio``: ``wskit.trio.serve`` / ``wskit.trio.connect``, ``send(await recv())``;
* ``wskit-trio-websocket``: trio-websocket's API on wskit (``wskit.trio_websocket``), the same
  code as the ``trio-websocket`` row with only the import changed; skipped with a note when
  the module is missing or does not import;
* ``trio-websocket``: ``serve_websocket`` / ``open_websocket_url``, ``get_message`` /
  ``send_message`` (its defaults, among them ``receive_buffer_size`` 4 KiB; see
  ``--trio-websocket-read-size``);
* ``websockets-trio``: ``websockets.trio.server.serve`` / ``websockets.trio.client.connect``.

The method is hosts.py's (see README.md): the main figure is the CPU time per message of the
side under test, the rate comes second. Every server runs in a process of its own
(``trio_front_end.py --serve NAME --port N``) and is driven by the common load generator, wskit's
asyncio front end with the callback API, in the main process; its CPU time is read from
``/proc`` around the timed section. Every client runs in a process of its own
(``--client NAME``) against the common echo server (the same wskit asyncio callback server,
hosts.py's) and reports its own ``time.process_time()``. Client and server share one CPU.
Binary round trips of 32 B, 1 KiB and 64 KiB; no compression, no keepalive pings, a 2 MiB
message limit everywhere. The cells run ``--repeat`` times, the rows interleaved in an order
rotated each repetition; the median is reported, with its ratio to trio-websocket and to
websockets.trio.

    python benchmarks/trio_front_end.py --repeat 3
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import importlib.metadata
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))

from benchmarks import common, hosts  # noqa: E402

SIZES = (32, 1024, 64 * 1024)
#: Round trips before the timed section (connection set up, caches warm).
WARMUP = 200
#: Upper bound of round trips in one timed section (the time limit usually ends it first).
MAX_ROUND_TRIPS = 1_000_000
#: Seconds the main process waits for a client process beyond its cell's duration.
CLIENT_GRACE = 60.0

ROWS = ("wskit-trio", "wskit-trio-websocket", "trio-websocket", "websockets-trio")
#: The reference rows: every figure is also given as a ratio to each of them.
REFERENCES = ("trio-websocket", "websockets-trio")
#: The module that provides trio-websocket's API for each row that uses it.
TRIO_WEBSOCKET_MODULES = {
    "trio-websocket": "trio_websocket",
    "wskit-trio-websocket": "wskit.trio_websocket",
}


def cpu() -> set[int]:
    """The one CPU that every process of a cell runs on: the last usable one."""
    return {sorted(os.sched_getaffinity(0))[-1]}


def unavailable(row: str) -> str | None:
    """Why ``row`` cannot run here, or None."""
    module = {
        "wskit-trio": "wskit.trio",
        "wskit-trio-websocket": "wskit.trio_websocket",
        "trio-websocket": "trio_websocket",
        "websockets-trio": "websockets.trio.server",
    }[row]
    try:
        importlib.import_module(module)
    except Exception as exc:  # missing, or half-written (another change in progress)
        return f"{module} does not import: {exc!r}"
    return None


# --------------------------------------------------------------------------- servers


async def exit_when_orphaned() -> None:
    """Return when the parent process is gone or SERVER_LIFETIME has passed."""
    import trio

    parent = os.getppid()
    with trio.move_on_after(common.SERVER_LIFETIME):
        while os.getppid() == parent:
            await trio.sleep(1.0)


async def serve_trio(name: str, port: int, read_size: int | None) -> None:
    """Run the echo server of row ``name`` on ``port`` until orphaned."""
    import trio

    if name == "wskit-trio":
        import wskit.trio
        from wskit.exceptions import ConnectionClosed

        async def echo(ws: Any) -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send(await ws.recv())

        async with wskit.trio.serve(
            echo,
            common.HOST,
            port,
            compression=None,
            ping_interval=None,
            max_size=common.MAX_MESSAGE,
        ):
            await exit_when_orphaned()
    elif name == "websockets-trio":
        from websockets.exceptions import ConnectionClosed as WebsocketsClosed
        from websockets.trio.server import serve

        async def ws_echo(ws: Any) -> None:
            with contextlib.suppress(WebsocketsClosed):
                while True:
                    await ws.send(await ws.recv())

        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(
                    serve,
                    ws_echo,
                    port,
                    host=common.HOST,
                    compression=None,
                    ping_interval=None,
                    max_size=common.MAX_MESSAGE,
                )
            )
            async with server:
                await exit_when_orphaned()
    else:
        tw = importlib.import_module(TRIO_WEBSOCKET_MODULES[name])

        async def tw_echo(request: Any) -> None:
            ws = await request.accept()
            with contextlib.suppress(tw.ConnectionClosed):
                while True:
                    await ws.send_message(await ws.get_message())

        options: dict[str, Any] = {"max_message_size": common.MAX_MESSAGE}
        if read_size is not None:
            options["receive_buffer_size"] = read_size
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(tw.serve_websocket, tw_echo, common.HOST, port, None, **options)
            )
            await exit_when_orphaned()
            nursery.cancel_scope.cancel()


async def load(
    port: int, size: int, duration: float, server_cpu: Callable[[], float]
) -> tuple[int, float, float]:
    """The common load generator: round trips of ``size`` bytes for ``duration`` seconds (at
    most MAX_ROUND_TRIPS) after WARMUP ones; (messages, seconds, server CPU seconds)."""
    import wskit.asyncio
    from wskit.handlers import Handler

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    state = {"left": WARMUP, "count": 0, "measuring": False, "end": 0.0}
    payload = os.urandom(size)

    class Load(Handler):
        def on_message(self, message: Any) -> None:
            if len(message) != size:
                if not done.done():
                    done.set_exception(common.BenchmarkError(f"echo of {len(message)} bytes"))
                return
            if state["measuring"]:
                state["count"] += 1
                if state["count"] >= MAX_ROUND_TRIPS or time.perf_counter() >= state["end"]:
                    if not done.done():
                        done.set_result(None)
                    return
            else:
                state["left"] -= 1
                if state["left"] <= 0:
                    if not done.done():
                        done.set_result(None)
                    return
            self.send(payload)

    ws = await asyncio.wait_for(
        wskit.asyncio.connect(
            f"ws://{common.HOST}:{port}/",
            handler=Load,
            compression=None,
            ping_interval=None,
            max_size=common.MAX_MESSAGE,
        ),
        common.OPEN_TIMEOUT,
    )
    try:
        assert ws.handler is not None
        ws.handler.send(payload)
        await asyncio.wait_for(done, common.CELL_GRACE)
        done = loop.create_future()
        cpu0 = server_cpu()
        t0 = time.perf_counter()
        state.update(measuring=True, end=t0 + duration)
        ws.handler.send(payload)
        await asyncio.wait_for(done, duration + common.CELL_GRACE)
        elapsed = time.perf_counter() - t0
        used = server_cpu() - cpu0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), common.CLOSE_TIMEOUT)
    return int(state["count"]), elapsed, used


# --------------------------------------------------------------------------- clients


async def client_cell(
    name: str, port: int, size: int, duration: float, read_size: int | None
) -> tuple[int, float, float]:
    """Run the client of row ``name``: (messages, seconds, CPU seconds of this process)."""
    import trio

    url = f"ws://{common.HOST}:{port}/"
    payload = os.urandom(size)
    # One deadline for the whole cell (a cancel scope must not close inside the connection's
    # nursery, so there is no separate one for opening).
    with trio.fail_after(common.OPEN_TIMEOUT + duration + common.CELL_GRACE):
        async with contextlib.AsyncExitStack() as stack:
            if name == "wskit-trio":
                import wskit.trio

                ws: Any = await stack.enter_async_context(
                    wskit.trio.connect(
                        url, compression=None, ping_interval=None, max_size=common.MAX_MESSAGE
                    )
                )
                send, recv = ws.send, ws.recv
            elif name == "websockets-trio":
                from websockets.trio.client import connect

                ws = await stack.enter_async_context(
                    connect(url, compression=None, ping_interval=None, max_size=common.MAX_MESSAGE)
                )
                send, recv = ws.send, ws.recv
            else:
                tw = importlib.import_module(TRIO_WEBSOCKET_MODULES[name])
                options: dict[str, Any] = {"max_message_size": common.MAX_MESSAGE}
                if read_size is not None:
                    options["receive_buffer_size"] = read_size
                ws = await stack.enter_async_context(tw.open_websocket_url(url, **options))
                send, recv = ws.send_message, ws.get_message
            for _ in range(WARMUP):
                await send(payload)
                if len(await recv()) != size:
                    raise common.BenchmarkError("wrong echo")
            count = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            end = t0 + duration
            while count < MAX_ROUND_TRIPS:
                await send(payload)
                if len(await recv()) != size:
                    raise common.BenchmarkError("wrong echo")
                count += 1
                if time.perf_counter() >= end:
                    break
            elapsed, used = time.perf_counter() - t0, time.process_time() - cpu0
    return count, elapsed, used


# --------------------------------------------------------------------------- the cells

Cell = tuple[float, float]  # (CPU us per message, messages per second)


def start_server(name: str, read_size: int | None) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server of row ``name`` (or ``common``) in its own process, pinned."""
    port = common.free_port()
    command = [sys.executable, str(Path(__file__)), "--serve", name, "--port", str(port)]
    if read_size is not None:
        command += ["--trio-websocket-read-size", str(read_size)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + common.SERVER_START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise common.BenchmarkError(f"server {name} exited")
        try:
            socket.create_connection((common.HOST, port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                hosts.stop(process)
                raise common.BenchmarkError(f"server {name} is not listening") from None
            time.sleep(0.05)
        else:
            common.pin(process.pid, cpu())
            return process, port


def server_cell(name: str, size: int, duration: float, read_size: int | None) -> Cell:
    process, port = start_server(name, read_size)
    try:
        os.sched_setaffinity(0, cpu())
        count, elapsed, used = asyncio.run(
            load(port, size, duration, lambda: common.process_cpu_seconds(process.pid) or 0.0)
        )
    finally:
        hosts.stop(process)
    if count == 0:
        raise common.BenchmarkError("no round trip")
    return used / count * 1e6, count / elapsed


def client_cell_in_process(name: str, size: int, duration: float, read_size: int | None) -> Cell:
    process, port = start_server("common", None)
    try:
        command = [
            sys.executable, str(Path(__file__)), "--client", name, "--port", str(port),
            "--size", str(size), "--duration", str(duration),
        ]  # fmt: skip
        if read_size is not None:
            command += ["--trio-websocket-read-size", str(read_size)]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=duration + CLIENT_GRACE,
        )
    finally:
        hosts.stop(process)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise common.BenchmarkError(f"client {name}: {lines[-1]}")
    count, elapsed, used = (float(x) for x in done.stdout.split())
    if count == 0:
        raise common.BenchmarkError("no round trip")
    return used / count * 1e6, count / elapsed


# --------------------------------------------------------------------------- the report


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "  -  "
    return f"{value / reference:4.2f}x"


def table(title: str, rows: list[str], results: dict[str, dict[int, Cell | None]]) -> list[str]:
    """Two lines per row, CPU/msg and rate; each cell: median (x trio-websocket, x
    websockets.trio)."""
    width = 27
    lines = [
        title,
        f"{'row':22}{'':8}" + "".join(f"{common.format_size(s):>{width}}" for s in SIZES),
    ]
    for row in rows:
        for what, index, unit in (("CPU/msg", 0, "us"), ("rate", 1, "/s")):
            cells = []
            for size in SIZES:
                cell = results[row][size]
                if cell is None:
                    cells.append("error")
                    continue
                value = cell[index]
                refs = [results.get(ref, {}).get(size) for ref in REFERENCES]
                shown = " ".join(ratio(value, None if r is None else r[index]) for r in refs)
                number = f"{value:.1f} us" if unit == "us" else f"{value:,.0f}/s"
                cells.append(f"{number} ({shown})")
            lines.append(f"{row:22}{what:8}" + "".join(f"{c:>{width}}" for c in cells))
    return lines


def run_side(
    side: str,
    rows: list[str],
    repeat: int,
    measure: Callable[[str, int], Cell],
    errors: list[str],
) -> dict[str, dict[int, Cell | None]]:
    """Every cell of one side, ``repeat`` times, rows interleaved and rotated; medians."""
    samples: dict[str, dict[int, list[Cell]]] = {row: {s: [] for s in SIZES} for row in rows}
    for rep in range(repeat):
        order = rows[rep % len(rows) :] + rows[: rep % len(rows)]
        for row in order:
            for size in SIZES:
                print(
                    f"[{rep + 1}/{repeat}] {side} {row} {common.format_size(size)}", file=sys.stderr
                )
                try:
                    samples[row][size].append(measure(row, size))
                except Exception as exc:
                    errors.append(f"{side} {row} {common.format_size(size)}: {exc!r}")
    return {
        row: {
            size: (
                (statistics.median(c[0] for c in cells), statistics.median(c[1] for c in cells))
                if cells
                else None
            )
            for size, cells in by_size.items()
        }
        for row, by_size in samples.items()
    }


def versions() -> str:
    parts = []
    for lib in ("trio", "trio-websocket", "websockets", "wsproto", "uvloop"):
        try:
            parts.append(f"{lib} {importlib.metadata.version(lib)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{lib} not installed")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every cell")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per cell")
    parser.add_argument(
        "--trio-websocket-read-size",
        type=int,
        default=None,
        help="receive_buffer_size of the trio-websocket rows (default: theirs, 4 KiB)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    read_size = args.trio_websocket_read_size
    if args.serve:
        if args.serve == "common":
            asyncio.run(hosts.serve_common(args.port))
        else:
            import trio

            trio.run(serve_trio, args.serve, args.port, read_size)
        return 0
    if args.client:
        import trio

        os.sched_setaffinity(0, cpu())
        print(*trio.run(client_cell, args.client, args.port, args.size, args.duration, read_size))
        return 0

    print("\n".join(common.machine_lines()))
    print(f"versions:  {versions()}")
    print(f"wskit:     {common.version_of('wskit')}, core {common.wskit_implementation()}")
    print(f"load:      {common.load_average()} (1-minute average before the run)")
    print(
        f"run:       {args.duration:g} s per cell, median of {args.repeat}; binary round trips; "
        f"every process on CPU {sorted(cpu())[0]}"
    )
    print(
        "peers:     the load generator (servers) and the echo server (clients) are wskit.asyncio "
        "with the callback API"
    )
    print(
        "cells:     median (x trio-websocket x websockets-trio); CPU/msg is the process CPU time "
        "of the side under test"
    )
    if read_size is not None:
        print(f"option:    trio-websocket rows read {read_size} bytes at a time")
    rows = []
    for row in ROWS:
        why = unavailable(row)
        if why is None:
            rows.append(row)
        else:
            print(f"skipped:   {row} ({why})")
    errors: list[str] = []
    servers = run_side(
        "server",
        rows,
        args.repeat,
        lambda row, size: server_cell(row, size, args.duration, read_size),
        errors,
    )
    clients = run_side(
        "client",
        rows,
        args.repeat,
        lambda row, size: client_cell_in_process(row, size, args.duration, read_size),
        errors,
    )
    lines = [""]
    lines += table("SERVER under test (driven by the common load generator)", rows, servers)
    lines.append("")
    lines += table("CLIENT under test (against the common echo server)", rows, clients)
    if errors:
        lines += ["", "errors:", *(f"  {error}" for error in errors)]
    print("\n".join(lines))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

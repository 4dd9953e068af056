"""Echo benchmark: wskit side by side with websockets, aiohttp and picows, one side at a time.

Issue #3's method: "one common load generator for every server and one common echo server for
every client, each process pinned ... uvloop for every asyncio library ... the main figure is
the CPU time per message of the side under test". So every cell is measured twice:

* **server under test**: the row's echo server, driven by the common load generator, picows'
  client (compiled and the cheapest, so it disturbs the server least). Figure: the server
  process's CPU time per message.
* **client under test**: the row's client against the common echo server, picows' server.
  Figure: the client process's CPU time per message.

If picows is not installed, aiohttp's client and server stand in (and the report says so).

Rows: ``wskit`` (the await API: ``await ws.send(await ws.recv())``), ``wskit-cb`` (the callback
API, :class:`wskit.handlers.Handler`), ``websockets``, ``aiohttp``, ``picows``, and
``wskit-pure`` / ``wskit-pure-cb``: the same two with ``WSKIT_NO_EXTENSIONS=1`` in their
processes (the pure-Python core). Ratios are to picows, for the pure rows to websockets.

Cells (columns):

* **round trip** at 32 B, 1 KiB, 64 KiB and 1 MiB: one connection, one binary message in
  flight: send, wait for the echo, check its length, repeat;
* **pipelined** at 32 B and 1 KiB: one connection; N (100,000) messages sent without waiting
  (a sender that honours the transport's flow control) while the echoes are read.

Processes: every server and every client runs in a subprocess of its own; this process only
starts them, pins them, hands each client its cells over a pipe (one JSON line per cell) and
prints the report. A client process runs nothing but its client, so its CPU time over the
timed section (``time.process_time()``, all its threads) is the client's alone; it also reads
the server's CPU time from ``/proc/<pid>/task/*/schedstat`` just before and just after the
timed section (``/proc/<pid>/stat`` ticks as a fallback).

Pinning: by default server and client share ONE core (the last usable one), in both tests: a
round trip has one message in flight, so only one side runs at a time, and a cross-core wake-up
on this kind of VM costs more than a whole 32-byte round trip; the pipelined test on two cores
swings by 2x between repetitions (see README.md). ``--split-round-trip`` and
``--split-pipeline`` give each side its own core.

Every loop is bounded by a count and a time limit; a cell that hits its time limit is reported
with the messages it completed and marked ``*``. No compression, keepalive pings off. Cells
are repeated (``--repeat``, default 3) with the rows interleaved, and the median is reported.

Run: ``python benchmarks/echo.py [--quick] [--libs wskit,picows]``.
"""

# Libraries are imported inside functions on purpose: a server or client subprocess loads only
# its own library, and a library that is not installed is skipped instead of failing the run.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts ``benchmarks/`` first on sys.path; the repository root goes there
# instead, so that the shared code is imported as ``benchmarks.common``.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = _ROOT
elif _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.common import (  # noqa: E402
    CELL_GRACE,
    CLOSE_TIMEOUT,
    HOST,
    MAX_MESSAGE,
    OPEN_TIMEOUT,
    BenchmarkError,
    Column,
    Pinning,
    Probe,
    Sample,
    ServerProcess,
    ServerStarter,
    Settings,
)

SCRIPT = Path(__file__).resolve()
LIBRARIES = ("wskit", "websockets", "aiohttp", "picows")
SIZES = (32, 1024, 64 * 1024, 1024 * 1024)
PIPELINE_SIZES = (32, 1024)
#: The rows' reference: ratios are to picows, the pure-Python rows' to websockets (issue #3).
REFERENCE = "picows"
PURE_REFERENCE = "websockets"
#: The common load generator and echo server: the first of these that is installed.
GENERATORS = ("picows", "aiohttp", "websockets")
#: The two measurements of every cell.
SIDES = ("server", "client")
#: Issue #3 asks for a "few minutes" benchmark: 1.5 s per round-trip cell keeps the full run
#: (7 rows, 6 columns, 2 sides, 3 repetitions) at about 6 minutes on 2 cores.
FULL = dataclasses.replace(common.FULL, duration=1.5)
QUICK = common.QUICK


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the tables: a library, the API it is driven through, and its core."""

    name: str  # the label in the tables and the JSON, and a value of --libs
    lib: str  # the library it needs (its import name)
    api: str  # "await" or "callback"
    pure: bool = False  # WSKIT_NO_EXTENSIONS=1 in its processes

    @property
    def reference(self) -> str:
        return PURE_REFERENCE if self.pure else REFERENCE

    def environment(self) -> dict[str, str]:
        """The environment of this row's server and client processes."""
        env = dict(os.environ)
        if self.pure:
            env["WSKIT_NO_EXTENSIONS"] = "1"
        return env

    def available(self) -> bool:
        if not common.importable(self.lib):
            return False
        if self.lib == "wskit" and self.api == "callback":
            return importlib.util.find_spec("wskit.handlers") is not None
        return True


ROWS = (
    Row("wskit", "wskit", "await"),
    Row("wskit-cb", "wskit", "callback"),
    Row("websockets", "websockets", "await"),
    Row("aiohttp", "aiohttp", "await"),
    Row("picows", "picows", "callback"),
    Row("wskit-pure", "wskit", "await", pure=True),
    Row("wskit-pure-cb", "wskit", "callback", pure=True),
)
ROW = {row.name: row for row in ROWS}


# ---------------------------------------------------------------------------------------------
# servers: each an echo of every data message, in the library's most direct API


async def start_wskit_server(port: int, deflate: bool = False) -> Callable[[], Awaitable[None]]:
    """wskit's await API. ``deflate``: permessage-deflate with wskit's defaults (compression.py)."""
    import wskit.asyncio
    from wskit.exceptions import ConnectionClosed

    async def echo(ws: wskit.asyncio.WebSocketServerConnection) -> None:
        recv, send = ws.recv, ws.send
        with contextlib.suppress(ConnectionClosed):
            while True:
                await send(await recv())

    server = await wskit.asyncio.serve(
        echo,
        HOST,
        port,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=MAX_MESSAGE,
    )
    return server_stopper(server)


async def start_wskit_callback_server(port: int) -> Callable[[], Awaitable[None]]:
    """wskit's callback API: the handler echoes from ``on_message``, no task per message."""
    import wskit.asyncio
    from wskit.handlers import Handler

    class Echo(Handler):
        def on_message(self, message: str | bytes) -> None:
            self.send(message)

    server = await wskit.asyncio.serve(
        Echo, HOST, port, compression=None, ping_interval=None, max_size=MAX_MESSAGE
    )
    return server_stopper(server)


async def start_websockets_server(
    port: int, deflate: bool = False
) -> Callable[[], Awaitable[None]]:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws: ServerConnection) -> None:
        recv, send = ws.recv, ws.send
        with contextlib.suppress(ConnectionClosed):
            while True:
                await send(await recv())

    server = await serve(
        echo,
        HOST,
        port,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=MAX_MESSAGE,
    )
    return server_stopper(server)


async def start_aiohttp_server(port: int, deflate: bool = False) -> Callable[[], Awaitable[None]]:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=MAX_MESSAGE, heartbeat=None)
        await ws.prepare(request)
        while True:
            message = await ws.receive()
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
            else:
                break
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner.cleanup


async def start_picows_server(port: int) -> Callable[[], Awaitable[None]]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    close = WSMsgType.CLOSE

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type is close:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            else:
                # Frame by frame (fin kept), so a fragmented message is echoed as one too.
                transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(
        lambda request: Echo(), HOST, port, max_frame_size=MAX_MESSAGE, enable_auto_ping=False
    )
    return server_stopper(server)


def server_stopper(server: Any) -> Callable[[], Awaitable[None]]:
    """The coroutine function that closes an asyncio-style server and waits for it."""

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


#: The server of each row; a pure row's server is its twin's, run with WSKIT_NO_EXTENSIONS=1.
SERVERS: dict[str, ServerStarter] = {
    "wskit": start_wskit_server,
    "wskit-cb": start_wskit_callback_server,
    "websockets": start_websockets_server,
    "aiohttp": start_aiohttp_server,
    "picows": start_picows_server,
    "wskit-pure": start_wskit_server,
    "wskit-pure-cb": start_wskit_callback_server,
}


# ---------------------------------------------------------------------------------------------
# clients with an awaitable API: wskit, websockets, aiohttp


@dataclasses.dataclass
class AwaitableClient:
    """A connection reduced to the three bound methods the loops call."""

    send: Callable[[bytes], Awaitable[Any]]
    recv: Callable[[], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]


async def connect_wskit(url: str) -> AwaitableClient:
    import wskit.asyncio

    ws = await wskit.asyncio.connect(
        url, compression=None, ping_interval=None, max_size=MAX_MESSAGE
    )
    return AwaitableClient(ws.send, ws.recv, ws.close)


async def connect_websockets(url: str) -> AwaitableClient:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, ping_interval=None, max_size=MAX_MESSAGE)
    return AwaitableClient(ws.send, ws.recv, ws.close)


async def connect_aiohttp(url: str) -> AwaitableClient:
    ws, close = await common.open_aiohttp(url, 0, MAX_MESSAGE)
    return AwaitableClient(ws.send_bytes, ws.receive_bytes, close)


async def round_trip(
    client: AwaitableClient, payload: bytes, settings: Settings, probe: Probe
) -> int:
    """Warm up, then send, wait for the echo, repeat; return the number of timed round trips."""
    await exchange(client, payload, settings.warmup, settings.warmup_seconds)
    probe.start()
    done = await exchange(client, payload, settings.max_round_trips, settings.duration)
    probe.stop()
    return done


async def exchange(client: AwaitableClient, payload: bytes, limit: int, seconds: float) -> int:
    """Up to ``limit`` round trips, stopping after ``seconds``; return how many were made."""
    send, recv = client.send, client.recv
    size = len(payload)
    clock = time.perf_counter
    deadline = clock() + seconds
    done = 0
    while done < limit:
        await send(payload)
        reply = await recv()
        done += 1
        if len(reply) != size:
            raise BenchmarkError(f"echo of {size} bytes came back with {len(reply)}")
        if clock() >= deadline:
            break
    return done


async def pipelined(
    client: AwaitableClient, payload: bytes, settings: Settings, probe: Probe
) -> tuple[int, bool]:
    """Send N messages from one task while another reads the N echoes.

    Returns the echoes received within the time limit and whether all N arrived. (Reading
    runs concurrently because every library stops reading once its queue of received
    messages is full, so a client that only sent would deadlock when the socket buffers fill.)
    """
    count = settings.pipeline_count
    send, recv = client.send, client.recv
    received = 0

    async def reader() -> None:
        nonlocal received
        while received < count:
            await recv()
            received += 1
        probe.stop()

    async def writer() -> None:
        for _ in range(count):
            await send(payload)

    await exchange(client, payload, settings.warmup, settings.warmup_seconds)
    probe.start()
    tasks = [asyncio.ensure_future(reader()), asyncio.ensure_future(writer())]
    done, pending = await asyncio.wait(
        tasks, timeout=settings.pipeline_timeout, return_when=asyncio.FIRST_EXCEPTION
    )
    probe.stop()  # no-op when the reader already stopped it
    for task in pending:
        task.cancel()
    for task in done:
        task.result()  # raises what the task raised
    return received, not pending


async def close_awaitable(client: AwaitableClient) -> None:
    await client.close()


# ---------------------------------------------------------------------------------------------
# clients with a callback API: picows and wskit's Handler. The loops run inside the message
# callback, as these APIs are meant to be used. Each client object has three attributes the
# loops use: ``send_payload(payload)`` sends a binary message now, ``on_size`` (set by the
# loop) is called with the size of every binary message received, and ``writable`` is an
# asyncio.Event cleared while the transport's write buffer is above its high-water mark.


def picows_client_class() -> type[Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    binary = WSMsgType.BINARY
    close = WSMsgType.CLOSE

    class PicowsClient(WSListener):
        def __init__(self) -> None:
            super().__init__()
            self.transport: WSTransport | None = None
            self.send_payload: Callable[[bytes], None] = lambda payload: None
            self.on_size: Callable[[int], None] = lambda size: None
            self.writable = asyncio.Event()
            self.writable.set()

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            self.send_payload = functools.partial(transport.send, binary)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type is binary:
                self.on_size(frame.payload_size)
            elif msg_type is close:
                transport.disconnect()

        def pause_writing(self) -> None:
            self.writable.clear()

        def resume_writing(self) -> None:
            self.writable.set()

    return PicowsClient


async def connect_picows(url: str) -> Any:
    from picows import ws_connect

    _, client = await ws_connect(
        picows_client_class(), url, max_frame_size=MAX_MESSAGE, enable_auto_ping=False
    )
    return client


async def close_picows(client: Any) -> None:
    from picows import WSCloseCode

    transport = client.transport
    transport.send_close(WSCloseCode.OK)
    await transport.wait_disconnected()


def wskit_handler_class() -> type[Any]:
    from wskit.handlers import Handler

    class WskitClient(Handler):
        def __init__(self) -> None:
            self.send_payload: Callable[[bytes], None] = self.send
            self.on_size: Callable[[int], None] = lambda size: None
            self.writable = asyncio.Event()
            self.writable.set()

        def on_message(self, message: str | bytes) -> None:
            self.on_size(len(message))

        def on_pause_writing(self) -> None:
            self.writable.clear()

        def on_resume_writing(self) -> None:
            self.writable.set()

    return WskitClient


async def connect_wskit_callback(url: str) -> Any:
    import wskit.asyncio

    ws = await wskit.asyncio.connect(
        url,
        handler=wskit_handler_class(),
        compression=None,
        ping_interval=None,
        max_size=MAX_MESSAGE,
    )
    return ws.handler


async def close_wskit_callback(client: Any) -> None:
    await client.connection.close()


async def callback_round_trip(client: Any, payload: bytes, settings: Settings, probe: Probe) -> int:
    """:func:`round_trip` for a callback client."""
    await callback_exchange(client, payload, settings.warmup, settings.warmup_seconds)
    probe.start()
    done = await callback_exchange(client, payload, settings.max_round_trips, settings.duration)
    probe.stop()
    return done


async def callback_exchange(client: Any, payload: bytes, limit: int, seconds: float) -> int:
    """:func:`exchange` for a callback client: each echo's callback sends the next message."""
    finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    send = client.send_payload
    size = len(payload)
    clock = time.perf_counter
    deadline = clock() + seconds
    done = 0

    def on_size(reply_size: int) -> None:
        nonlocal done
        if finished.done():
            return
        done += 1
        if reply_size != size:
            finished.set_exception(
                BenchmarkError(f"echo of {size} bytes came back with {reply_size}")
            )
        elif done >= limit or clock() >= deadline:
            finished.set_result(done)
        else:
            send(payload)

    if limit <= 0:
        return 0
    client.on_size = on_size
    send(payload)
    return await finished


async def callback_pipelined(
    client: Any, payload: bytes, settings: Settings, probe: Probe
) -> tuple[int, bool]:
    """:func:`pipelined` for a callback client: one loop sends (pausing while the transport
    says so), the message callback counts the echoes."""
    await callback_exchange(client, payload, settings.warmup, settings.warmup_seconds)
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    count = settings.pipeline_count
    received = 0

    def on_size(reply_size: int) -> None:
        nonlocal received
        received += 1
        if received >= count and not finished.done():
            probe.stop()
            finished.set_result(None)

    client.on_size = on_size
    send = client.send_payload
    writable: asyncio.Event = client.writable
    clock = time.perf_counter
    probe.start()
    deadline = probe.t0 + settings.pipeline_timeout
    try:
        for _ in range(count):
            send(payload)
            if not writable.is_set():  # honour the transport's flow control, as the others do
                await asyncio.wait_for(writable.wait(), max(0.0, deadline - clock()))
        await asyncio.wait_for(asyncio.shield(finished), max(0.0, deadline - clock()))
    except asyncio.TimeoutError:
        pass
    probe.stop()
    return received, finished.done()


# ---------------------------------------------------------------------------------------------
# the client process: runs the cells it is sent, one JSON line each way


@dataclasses.dataclass(frozen=True)
class Driver:
    """How the loops drive one row's client."""

    connect: Callable[[str], Awaitable[Any]]
    round_trip: Callable[[Any, bytes, Settings, Probe], Awaitable[int]]
    pipelined: Callable[[Any, bytes, Settings, Probe], Awaitable[tuple[int, bool]]]
    close: Callable[[Any], Awaitable[None]]


def driver(row: Row) -> Driver:
    if row.lib == "picows":
        return Driver(connect_picows, callback_round_trip, callback_pipelined, close_picows)
    if row.lib == "wskit" and row.api == "callback":
        return Driver(
            connect_wskit_callback, callback_round_trip, callback_pipelined, close_wskit_callback
        )
    connect = {"wskit": connect_wskit, "websockets": connect_websockets}.get(
        row.lib, connect_aiohttp
    )
    return Driver(connect, round_trip, pipelined, close_awaitable)


@dataclasses.dataclass(frozen=True)
class Request:
    """One cell, as the parent sends it to a client process."""

    url: str
    server_pid: int
    size: int
    pipelined: bool
    settings: dict[str, Any]


async def measure(drive: Driver, request: Request) -> Sample:
    """Open a connection, run one cell on it, close it; every step bounded."""
    settings = Settings(**request.settings)
    if request.pipelined:
        bound = settings.pipeline_timeout + settings.warmup_seconds + CELL_GRACE
    else:
        bound = settings.duration + settings.warmup_seconds + CELL_GRACE
    payload = os.urandom(request.size)
    probe = Probe(request.server_pid)
    client = await asyncio.wait_for(drive.connect(request.url), OPEN_TIMEOUT)
    complete = True
    try:
        if request.pipelined:
            messages, complete = await asyncio.wait_for(
                drive.pipelined(client, payload, settings, probe), bound
            )
        else:
            messages = await asyncio.wait_for(
                drive.round_trip(client, payload, settings, probe), bound
            )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(drive.close(client), CLOSE_TIMEOUT)
    return Sample(messages, probe.elapsed, probe.server_cpu, probe.client_cpu, complete)


def client_main(name: str, use_uvloop: bool) -> int:
    """``--client ROW``: say hello (which wskit core this process runs), then run every cell
    read from stdin and answer each with its sample; exit when stdin closes."""
    row = ROW[name]
    drive = driver(row)
    hello = {"implementation": common.wskit_implementation() if row.lib == "wskit" else None}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        request = Request(**json.loads(line))
        try:
            sample = common.run(measure(drive, request), use_uvloop)
        except Exception as exc:
            sample = Sample(0, 0.0, None, None, False, f"{type(exc).__name__}: {exc}")
        print(json.dumps(dataclasses.asdict(sample)), flush=True)
    return 0


class ClientProcess:
    """One row's client in a subprocess of its own, run cell by cell over its stdin/stdout."""

    def __init__(self, row: Row, use_uvloop: bool) -> None:
        self.row = row
        command = [sys.executable, str(SCRIPT), "--client", row.name]
        if use_uvloop:
            command.append("--uvloop")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=row.environment(),
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.implementation: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise BenchmarkError(
                f"{self.row.name} client gave no answer in {timeout:g} s"
            ) from None
        if line is None:
            raise BenchmarkError(f"{self.row.name} client exited with {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def wait_ready(self) -> None:
        self.implementation = self._reply(common.SERVER_START_TIMEOUT)["implementation"]

    def measure(self, request: Request, timeout: float) -> Sample:
        assert self.process.stdin is not None
        if self.process.poll() is not None:
            raise BenchmarkError(f"{self.row.name} client is gone")
        self.process.stdin.write(json.dumps(dataclasses.asdict(request)) + "\n")
        self.process.stdin.flush()
        return Sample(**self._reply(timeout))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------------------------------
# cells


def columns() -> list[Column]:
    result = [Column(common.format_size(size), size, False) for size in SIZES]
    result += [Column(f"pipelined {common.format_size(s)}", s, True) for s in PIPELINE_SIZES]
    return result


#: results[side][row][column label] = the samples of that cell, one per repetition.
Results = dict[str, dict[str, dict[str, list[Sample]]]]


def run_cells(
    rows: Sequence[Row],
    generator: str,
    servers: Mapping[str, ServerProcess],
    clients: Mapping[str, ClientProcess],
    *,
    settings: Settings,
    pinning: Pinning,
) -> Results:
    """Every cell of every row on both sides, ``settings.repeat`` times; rows interleaved,
    their order rotated each repetition."""
    cols = columns()
    names = [row.name for row in rows]
    results: Results = {
        side: {name: {c.label: [] for c in cols} for name in names} for side in SIDES
    }
    for rep in range(settings.repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for column in cols:
            if column.pipelined:
                server_cpus, client_cpus = pinning.pipeline_server, pinning.pipeline_client
                bound = settings.pipeline_timeout
            else:
                server_cpus, client_cpus = pinning.round_trip_server, pinning.round_trip_client
                bound = settings.duration
            bound += settings.warmup_seconds + OPEN_TIMEOUT + CLOSE_TIMEOUT + 2 * CELL_GRACE
            for name in order:
                for side in SIDES:
                    server = servers[name if side == "server" else generator]
                    client = clients[generator if side == "server" else name]
                    common.pin(server.pid, server_cpus)
                    common.pin(client.pid, client_cpus)
                    request = Request(
                        server.url,
                        server.pid,
                        column.size,
                        column.pipelined,
                        dataclasses.asdict(settings),
                    )
                    try:
                        sample = client.measure(request, bound)
                    except Exception as exc:
                        sample = Sample(0, 0.0, None, None, False, f"{type(exc).__name__}: {exc}")
                    results[side][name][column.label].append(sample)
                    common.log(
                        f"[{rep + 1}/{settings.repeat}] {side} {name:<13} {column.label:<15} "
                        f"{describe(sample, side)}"
                    )
    return results


def describe(sample: Sample, side: str) -> str:
    if sample.error is not None:
        return f"ERROR {sample.error}"
    rate = f"{sample.rate:,.0f}/s" if sample.rate is not None else "-"
    cpu = sample.cpu_us if side == "server" else sample.client_cpu_us
    other = sample.client_cpu_us if side == "server" else sample.cpu_us
    partial = "" if sample.complete else f" (time limit hit after {sample.messages:,} messages)"
    return (
        f"{sample.messages:>8,} msgs {rate:>12}  CPU us/msg: {side} {fmt(cpu, '{:,.2f}')}, "
        f"peer {fmt(other, '{:,.2f}')}{partial}"
    )


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


# ---------------------------------------------------------------------------------------------
# report


def metric(side: str, what: str) -> Callable[[Sample], float | None]:
    """The figure of one side: its CPU time per message (``cpu``) or the rate (``rate``)."""
    if what == "rate":
        return lambda s: s.rate
    return (lambda s: s.cpu_us) if side == "server" else (lambda s: s.client_cpu_us)


def ratio(results: Results, side: str, row: Row, label: str, what: str) -> float | None:
    """This row's median over its reference's (None if either is missing)."""
    samples = results[side]
    if row.reference not in samples:
        return None
    ours = common.summarize(samples[row.name][label], metric(side, what)).value
    theirs = common.summarize(samples[row.reference][label], metric(side, what)).value
    return ours / theirs if ours is not None and theirs else None


def side_table(side: str, rows: Sequence[Row], results: Results, generator: str) -> str:
    """Two lines per row (CPU time per message, then rate), one cell per column; each cell
    is the median and, in parentheses, its ratio to the row named under ``vs``."""
    cols = columns()
    if side == "server":
        title = [
            f"SERVER under test: every server driven by the same load generator, the "
            f"{generator} client",
            "CPU/msg: the server process's CPU time per message (user + system, all threads), "
            "the main figure",
        ]
    else:
        title = [
            f"CLIENT under test: every client against the same echo server, the {generator} server",
            "CPU/msg: the client process's CPU time per message (user + system, all threads; "
            "the process runs nothing else), the main figure",
        ]
    title.append(
        "rate: messages per second; (x) = this row / the row under 'vs' "
        "(CPU/msg: lower is better; rate: higher is better)"
    )
    header = ["row", "vs", "", *(c.label for c in cols)]
    lines: list[list[str]] = []
    for row in rows:
        for what, name, unit in (
            ("cpu", "CPU/msg", lambda v: f"{v:,.1f} us"),
            ("rate", "rate", lambda v: f"{v:,.0f}/s"),
        ):
            cells = []
            for column in cols:
                summary = common.summarize(
                    results[side][row.name][column.label], metric(side, what)
                )
                if summary.value is None:
                    cells.append("error" if summary.error else "n/a")
                    continue
                r = ratio(results, side, row, column.label, what)
                text = unit(summary.value) + (f" ({r:.2f}x)" if r is not None else " (-)")
                cells.append(text + ("*" if summary.partial else ""))
            lines.append([row.name, row.reference, name, *cells])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        left = [cell.ljust(width) for cell, width in zip(cells[:3], widths[:3], strict=True)]
        right = [cell.rjust(width) for cell, width in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(render(header))
    return "\n".join([*title, rule, render(header), rule, *(render(line) for line in lines), rule])


@dataclasses.dataclass(frozen=True)
class Target:
    """One of issue #3's targets: a ratio bound over some columns, for the rows it concerns."""

    what: str  # "cpu" or "rate"
    bound: float
    labels: tuple[str, ...]
    pure: bool = False  # for the pure-Python rows (against websockets) instead

    def met(self, value: float) -> bool:
        return value >= self.bound if self.what == "rate" else value <= self.bound


SMALL = ("32 B", "1 KiB", "pipelined 32 B", "pipelined 1 KiB")
TARGETS = (
    Target("cpu", 0.90, SMALL),
    Target("rate", 1.00, ("32 B", "1 KiB", "64 KiB", "1 MiB")),
    Target("cpu", 1.00, ("64 KiB", "1 MiB")),
    Target("cpu", 0.67, SMALL, pure=True),
)


def target_lines(rows: Sequence[Row], results: Results) -> list[str]:
    """Where every wskit row stands against each of issue #3's targets, on each side."""
    lines = ["Issue #3 targets (ratio of medians, this row / the reference):"]
    for target in TARGETS:
        for row in rows:
            if row.lib != "wskit" or row.pure != target.pure:
                continue
            for side in SIDES:
                ratios = [ratio(results, side, row, label, target.what) for label in target.labels]
                shown = ", ".join(
                    f"{label} {'n/a' if r is None else f'{r:.2f}x'}"
                    for label, r in zip(target.labels, ratios, strict=True)
                )
                if any(r is None for r in ratios):
                    verdict = "n/a"
                else:
                    verdict = "met" if all(target.met(r) for r in ratios if r) else "NOT met"
                sign = ">=" if target.what == "rate" else "<="
                name = "CPU/msg" if target.what == "cpu" else "rate"
                lines.append(
                    f"  {side:<6} {row.name:<13} {name} {sign} {target.bound:.2f}x "
                    f"{row.reference}: {shown} -> {verdict}"
                )
    return lines


def report(rows: Sequence[Row], results: Results, generator: str, settings: Settings) -> str:
    parts = [
        side_table("server", rows, results, generator),
        "",
        side_table("client", rows, results, generator),
        "",
        *target_lines(rows, results),
    ]
    notes = []
    for side in SIDES:
        for name, row in results[side].items():
            for label, samples in row.items():
                for i, sample in enumerate(samples):
                    if sample.error is not None:
                        notes.append(
                            f"  {side} {name}, {label}, repetition {i + 1}: {sample.error}"
                        )
                    elif not sample.complete:
                        notes.append(
                            f"  {side} {name}, {label}, repetition {i + 1}: time limit hit "
                            f"after {sample.messages:,} of {settings.pipeline_count:,} messages"
                        )
    if notes:
        parts += ["", "* = time limit hit (rate over the messages that arrived). Problems:", *notes]
    return "\n".join(parts)


def machine_info(
    rows: Sequence[Row],
    generator: str,
    use_uvloop: bool,
    *,
    pinning: Pinning,
    settings: Settings,
    clients: Mapping[str, ClientProcess],
) -> str:
    libs = dict.fromkeys([*(row.lib for row in rows), generator])
    cores = ", ".join(
        f"{row.name} {clients[row.name].implementation}" for row in rows if row.lib == "wskit"
    )
    lines = [
        *common.machine_lines(),
        f"loop:      {common.loop_name(use_uvloop)}, in every server and client process",
        f"pinning:   {pinning.describe()}",
        f"peers:     load generator: the {generator} client (for every server); echo server: "
        f"the {generator} server (for every client)",
        f"cpu time:  server: {common.cpu_source()}; client: time.process_time() in its own process",
        f"run:       {settings.duration:g} s per round-trip cell (at most "
        f"{settings.max_round_trips:,} round trips) after {settings.warmup} warm-up round "
        f"trips; pipelined {settings.pipeline_count:,} messages (limit "
        f"{settings.pipeline_timeout:g} s); median of {settings.repeat}",
        "libraries: " + ", ".join(f"{lib} {common.version_of(lib)}" for lib in libs),
        f"wskit core: {cores or 'no wskit row'} (as each client process reports it; "
        "its server runs with the same environment)",
        f"load:      {common.load_average()} (1-minute load average before the run)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Echo benchmark: wskit against websockets, aiohttp and picows; one common "
        "load generator for every server and one common echo server for every client."
    )
    common.add_common_arguments(
        parser,
        LIBRARIES,
        quick="a few seconds instead of minutes",
        libs_help=(
            "comma-separated libraries ("
            + ",".join(LIBRARIES)
            + ") or rows ("
            + ",".join(ROW)
            + "); a library selects all its rows; the reference rows (picows, websockets) "
            "are added when installed"
        ),
    )
    parser.add_argument(
        "--split-round-trip",
        action="store_true",
        help="round trips with server and client on two different CPUs (default: one shared)",
    )
    parser.add_argument(
        "--split-pipeline",
        action="store_true",
        help="the pipelined test with server and client on two different CPUs (default: one)",
    )
    parser.add_argument("--pipeline", type=int, help="messages in the pipelined test")
    # Subprocess modes: a row's server, or a row's client driven over stdin/stdout.
    parser.add_argument("--serve", choices=ROW, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=ROW, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def choose_rows(text: str) -> list[Row] | None:
    """The rows ``--libs`` names (libraries select all their rows), plus their references;
    rows whose library is missing are skipped with a note. None if a name is unknown."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LIBRARIES and name not in ROW]
    if unknown or not names:
        print(f"unknown libraries: {', '.join(unknown) or '(none given)'}", file=sys.stderr)
        return None
    chosen = {row.name for row in ROWS if row.lib in names or row.name in names}
    chosen |= {ROW[name].reference for name in chosen}
    rows = []
    for row in ROWS:
        if row.name in chosen:
            if row.available():
                rows.append(row)
            else:
                print(f"skipping {row.name}: {row.lib} (or its API) not installed", file=sys.stderr)
    return rows or None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_checkout()
    # picows logs a warning at every write pause, which the pipelined test causes on purpose.
    logging.getLogger("picows").setLevel(logging.ERROR)
    if args.serve:
        return common.serve_main(args.serve, args.port, args.uvloop, SERVERS)
    if args.client:
        return client_main(args.client, args.uvloop)

    settings = common.apply_arguments(QUICK if args.quick else FULL, args)
    if args.pipeline is not None:
        settings = dataclasses.replace(settings, pipeline_count=max(1, args.pipeline))
    rows = choose_rows(args.libs)
    if rows is None:
        return 2
    generator = next((name for name in GENERATORS if ROW[name].available()), None)
    if generator is None:
        print("no load generator: none of " + ", ".join(GENERATORS), file=sys.stderr)
        return 2
    use_uvloop = common.want_uvloop(args)
    pinning = Pinning.plan(not args.no_pin, args.split_round_trip, args.split_pipeline)

    servers: dict[str, ServerProcess] = {}
    clients: dict[str, ClientProcess] = {}
    try:
        for row in [*rows, ROW[generator]]:
            if row.name not in servers:
                env = row.environment()
                servers[row.name] = ServerProcess(row.name, use_uvloop, SCRIPT, env)
                clients[row.name] = ClientProcess(row, use_uvloop)
        for server in servers.values():
            server.wait_listening()
        for client in clients.values():
            client.wait_ready()
        print(
            machine_info(
                rows, generator, use_uvloop, pinning=pinning, settings=settings, clients=clients
            ),
            flush=True,
        )
        print(flush=True)
        results = run_cells(rows, generator, servers, clients, settings=settings, pinning=pinning)
    finally:
        for client in clients.values():
            client.stop()
        for server in servers.values():
            server.stop()
    print(report(rows, results, generator, settings), flush=True)
    if args.json:
        dump = {"generator": generator, **{side: results[side] for side in SIDES}}
        common.write_json(args.json, dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Echo benchmark: wskit side by side with websockets, aiohttp and picows, in one run.

Each library is measured with its own client against its own server:

* **round trip** -- one connection, one message in flight: send a binary message, wait for its
  echo, repeat. Payloads of 32 B, 1 KiB, 64 KiB and 1 MiB. Reported as round trips per second.
* **pipelined** -- one connection, the client sends N (100,000) 32-byte messages without
  waiting for echoes while a second task reads the N echoes. Reported as messages per second.

For every cell the server's CPU time per message is measured too, from the server process's
``/proc/<pid>/task/*/schedstat`` (nanoseconds on the CPU; ``/proc/<pid>/stat`` ticks as a
fallback), read by this process just before and just after the timed section.

Why it is set up this way:

* Every server runs in its own subprocess (``echo.py --serve LIB --port N [--uvloop]``) and
  the client runs here, so a server never shares an interpreter (or a GIL) with a client.
* Both ends are pinned with ``os.sched_setaffinity`` where it exists, by default to the SAME
  core. A round-trip test has one message in flight, so only one side runs at a time; on one
  core the hand-over is a cheap same-core wake-up, while on two cores each hand-over pays a
  cross-core wake-up (issue #3 saw about 80 us; on the 2-core VM of the first results about
  11 us, still more than a whole 32-byte round trip of picows on one core). The pipelined test
  could use a core per side, but on 2 cores its rate then swings by up to 2x between
  repetitions (how many messages each wake-up finds waiting decides the cost per message);
  on one core each side runs until it has drained what is there, and the rate measures the
  per-message cost of the two ends, within a few percent. ``--split-round-trip`` and
  ``--split-pipeline`` give each side its own core.
* uvloop is used on both ends for every library when it is installed (all four run on it);
  ``--no-uvloop`` uses the standard asyncio loop instead.
* Every loop is bounded by a count and a time limit; a cell that hits its time limit is
  reported with the messages it completed and marked with ``*``.
* Binary messages, no compression anywhere (picows has none), keepalive pings off.
* Cells are repeated (``--repeat``, default 3) with the libraries interleaved, and the
  median is reported, so that a slow moment of the machine hits every library alike.

Output: machine information, then one table per metric (rows: libraries; columns: payload
sizes and the pipelined test); each cell holds the value and its ratio to the best value in
its column ("1.00x" is the best: for rates the others are fractions of it, for CPU time
multiples of it).

Run: ``python benchmarks/echo.py [--quick] [--libs wskit,websockets,aiohttp,picows]``.
"""

# Libraries are imported inside functions on purpose: a server subprocess loads only its own
# library, and a library that is not installed is skipped instead of failing the run.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The checkout's ``src``: the benchmark measures the wskit next to it, not an installed one.
SRC = HERE.parent / "src"

LIBRARIES = ("wskit", "websockets", "aiohttp", "picows")
SIZES = (32, 1024, 64 * 1024, 1024 * 1024)
PIPELINE_SIZE = 32
HOST = "127.0.0.1"
#: Message size limit given to every library: above the largest payload, because websockets'
#: default limit is exactly 1 MiB and the others differ; no library may refuse a test message.
MAX_MESSAGE = 2 * 1024 * 1024
#: Seconds allowed for a server subprocess to start listening.
SERVER_START_TIMEOUT = 30.0
#: A server exits on its own after this many seconds, or as soon as its parent is gone.
SERVER_LIFETIME = 30 * 60.0
#: Seconds allowed for opening a connection (TCP + handshake) and for closing it.
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: Extra seconds beyond a cell's own time limits before the cell is abandoned as hung.
CELL_GRACE = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long and how much: every loop has a count limit and a time limit."""

    duration: float  # seconds of timed round trips per cell
    max_round_trips: int  # count limit of timed round trips per cell
    warmup: int  # untimed round trips before each cell ...
    warmup_seconds: float  # ... or fewer, if they take longer than this
    pipeline_count: int  # messages in the pipelined test
    pipeline_timeout: float  # time limit of the pipelined test
    repeat: int  # repetitions of every cell; the median is reported


#: About 2-3 minutes for the four libraries on 2 cores.
FULL = Settings(
    duration=2.5,
    max_round_trips=1_000_000,
    warmup=200,
    warmup_seconds=0.3,
    pipeline_count=100_000,
    pipeline_timeout=30.0,
    repeat=3,
)
#: A few seconds: enough to check that everything runs (used by the smoke test).
QUICK = Settings(
    duration=0.1,
    max_round_trips=10_000,
    warmup=10,
    warmup_seconds=0.05,
    pipeline_count=2_000,
    pipeline_timeout=5.0,
    repeat=1,
)


class BenchmarkError(Exception):
    """An echo did not match what was sent, or a peer misbehaved."""


# ---------------------------------------------------------------------------------------------
# measuring the server: CPU time and affinity


def _tasks(pid: int) -> list[int]:
    """Thread ids of ``pid`` (just ``pid`` where ``/proc`` is missing)."""
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by every thread of ``pid``, or None.

    ``schedstat`` counts nanoseconds; ``stat`` only clock ticks (10 ms), good enough over
    the seconds that a cell lasts.
    """
    try:
        total = 0
        for tid in _tasks(pid):
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as file:
                total += int(file.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # Fields after the ")" closing the command name: utime and stime are the 12th
            # and 13th (fields 14 and 15 of proc(5)).
            fields = file.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def cpu_source() -> str:
    """Which counter :func:`process_cpu_seconds` reads on this machine."""
    pid = os.getpid()
    if os.path.exists(f"/proc/{pid}/task/{pid}/schedstat"):
        return "/proc/<pid>/task/*/schedstat (ns)"
    if os.path.exists(f"/proc/{pid}/stat"):
        return "/proc/<pid>/stat utime+stime (clock ticks)"
    return "unavailable"


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of ``pid`` to ``cpus`` (None: leave it alone)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return
    for tid in _tasks(pid):
        with contextlib.suppress(OSError):  # a thread may have exited meanwhile
            os.sched_setaffinity(tid, cpus)


@dataclasses.dataclass(frozen=True)
class Pinning:
    """Where each end runs: by default one shared core for both tests (see the module
    docstring for why); optionally a core each. None: not pinned."""

    round_trip_server: set[int] | None
    round_trip_client: set[int] | None
    pipeline_server: set[int] | None
    pipeline_client: set[int] | None

    @classmethod
    def plan(
        cls, enabled: bool, split_round_trip: bool = False, split_pipeline: bool = False
    ) -> Pinning:
        """Pin to the last usable CPU; a split client goes on the one before it."""
        if not enabled or not hasattr(os, "sched_getaffinity"):
            return cls(None, None, None, None)
        cpus = sorted(os.sched_getaffinity(0))
        last = {cpus[-1]}
        other = {cpus[-2]} if len(cpus) > 1 else last
        return cls(
            round_trip_server=last,
            round_trip_client=other if split_round_trip else last,
            pipeline_server=last,
            pipeline_client=other if split_pipeline else last,
        )

    def describe(self) -> str:
        if self.round_trip_server is None:
            return "not pinned"
        return (
            f"round trip: server on CPU {sorted(self.round_trip_server)}, client on CPU "
            f"{sorted(self.round_trip_client or ())}; pipelined: server on CPU "
            f"{sorted(self.pipeline_server or ())}, client on CPU "
            f"{sorted(self.pipeline_client or ())}"
        )


class Probe:
    """Marks the timed section of a cell: wall clock, CPU time of the server process and of
    this (the client) process."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.t0 = self.t1 = 0.0
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.client0 = self.client1 = 0.0
        self.stopped = False

    def start(self) -> None:
        self.cpu0 = process_cpu_seconds(self.server_pid)
        self.client0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        if self.stopped:
            return
        self.t1 = time.perf_counter()
        self.client1 = time.process_time()
        self.cpu1 = process_cpu_seconds(self.server_pid)
        self.stopped = True

    @property
    def elapsed(self) -> float:
        return self.t1 - self.t0

    @property
    def server_cpu(self) -> float | None:
        if self.cpu0 is None or self.cpu1 is None:
            return None
        return self.cpu1 - self.cpu0

    @property
    def client_cpu(self) -> float:
        return self.client1 - self.client0


# ---------------------------------------------------------------------------------------------
# event loops


def run(coro: Coroutine[Any, Any, Any], use_uvloop: bool) -> Any:
    """Run ``coro`` on uvloop or on the standard asyncio loop."""
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def uvloop_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# servers: each an echo of every data message, in the library's most direct API


async def start_wskit_server(port: int) -> Callable[[], Awaitable[None]]:
    import wskit.asyncio
    from wskit.exceptions import ConnectionClosed

    async def echo(ws: wskit.asyncio.WebSocketServerConnection) -> None:
        recv, send = ws.recv, ws.send
        with contextlib.suppress(ConnectionClosed):
            while True:
                await send(await recv())

    server = await wskit.asyncio.serve(
        echo, HOST, port, compression=None, ping_interval=None, max_size=MAX_MESSAGE
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


async def start_websockets_server(port: int) -> Callable[[], Awaitable[None]]:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws: ServerConnection) -> None:
        recv, send = ws.recv, ws.send
        with contextlib.suppress(ConnectionClosed):
            while True:
                await send(await recv())

    server = await serve(
        echo, HOST, port, compression=None, ping_interval=None, max_size=MAX_MESSAGE
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


async def start_aiohttp_server(port: int) -> Callable[[], Awaitable[None]]:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE, heartbeat=None)
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

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


#: Starts a server on a port; returns the coroutine function that stops it.
ServerStarter = Callable[[int], Awaitable[Callable[[], Awaitable[None]]]]

SERVERS: dict[str, ServerStarter] = {
    "wskit": start_wskit_server,
    "websockets": start_websockets_server,
    "aiohttp": start_aiohttp_server,
    "picows": start_picows_server,
}


async def serve_until_orphaned(
    lib: str, port: int, servers: Mapping[str, ServerStarter] | None = None
) -> None:
    """Serve until the parent process is gone or :data:`SERVER_LIFETIME` has passed.

    ``servers`` maps a library to the function starting its server (default: the echo servers
    above); other benchmarks pass their own and reuse this loop.
    """
    stop = await (SERVERS if servers is None else servers)[lib](port)
    parent = os.getppid()
    end = time.monotonic() + SERVER_LIFETIME
    try:
        while os.getppid() == parent and time.monotonic() < end:
            await asyncio.sleep(0.5)
    finally:
        await asyncio.wait_for(stop(), CLOSE_TIMEOUT)


def serve_main(
    lib: str, port: int, use_uvloop: bool, servers: Mapping[str, ServerStarter] | None = None
) -> int:
    run(serve_until_orphaned(lib, port, servers), use_uvloop)
    return 0


class ServerProcess:
    """One library's echo server in a subprocess of its own.

    ``script`` is the benchmark whose ``--serve LIB --port N [--uvloop]`` mode runs the server:
    this file by default; other benchmarks pass their own path to start their own servers.
    """

    def __init__(self, lib: str, use_uvloop: bool, script: Path | None = None) -> None:
        self.lib = lib
        self.port = free_port()
        command = [sys.executable, str(script or Path(__file__).resolve()), "--serve", lib]
        command += ["--port", str(self.port)]
        if use_uvloop:
            command.append("--uvloop")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        self.url = f"ws://{HOST}:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_listening(self) -> None:
        """Poll the port until the server accepts connections (bounded)."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise BenchmarkError(f"{self.lib} server exited with {self.process.returncode}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{self.lib} server did not start listening") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


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
    import aiohttp

    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, compress=0, heartbeat=None, max_msg_size=MAX_MESSAGE)
    except BaseException:
        await session.close()
        raise

    async def close() -> None:
        try:
            await ws.close()
        finally:
            await session.close()

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


# ---------------------------------------------------------------------------------------------
# picows: callback-based; the loops run inside its frame callback, as picows is meant to be used


def picows_client_class() -> type[Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    binary = WSMsgType.BINARY
    close = WSMsgType.CLOSE

    class PicowsClient(WSListener):
        """Hands the size of every binary message to ``on_message``; tracks write pauses."""

        def __init__(self) -> None:
            super().__init__()
            self.transport: WSTransport | None = None
            self.on_message: Callable[[int], None] = lambda size: None
            self.writable: asyncio.Event | None = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            self.writable = asyncio.Event()
            self.writable.set()

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type is binary:
                self.on_message(frame.payload_size)
            elif msg_type is close:
                transport.disconnect()

        def pause_writing(self) -> None:
            if self.writable is not None:
                self.writable.clear()

        def resume_writing(self) -> None:
            if self.writable is not None:
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


async def picows_round_trip(client: Any, payload: bytes, settings: Settings, probe: Probe) -> int:
    """:func:`round_trip` for picows."""
    await picows_exchange(client, payload, settings.warmup, settings.warmup_seconds)
    probe.start()
    done = await picows_exchange(client, payload, settings.max_round_trips, settings.duration)
    probe.stop()
    return done


async def picows_exchange(client: Any, payload: bytes, limit: int, seconds: float) -> int:
    """:func:`exchange` for picows: each echo's callback sends the next message."""
    from picows import WSMsgType

    finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    send = client.transport.send
    binary = WSMsgType.BINARY
    size = len(payload)
    clock = time.perf_counter
    deadline = clock() + seconds
    done = 0

    def on_message(reply_size: int) -> None:
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
            send(binary, payload)

    if limit <= 0:
        return 0
    client.on_message = on_message
    send(binary, payload)
    return await finished


async def picows_pipelined(
    client: Any, payload: bytes, settings: Settings, probe: Probe
) -> tuple[int, bool]:
    """:func:`pipelined` for picows: one loop sends, the frame callback counts the echoes."""
    from picows import WSMsgType

    await picows_exchange(client, payload, settings.warmup, settings.warmup_seconds)
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    count = settings.pipeline_count
    received = 0

    def on_message(reply_size: int) -> None:
        nonlocal received
        received += 1
        if received >= count and not finished.done():
            probe.stop()
            finished.set_result(None)

    client.on_message = on_message
    send = client.transport.send
    binary = WSMsgType.BINARY
    writable: asyncio.Event = client.writable
    clock = time.perf_counter
    probe.start()
    deadline = probe.t0 + settings.pipeline_timeout
    try:
        for _ in range(count):
            send(binary, payload)
            if not writable.is_set():  # honour the transport's flow control, as the others do
                await asyncio.wait_for(writable.wait(), max(0.0, deadline - clock()))
        await asyncio.wait_for(asyncio.shield(finished), max(0.0, deadline - clock()))
    except asyncio.TimeoutError:
        pass
    probe.stop()
    return received, finished.done()


# ---------------------------------------------------------------------------------------------
# cells


ConnectFunction = Callable[[str], Awaitable[Any]]
CONNECT: dict[str, ConnectFunction] = {
    "wskit": connect_wskit,
    "websockets": connect_websockets,
    "aiohttp": connect_aiohttp,
    "picows": connect_picows,
}


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the tables: a round-trip payload size, or the pipelined test."""

    label: str
    size: int
    pipelined: bool


def columns(settings: Settings) -> list[Column]:
    result = [Column(format_size(size), size, False) for size in SIZES]
    result.append(
        Column(f"pipelined {settings.pipeline_count:,} x {PIPELINE_SIZE} B", PIPELINE_SIZE, True)
    )
    return result


def format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} B"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measurement of one cell."""

    messages: int
    seconds: float
    server_cpu: float | None
    client_cpu: float | None = None
    complete: bool = True
    error: str | None = None

    @property
    def rate(self) -> float | None:
        if self.error is not None or self.seconds <= 0 or self.messages == 0:
            return None
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float | None:
        if self.error is not None or self.server_cpu is None or self.messages == 0:
            return None
        return self.server_cpu / self.messages * 1e6

    @property
    def client_cpu_us(self) -> float | None:
        if self.error is not None or self.client_cpu is None or self.messages == 0:
            return None
        return self.client_cpu / self.messages * 1e6


async def measure(
    lib: str, server: ServerProcess, column: Column, settings: Settings, pinning: Pinning
) -> Sample:
    """Open a connection, run one cell on it, close it; every step bounded."""
    if column.pipelined:
        pin(server.pid, pinning.pipeline_server)
        pin(os.getpid(), pinning.pipeline_client)
        bound = settings.pipeline_timeout + settings.warmup_seconds + CELL_GRACE
    else:
        pin(server.pid, pinning.round_trip_server)
        pin(os.getpid(), pinning.round_trip_client)
        bound = settings.duration + settings.warmup_seconds + CELL_GRACE
    payload = os.urandom(column.size)
    probe = Probe(server.pid)
    client = await asyncio.wait_for(CONNECT[lib](server.url), OPEN_TIMEOUT)
    complete = True
    try:
        if lib == "picows":
            if column.pipelined:
                messages, complete = await asyncio.wait_for(
                    picows_pipelined(client, payload, settings, probe), bound
                )
            else:
                messages = await asyncio.wait_for(
                    picows_round_trip(client, payload, settings, probe), bound
                )
        elif column.pipelined:
            messages, complete = await asyncio.wait_for(
                pipelined(client, payload, settings, probe), bound
            )
        else:
            messages = await asyncio.wait_for(round_trip(client, payload, settings, probe), bound)
    finally:
        closing = close_picows(client) if lib == "picows" else client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing, CLOSE_TIMEOUT)
    return Sample(messages, probe.elapsed, probe.server_cpu, probe.client_cpu, complete)


async def run_cells(
    libs: Sequence[str],
    servers: dict[str, ServerProcess],
    settings: Settings,
    pinning: Pinning,
    log: Callable[[str], None],
) -> dict[str, dict[str, list[Sample]]]:
    """Every cell ``settings.repeat`` times; libraries interleaved, their order rotated."""
    cols = columns(settings)
    results: dict[str, dict[str, list[Sample]]] = {lib: {c.label: [] for c in cols} for lib in libs}
    for rep in range(settings.repeat):
        order = list(libs[rep % len(libs) :]) + list(libs[: rep % len(libs)])
        for column in cols:
            for lib in order:
                try:
                    sample = await measure(lib, servers[lib], column, settings, pinning)
                except Exception as exc:
                    sample = Sample(0, 0.0, None, None, False, f"{type(exc).__name__}: {exc}")
                results[lib][column.label].append(sample)
                log(
                    f"[{rep + 1}/{settings.repeat}] {lib:<10} {column.label:<22} {describe(sample)}"
                )
    return results


def describe(sample: Sample) -> str:
    if sample.error is not None:
        return f"ERROR {sample.error}"
    rate = f"{sample.rate:,.0f}/s" if sample.rate is not None else "-"
    cpu = f"{sample.cpu_us:,.1f}" if sample.cpu_us is not None else "n/a"
    client = f"{sample.client_cpu_us:,.1f}" if sample.client_cpu_us is not None else "n/a"
    partial = "" if sample.complete else f" (time limit hit after {sample.messages:,} messages)"
    return (
        f"{sample.messages:>8,} msgs {rate:>12}  CPU us/msg: server {cpu}, client {client}{partial}"
    )


# ---------------------------------------------------------------------------------------------
# report


@dataclasses.dataclass(frozen=True)
class Summary:
    value: float | None
    partial: bool
    error: str | None


def summarize(samples: list[Sample], metric: Callable[[Sample], float | None]) -> Summary:
    """The median over repetitions; an error only if no repetition produced a value."""
    values = [v for v in (metric(s) for s in samples) if v is not None]
    errors = [s.error for s in samples if s.error is not None]
    partial = any(not s.complete and s.error is None for s in samples)
    if not values:
        return Summary(None, partial, errors[0] if errors else None)
    return Summary(statistics.median(values), partial, None)


def table(
    title: str,
    *,
    libs: Sequence[str],
    cols: Sequence[Column],
    results: dict[str, dict[str, list[Sample]]],
    metric: Callable[[Sample], float | None],
    higher_is_better: bool,
    unit: Callable[[float], str],
) -> str:
    """A text table: rows = libraries, columns = sizes; each cell is value and ratio to best."""
    cells: dict[str, list[str]] = {}
    for column in cols:
        summaries = {lib: summarize(results[lib][column.label], metric) for lib in libs}
        values = [s.value for s in summaries.values() if s.value is not None]
        best = (max(values) if higher_is_better else min(values)) if values else None
        for lib in libs:
            summary = summaries[lib]
            if summary.value is None:
                text = "error" if summary.error else "n/a"
            else:
                ratio = summary.value / best if best else 0.0
                text = f"{unit(summary.value)} ({ratio:.2f}x)"
                if summary.partial:
                    text += "*"
            cells.setdefault(lib, []).append(text)
    header = ["library", *(c.label for c in cols)]
    rows = [[lib, *cells[lib]] for lib in libs]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *(line(row) for row in rows), rule])


def version_of(lib: str) -> str:
    if lib == "wskit":
        try:
            import wskit

            version = str(getattr(wskit, "__version__", "?"))
        except ImportError:
            return "not installed"
        commit = git_commit()
        return f"{version} ({commit})" if commit else version
    try:
        return importlib.metadata.version(lib)  # distribution name = import name
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wskit_implementation() -> str:
    """``compiled`` or ``pure``: which core wskit runs here (servers inherit the environment,
    hence ``WSKIT_NO_EXTENSIONS``)."""
    try:
        from wskit.core import IMPLEMENTATION
    except ImportError:
        return "not installed"
    return str(IMPLEMENTATION)


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def load_average() -> str:
    """The 1-minute load average: other work on the machine makes every number noisier."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        return "?"


def machine_info(
    libs: Sequence[str], use_uvloop: bool, pinning: Pinning, settings: Settings
) -> str:
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    loop = f"uvloop {uvloop_version()}" if use_uvloop else "asyncio (standard loop)"
    lines = [
        f"date:      {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"python:    {platform.python_implementation()} {platform.python_version()}"
        f" on {platform.system()} {platform.release()} ({platform.machine()})",
        f"cpus:      {os.cpu_count()} (usable: {affinity if affinity is not None else '?'})",
        f"loop:      {loop}, on both ends of every library",
        f"pinning:   {pinning.describe()}",
        f"cpu time:  server process, {cpu_source()}",
        f"run:       {settings.duration:g} s per round-trip cell (at most "
        f"{settings.max_round_trips:,} round trips) after {settings.warmup} warm-up round "
        f"trips; pipelined {settings.pipeline_count:,} x {PIPELINE_SIZE} B (limit "
        f"{settings.pipeline_timeout:g} s); median of {settings.repeat}",
        "libraries: " + ", ".join(f"{lib} {version_of(lib)}" for lib in libs),
        f"load:      {load_average()} (1-minute load average before the run)",
    ]
    return "\n".join(lines)


def report(
    libs: Sequence[str],
    results: dict[str, dict[str, list[Sample]]],
    settings: Settings,
) -> str:
    cols = columns(settings)
    rates = table(
        "Messages per second (round trip: 1 in flight; pipelined: all in flight); "
        "ratio to the fastest",
        libs=libs,
        cols=cols,
        results=results,
        metric=lambda s: s.rate,
        higher_is_better=True,
        unit=lambda v: f"{v:,.0f}/s",
    )
    cpu = table(
        "Server CPU time per message (user + system); ratio to the cheapest",
        libs=libs,
        cols=cols,
        results=results,
        metric=lambda s: s.cpu_us,
        higher_is_better=False,
        unit=lambda v: f"{v:,.1f} us",
    )
    client = table(
        "Client CPU time per message (this process; user + system); ratio to the cheapest",
        libs=libs,
        cols=cols,
        results=results,
        metric=lambda s: s.client_cpu_us,
        higher_is_better=False,
        unit=lambda v: f"{v:,.1f} us",
    )
    parts = [rates, "", cpu, "", client]
    notes = []
    for lib in libs:
        for label, samples in results[lib].items():
            for i, sample in enumerate(samples):
                if sample.error is not None:
                    notes.append(f"  {lib}, {label}, repetition {i + 1}: {sample.error}")
                elif not sample.complete:
                    notes.append(
                        f"  {lib}, {label}, repetition {i + 1}: time limit hit after "
                        f"{sample.messages:,} of {settings.pipeline_count:,} messages"
                    )
    if notes:
        parts += ["", "* = time limit hit (rate over the messages that arrived). Problems:", *notes]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Echo benchmark: wskit against websockets, aiohttp and picows."
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of minutes")
    parser.add_argument(
        "--libs",
        default=",".join(LIBRARIES),
        help="comma-separated subset of " + ",".join(LIBRARIES),
    )
    parser.add_argument("--no-uvloop", action="store_true", help="standard asyncio loop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
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
    parser.add_argument("--repeat", type=int, help="repetitions of each cell (median reported)")
    parser.add_argument("--duration", type=float, help="seconds per round-trip cell")
    parser.add_argument("--pipeline", type=int, help="messages in the pipelined test")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE")
    # Server mode, used by the client side to start each library's server.
    parser.add_argument("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def use_checkout() -> None:
    """Import wskit from this checkout's ``src`` (the code under test), if it is there."""
    if SRC.is_dir() and str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    # Servers are started with the same interpreter; they find the checkout the same way.


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_checkout()
    if args.serve:
        return serve_main(args.serve, args.port, args.uvloop)

    settings = QUICK if args.quick else FULL
    if args.repeat is not None:
        settings = dataclasses.replace(settings, repeat=max(1, args.repeat))
    if args.duration is not None:
        settings = dataclasses.replace(settings, duration=args.duration)
    if args.pipeline is not None:
        settings = dataclasses.replace(settings, pipeline_count=max(1, args.pipeline))
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = [lib for lib in libs if lib not in LIBRARIES]
    if unknown or not libs:
        print(f"unknown libraries: {', '.join(unknown) or '(none given)'}", file=sys.stderr)
        return 2
    missing = [lib for lib in libs if not importable(lib)]
    for lib in missing:
        print(f"skipping {lib}: not installed", file=sys.stderr)
    libs = [lib for lib in libs if lib not in missing]
    if not libs:
        return 2
    use_uvloop = not args.no_uvloop and uvloop_version() is not None and sys.platform != "win32"
    pinning = Pinning.plan(not args.no_pin, args.split_round_trip, args.split_pipeline)

    print(machine_info(libs, use_uvloop, pinning, settings), flush=True)
    print(flush=True)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    servers: dict[str, ServerProcess] = {}
    try:
        for lib in libs:
            servers[lib] = ServerProcess(lib, use_uvloop)
        for server in servers.values():
            server.wait_listening()
        results = run(run_cells(libs, servers, settings, pinning, log), use_uvloop)
    finally:
        for server in servers.values():
            server.stop()
    print(report(libs, results, settings), flush=True)
    if args.json:
        dump = {
            lib: {label: [dataclasses.asdict(s) for s in samples] for label, samples in row.items()}
            for lib, row in results.items()
        }
        Path(args.json).write_text(json.dumps(dump, indent=2) + "\n")
    return 0


def importable(lib: str) -> bool:
    try:
        importlib.import_module(lib)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

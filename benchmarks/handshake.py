"""Handshake benchmark: server CPU per connection (open, handshake, close), side by side.

One load generator, the same for every server (issue #3: "one common load generator for every
server"), drives the echo servers of ``echo.py`` (wskit, websockets, aiohttp, picows; no
compression, keepalive pings off). It is a raw asyncio protocol written here, so that its cost
is small and equal for every server. Each of its client coroutines (8 by default) loops:

1. open a TCP connection and send a fixed upgrade request (the key of RFC 6455 section 1.3, no
   extensions, no subprotocols),
2. read the response head; check ``101`` and the ``Sec-WebSocket-Accept`` value,
3. send a masked Close frame (code 1000) and read the server's Close frame,
4. wait for the server to close TCP (RFC 6455 7.1.1: "the server SHOULD close the underlying
   TCP connection first"), then close its end.

Reported per library: handshakes per second and the server's CPU time per handshake, from
``/proc/<pid>/task/*/schedstat`` (user + system, all threads) over the timed section; also the
generator's CPU per handshake and how busy each side was (CPU seconds / wall seconds), which
says whether the rate was capped by the server or by the generator. The server is pinned to
one core and the generator to the other, so neither steals the other's time.

Set-up shared with ``echo.py`` through ``common.py``: server subprocesses, uvloop on both ends
where installed, repetitions with the libraries interleaved, medians, ratio tables.

Run: ``python benchmarks/handshake.py [--quick] [--libs wskit,picows] [--concurrency 8]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts ``benchmarks/`` first on sys.path; the repository root goes there
# instead (as in compression.py), and the shared code is imported as ``benchmarks.*``.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = _ROOT
elif _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any, cast  # noqa: E402

from benchmarks import common, echo  # noqa: E402

LIBRARIES = echo.LIBRARIES
HOST = common.HOST
#: Client coroutines opening connections at the same time: enough to keep one server core busy
#: while others wait on the network.
DEFAULT_CONCURRENCY = 8

# RFC 6455 1.3: the example key "dGhlIHNhbXBsZSBub25jZQ==" and its accept value
# "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". A fixed key keeps the request the same for every server.
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: The response head is bounded like wskit's own (Limits.max_head_size).
MAX_HEAD = 16 * 1024
# RFC 6455 5.3: "The masking key is a 32-bit value chosen at random by the client" -- a fixed
# key does here: the servers cannot tell, and it keeps the generator's work constant.
MASK = b"\x37\xfa\x21\x3d"
#: FIN + Close opcode, MASK bit + length 2, the key, then status 1000 (Normal Closure) masked.
_CLOSE_PAYLOAD = (1000).to_bytes(2, "big")
CLOSE_FRAME = (
    bytes([0x88, 0x80 | len(_CLOSE_PAYLOAD)])
    + MASK
    + bytes(b ^ MASK[i % 4] for i, b in enumerate(_CLOSE_PAYLOAD))
)
OP_CLOSE_FIN = 0x88

HEAD, CLOSING, CLOSED = 0, 1, 2


def upgrade_request(port: int) -> bytes:
    """The one request every connection sends (RFC 6455 4.1, the required headers only)."""
    return (
        b"GET / HTTP/1.1\r\n"
        b"Host: " + f"{HOST}:{port}".encode() + b"\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


class HandshakeError(common.BenchmarkError):
    """A server answered something other than 101 + Close, or closed at the wrong time."""


class Handshake(asyncio.Protocol):
    """One connection's life as a state machine: HEAD -> CLOSING -> CLOSED -> server's EOF.

    ``done`` gets None when the server closed TCP after the closing handshake, an exception
    otherwise.
    """

    def __init__(self, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.done: asyncio.Future[None] = loop.create_future()
        self.buffer = bytearray()
        self.state = HEAD
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(HandshakeError(why))
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.state == HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self.fail("response head too long")
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101 "):
                status_line = head.split(b"\r\n", 1)[0]
                self.fail(f"expected 101, got {status_line!r}")
                return
            if ACCEPT not in head:
                self.fail("wrong or missing Sec-WebSocket-Accept")
                return
            self.state = CLOSING
            assert self.transport is not None
            self.transport.write(CLOSE_FRAME)
        if self.state == CLOSING:
            if len(buffer) < 2:
                return
            if buffer[0] != OP_CLOSE_FIN or buffer[1] & 0x80 or buffer[1] > 125:
                self.fail(f"expected an unmasked Close frame, got {bytes(buffer[:2])!r}")
                return
            if len(buffer) < 2 + buffer[1]:
                return
            del buffer[: 2 + buffer[1]]
            self.state = CLOSED
        if self.state == CLOSED and buffer:
            self.fail(f"{len(buffer)} bytes after the Close frame")

    def eof_received(self) -> bool | None:
        if self.state != CLOSED:
            self.fail("the server closed TCP before the closing handshake ended")
        elif not self.done.done():
            self.done.set_result(None)
        return None  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.fail(f"connection lost: {exc}" if exc else "connection lost")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every loop has a count limit and a time limit."""

    duration: float  # seconds of timed handshakes per cell
    max_handshakes: int  # count limit per cell
    warmup: int  # untimed handshakes before each cell ...
    warmup_seconds: float  # ... or fewer, if they take longer than this. (With a warm-up of
    # 200 handshakes, the first cell of every server cost 15-20% more per handshake than the
    # next ones, whatever the library; hence a warm-up of one second by default.)
    repeat: int  # repetitions of every cell; the median is reported
    concurrency: int  # client coroutines


#: About 50 s for the four libraries.
FULL = Settings(
    duration=3.0,
    max_handshakes=1_000_000,
    warmup=1_000_000,
    warmup_seconds=1.0,
    repeat=3,
    concurrency=DEFAULT_CONCURRENCY,
)
#: A few seconds: enough to check that everything runs (used by the smoke test).
QUICK = Settings(
    duration=0.2,
    max_handshakes=10_000,
    warmup=10,
    warmup_seconds=0.1,
    repeat=1,
    concurrency=DEFAULT_CONCURRENCY,
)


async def handshakes(port: int, limit: int, seconds: float, concurrency: int) -> int:
    """Up to ``limit`` handshakes, ``concurrency`` at a time, none started after ``seconds``."""
    loop = asyncio.get_running_loop()
    request = upgrade_request(port)
    clock = time.perf_counter
    deadline = clock() + seconds
    started = done = 0
    factory = functools.partial(Handshake, request, loop)

    async def client() -> None:
        nonlocal started, done
        while started < limit and clock() < deadline:
            started += 1
            transport, protocol = await loop.create_connection(factory, HOST, port)
            try:
                await protocol.done
            finally:
                transport.close()
            done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done


def user_system_seconds(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of ``pid`` (all threads) from ``/proc/<pid>/stat``, or None.

    Clock ticks (10 ms), precise enough over a cell of seconds; they split the server's CPU
    into its own code (user) and the kernel's work in its system calls (system), a floor that
    no Python change removes.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@dataclasses.dataclass(frozen=True)
class HandshakeSample(common.Sample):
    """A cell's measurement plus the server's user / system split."""

    server_user: float | None = None
    server_system: float | None = None

    def per_handshake_us(self, seconds: float | None) -> float | None:
        if self.error is not None or seconds is None or not self.messages:
            return None
        return seconds / self.messages * 1e6


async def measure(
    server: common.ServerProcess, settings: Settings, pinning: common.Pinning
) -> common.Sample:
    """Warm up, then time handshakes against one server; every step bounded."""
    common.pin(server.pid, pinning.round_trip_server)
    common.pin(os.getpid(), pinning.round_trip_client)
    n = settings.concurrency
    await asyncio.wait_for(
        handshakes(server.port, settings.warmup, settings.warmup_seconds, n),
        settings.warmup_seconds + common.CELL_GRACE,
    )
    probe = common.Probe(server.pid)
    split0 = user_system_seconds(server.pid)
    probe.start()
    count = await asyncio.wait_for(
        handshakes(server.port, settings.max_handshakes, settings.duration, n),
        settings.duration + common.CELL_GRACE,
    )
    probe.stop()
    split1 = user_system_seconds(server.pid)
    user = system = None
    if split0 is not None and split1 is not None:
        user, system = split1[0] - split0[0], split1[1] - split0[1]
    return HandshakeSample(
        count,
        probe.elapsed,
        probe.server_cpu,
        probe.client_cpu,
        server_user=user,
        server_system=system,
    )


async def run_cells(
    libs: Sequence[str],
    servers: dict[str, common.ServerProcess],
    settings: Settings,
    pinning: common.Pinning,
    log: Callable[[str], None],
) -> dict[str, dict[str, list[common.Sample]]]:
    """Every library ``settings.repeat`` times, interleaved, the order rotated."""
    results: dict[str, dict[str, list[common.Sample]]] = {lib: {LABEL: []} for lib in libs}
    for rep in range(settings.repeat):
        order = list(libs[rep % len(libs) :]) + list(libs[: rep % len(libs)])
        for lib in order:
            try:
                sample = await measure(servers[lib], settings, pinning)
            except Exception as exc:
                sample = common.Sample(0, 0.0, None, None, False, f"{type(exc).__name__}: {exc}")
            results[lib][LABEL].append(sample)
            log(f"[{rep + 1}/{settings.repeat}] {lib:<10} {describe(sample)}")
    return results


LABEL = "open + handshake + close"


def describe(sample: common.Sample) -> str:
    if sample.error is not None:
        return f"ERROR {sample.error}"
    rate = f"{sample.rate:,.0f}/s" if sample.rate is not None else "-"
    cpu = f"{sample.cpu_us:,.1f}" if sample.cpu_us is not None else "n/a"
    client = f"{sample.client_cpu_us:,.1f}" if sample.client_cpu_us is not None else "n/a"
    return (
        f"{sample.messages:>8,} handshakes {rate:>10}  CPU us/handshake: server {cpu}, "
        f"generator {client}"
    )


def busy(sample: common.Sample, which: str) -> float | None:
    """CPU seconds over wall seconds of one side: near 1.0, that side was the bottleneck."""
    cpu = sample.server_cpu if which == "server" else sample.client_cpu
    if sample.error is not None or cpu is None or sample.seconds <= 0:
        return None
    return cpu / sample.seconds


def _split(sample: common.Sample, which: str) -> float | None:
    if not isinstance(sample, HandshakeSample):
        return None
    seconds = sample.server_user if which == "user" else sample.server_system
    return sample.per_handshake_us(seconds)


def report(libs: Sequence[str], results: dict[str, dict[str, list[common.Sample]]]) -> str:
    cols = [common.Column(LABEL, 0, False)]
    shared: dict[str, Any] = {"libs": libs, "cols": cols, "results": results}
    rates = common.table(
        "Handshakes per second; ratio to the fastest",
        **shared,
        metric=lambda s: s.rate,
        higher_is_better=True,
        unit=lambda v: f"{v:,.0f}/s",
    )
    cpu = common.table(
        "Server CPU time per handshake (user + system, all threads); ratio to the cheapest",
        **shared,
        metric=lambda s: s.cpu_us,
        higher_is_better=False,
        unit=lambda v: f"{v:,.1f} us",
    )
    client = common.table(
        "Load generator CPU time per handshake (the same generator for all); ratio to the cheapest",
        **shared,
        metric=lambda s: s.client_cpu_us,
        higher_is_better=False,
        unit=lambda v: f"{v:,.1f} us",
    )
    busy_lines = ["Busy (CPU seconds / wall seconds; 1.00 = a whole core), median:"]
    for lib in libs:
        samples = results[lib][LABEL]
        server = common.summarize(samples, lambda s: busy(s, "server")).value
        generator = common.summarize(samples, lambda s: busy(s, "client")).value
        busy_lines.append(
            f"  {lib:<10} server {server:.2f}, generator {generator:.2f}"
            if server is not None and generator is not None
            else f"  {lib:<10} n/a"
        )
    split_lines = [
        "Server CPU per handshake, user (the server's code) / system (the kernel's work in its "
        "system calls), /proc/<pid>/stat clock ticks, median:"
    ]
    for lib in libs:
        samples = results[lib][LABEL]
        user = common.summarize(samples, lambda s: _split(s, "user")).value
        system = common.summarize(samples, lambda s: _split(s, "system")).value
        split_lines.append(
            f"  {lib:<10} user {user:,.1f} us, system {system:,.1f} us"
            if user is not None and system is not None
            else f"  {lib:<10} n/a"
        )
    parts = [rates, "", cpu, "", client, "", *busy_lines, "", *split_lines]
    if "wskit" in libs and "picows" in libs:
        ours = common.summarize(results["wskit"][LABEL], lambda s: s.cpu_us).value
        theirs = common.summarize(results["picows"][LABEL], lambda s: s.cpu_us).value
        now = f"{ours / theirs:.2f}x" if ours and theirs else "n/a"
        parts += [
            "",
            f"Issue #3 target: wskit's server CPU per handshake <= 0.80x picows'. Now: {now}",
        ]
    notes = [
        f"  {lib}, repetition {i + 1}: {sample.error}"
        for lib in libs
        for i, sample in enumerate(results[lib][LABEL])
        if sample.error is not None
    ]
    if notes:
        parts += ["", "Problems:", *notes]
    return "\n".join(parts)


def machine_info(
    libs: Sequence[str], use_uvloop: bool, pinning: common.Pinning, settings: Settings
) -> str:
    if pinning.round_trip_server is None:
        pins = "not pinned"
    else:
        pins = (
            f"server on CPU {sorted(pinning.round_trip_server)}, load generator on CPU "
            f"{sorted(pinning.round_trip_client or ())}"
        )
    lines = [
        *common.machine_lines(),
        f"loop:      {common.loop_name(use_uvloop)}, in every server and in the load generator",
        f"pinning:   {pins}",
        f"cpu time:  server process, {common.cpu_source()}",
        f"run:       {settings.duration:g} s per cell (at most {settings.max_handshakes:,} "
        f"handshakes) after {settings.warmup_seconds:g} s of warm-up handshakes (at most "
        f"{settings.warmup:,}); {settings.concurrency} "
        f"concurrent clients; median of {settings.repeat}",
        "libraries: " + ", ".join(f"{lib} {common.version_of(lib)}" for lib in libs),
        f"wskit core: {common.wskit_implementation()}",
        f"load:      {common.load_average()} (1-minute load average before the run)",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Handshake benchmark: server CPU per connection, one common load generator."
    )
    common.add_common_arguments(parser, LIBRARIES, quick="a few seconds instead of a minute")
    parser.add_argument("--concurrency", type=int, help="concurrent client coroutines")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_checkout()
    settings = common.apply_arguments(QUICK if args.quick else FULL, args)
    if args.concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=max(1, args.concurrency))
    libs = common.choose_libraries(args.libs, LIBRARIES)
    if libs is None:
        return 2
    use_uvloop = common.want_uvloop(args)
    # The server on one core, the generator on the other.
    pinning = common.Pinning.plan(not args.no_pin, split_round_trip=True)

    print(machine_info(libs, use_uvloop, pinning, settings), flush=True)
    print(flush=True)

    servers: dict[str, common.ServerProcess] = {}
    try:
        for lib in libs:
            servers[lib] = common.ServerProcess(lib, use_uvloop, echo.SCRIPT)  # echo.py's servers
        for server in servers.values():
            server.wait_listening()
        results = common.run(run_cells(libs, servers, settings, pinning, common.log), use_uvloop)
    finally:
        for server in servers.values():
            server.stop()
    print(report(libs, results), flush=True)
    if args.json:
        common.write_json(args.json, results)
    return 1 if common.failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())

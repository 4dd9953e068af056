"""permessage-deflate benchmark: wskit side by side with websockets and aiohttp, in one run.

Each library is measured with its own client against its own server, both with permessage-deflate
(RFC 7692) negotiated, on round trips of JSON-like text messages (one message in flight: send,
wait for the echo, repeat) of about 1 KiB and 64 KiB. picows has no compression and is left out.

Reported per payload size:

* round trips per second;
* the server's CPU time per echoed message (inflate what arrives, deflate the echo, framing),
  from ``/proc/<pid>/task/*/schedstat`` summed over the server's threads (aiohttp compresses
  messages above 16 KiB in a thread of its executor, which is counted), and the client's;
* the compression actually achieved on the wire, each direction: TCP payload bytes (WebSocket
  frame headers and masks included) over message payload bytes. The bytes are read from the
  client socket's kernel counters (``TCP_INFO``: ``tcpi_bytes_acked`` for what the client sent,
  ``tcpi_bytes_received`` for what it received) just before and after the timed section, so
  they are the same for every library and cost nothing while it runs. With one message in
  flight the counters are exact at both ends: when the last echo arrives the server has
  acknowledged the last request. For wskit, its own counters (``statistics()``) are checked
  against them.

Each library's defaults differ (compression level, zlib memLevel, window bits); the settings
are not aligned on purpose: the target in issue #3 compares each library as shipped, at a
comparable compression ratio, which the wire table shows. The header of the report lists the
negotiated ``Sec-WebSocket-Extensions`` response and each server's compressor settings.

Before any timing, every library's client connects once, checks that permessage-deflate was
negotiated and that one message comes back identical; the run fails loudly otherwise. A cell in
which the server's echoes were not smaller than the payload is reported as an error.

The set-up (server subprocesses, pinning both ends to one core, uvloop where installed,
repetitions interleaved, medians, ratio tables) is that of ``echo.py``'s first version, in
``common.py``; the servers are ``echo.py``'s with ``deflate=True``.

Run: ``python benchmarks/compression.py [--quick] [--libs wskit,websockets,aiohttp]``.
"""

# Libraries are imported inside functions on purpose: a server subprocess loads only its own
# library, and a library that is not installed is skipped instead of failing the run.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python benchmarks/compression.py``, Python puts ``benchmarks/`` first on sys.path,
# where this file would shadow the standard library's ``compression`` package (Python 3.14);
# the repository root goes there instead, and the shared code is imported as ``benchmarks.*``.
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
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import common, echo  # noqa: E402

LIBRARIES = ("wskit", "websockets", "aiohttp")
#: Target payload sizes; the generated JSON text is exactly this many bytes (ASCII).
SIZES = (1024, 64 * 1024)
#: The smallest message that holds the JSON envelope and one record.
MIN_SIZE = 512
#: Seed of the payload generator: every run, and every library, sends the same text.
SEED = 3
HOST = common.HOST
MAX_MESSAGE = common.MAX_MESSAGE
#: Distinct messages of each size, sent in turn: at least this many bytes of them, so that no
#: message repeats within a DEFLATE window (32 KiB at most) and context takeover gains only what
#: it would between different messages of one API (the same keys, some of the same values).
POOL_BYTES = 1024 * 1024
POOL_MIN = 16
#: A cell whose server -> client bytes are above this fraction of the payload did not compress.
NOT_COMPRESSED = 0.95

#: ``struct tcp_info`` (linux/tcp.h): ``tcpi_bytes_acked`` and ``tcpi_bytes_received`` are the
#: two u64 at offset 120 (Linux 4.1 and later).
TCP_INFO_BYTES_OFFSET = 120
TCP_INFO_LENGTH = 256


class BenchmarkError(common.BenchmarkError):
    """Compression was not negotiated, an echo did not match, or nothing was compressed."""


# ---------------------------------------------------------------------------------------------
# payloads: JSON-like text, as an API would send


FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia")
LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton")
DOMAINS = ("example.com", "example.org", "mail.example.net")
STATUSES = ("active", "pending", "suspended", "closed")
TAGS = ("admin", "beta", "billing", "eu", "us", "mobile", "trial", "vip", "support", "api")
CURRENCIES = ("EUR", "USD", "GBP", "JPY")
WORDS = (
    "order", "shipped", "payment", "received", "customer", "account", "updated", "invoice",
    "pending", "review", "the", "a", "was", "for", "and", "new", "item", "refund", "address",
)  # fmt: skip


def json_payload(size: int, seed: int = SEED) -> str:
    """Deterministic JSON text of exactly ``size`` bytes: a page of user records.

    Like a real API response: the same keys in every record, ids, prices, timestamps, short
    strings from small vocabularies, some random hex (request ids, which do not compress), and a
    free-text ``note`` whose length makes the total exact.
    """
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    envelope: dict[str, Any] = {"request_id": f"{rng.getrandbits(64):016x}", "page": 1}

    def record() -> dict[str, Any]:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return {
            "id": rng.randrange(10**6, 10**7),
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{rng.randrange(100)}@{rng.choice(DOMAINS)}",
            "status": rng.choice(STATUSES),
            "active": rng.random() < 0.8,
            "score": round(rng.uniform(0, 100), 2),
            "balance": {
                "amount": rng.randrange(10**7) / 100,
                "currency": rng.choice(CURRENCIES),
            },
            "tags": rng.sample(TAGS, rng.randrange(4)),
            "created_at": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            "session": f"{rng.getrandbits(48):012x}",
        }

    def dump(note: str) -> str:
        body = dict(envelope, total=len(records), data=records, note=note)
        return json.dumps(body, separators=(",", ":"))

    while True:
        records.append(record())
        if len(dump("")) > size:
            records.pop()
            break
    room = size - len(dump(""))
    words: list[str] = []
    while len(" ".join(words)) < room:
        words.append(rng.choice(WORDS))
    text = dump(" ".join(words)[:room])
    assert len(text) == size, (len(text), size)
    return text


def payload_pool(size: int) -> list[str]:
    """The distinct messages of one size: :data:`POOL_BYTES` of them, each from its own seed."""
    count = max(POOL_MIN, -(-POOL_BYTES // size))
    return [json_payload(size, seed=SEED * 1_000_003 + i) for i in range(count)]


async def exchange(client: TextCalls, payloads: Sequence[str], limit: int, seconds: float) -> int:
    """:func:`echo.exchange` with the messages of ``payloads`` sent in turn (equal lengths)."""
    send, recv = client.send, client.recv
    count = len(payloads)
    size = len(payloads[0])
    clock = time.perf_counter
    deadline = clock() + seconds
    done = 0
    while done < limit:
        await send(payloads[done % count])
        reply = await recv()
        done += 1
        if len(reply) != size:
            raise BenchmarkError(f"echo of {size} characters came back with {len(reply)}")
        if clock() >= deadline:
            break
    return done


# ---------------------------------------------------------------------------------------------
# servers: echo.py's echo of every message, with permessage-deflate on and the library's defaults


SERVERS: dict[str, common.ServerStarter] = {
    "wskit": functools.partial(echo.start_wskit_server, deflate=True),
    "websockets": functools.partial(echo.start_websockets_server, deflate=True),
    "aiohttp": functools.partial(echo.start_aiohttp_server, deflate=True),
}


def compressor_settings(lib: str) -> str:
    """What each server compresses with, read from the library where it exposes it."""
    if lib == "wskit":
        from wskit.core.extensions import permessage_deflate as pmd

        return (
            f"level {pmd.DEFAULT_COMPRESS_LEVEL}, memLevel {pmd.DEFAULT_MEM_LEVEL}, server window "
            f"{pmd.DEFAULT_SERVER_MAX_WINDOW_BITS} bits, messages under "
            f"{pmd.DEFAULT_COMPRESS_THRESHOLD} B sent uncompressed"
        )
    if lib == "websockets":
        from websockets.extensions.permessage_deflate import enable_server_permessage_deflate

        factory: Any = enable_server_permessage_deflate(None)[0]
        settings = dict(factory.compress_settings or {})
        return (
            f"level {settings.get('level', 'zlib default (6)')}, memLevel "
            f"{settings.get('memLevel', 'zlib default (8)')}, server window "
            f"{factory.server_max_window_bits} bits"
        )
    if lib == "aiohttp":
        # aiohttp/_websocket/writer.py: ZLibCompressor(level=Z_BEST_SPEED, wbits=-compress);
        # messages above WEBSOCKET_MAX_SYNC_CHUNK_SIZE are compressed in the loop's executor.
        from aiohttp._websocket import writer

        limit = getattr(writer, "WEBSOCKET_MAX_SYNC_CHUNK_SIZE", None)
        thread = f", messages over {limit:,} B compressed in an executor thread" if limit else ""
        return f"level 1 (Z_BEST_SPEED), memLevel zlib default (8), window 15 bits{thread}"
    return "?"


# ---------------------------------------------------------------------------------------------
# clients


@dataclasses.dataclass
class TextCalls:
    """echo.AwaitableClient for text: the three bound methods the loops call."""

    send: Callable[[str], Awaitable[Any]]
    recv: Callable[[], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]


@dataclasses.dataclass
class Client:
    """An open client connection: the three calls the loops make, its socket (for the kernel's
    byte counters), the negotiated extensions and, for wskit, its own byte counters."""

    calls: TextCalls
    sock: Any
    extensions: str
    own_counters: Callable[[], tuple[int, int]] | None = None


async def connect_wskit(url: str) -> Client:
    import wskit.asyncio

    ws = await wskit.asyncio.connect(
        url, compression="deflate", ping_interval=None, max_size=MAX_MESSAGE
    )
    response = ws.response
    extensions = response.headers.get("Sec-WebSocket-Extensions", "") if response else ""

    def own_counters() -> tuple[int, int]:
        stats = ws.statistics()
        return stats.bytes_sent, stats.bytes_received

    return Client(
        TextCalls(ws.send, ws.recv, ws.close),
        ws.transport.get_extra_info("socket") if ws.transport else None,
        extensions or "",
        own_counters,
    )


async def connect_websockets(url: str) -> Client:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression="deflate", ping_interval=None, max_size=MAX_MESSAGE)
    response = ws.response
    extensions = response.headers.get("Sec-WebSocket-Extensions", "") if response else ""
    return Client(
        TextCalls(ws.send, ws.recv, ws.close),
        ws.transport.get_extra_info("socket"),
        extensions or "",
    )


async def connect_aiohttp(url: str) -> Client:
    ws, close = await common.open_aiohttp(url, 15, MAX_MESSAGE)
    # The response headers are not public; ``compress`` (the negotiated window bits) is.
    response = getattr(ws, "_response", None)
    extensions = response.headers.get("Sec-WebSocket-Extensions", "") if response else ""
    if ws.compress and not extensions:
        extensions = f"permessage-deflate (window bits {ws.compress})"
    elif not ws.compress:
        extensions = ""
    return Client(
        TextCalls(ws.send_str, ws.receive_str, close),
        ws.get_extra_info("socket"),
        extensions,
    )


CONNECT: dict[str, Callable[[str], Awaitable[Client]]] = {
    "wskit": connect_wskit,
    "websockets": connect_websockets,
    "aiohttp": connect_aiohttp,
}


def require_deflate(lib: str, client: Client) -> None:
    if "permessage-deflate" not in client.extensions:
        raise BenchmarkError(
            f"{lib} did not negotiate permessage-deflate (extensions: {client.extensions!r})"
        )


def wire_counters(sock: Any) -> tuple[int, int] | None:
    """(bytes sent and acknowledged, bytes received) of a TCP socket, from the kernel, or None
    where ``TCP_INFO`` is missing (not Linux) or too old to have them."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, TCP_INFO_LENGTH)
    except OSError:
        return None
    if len(info) < TCP_INFO_BYTES_OFFSET + 16:
        return None
    acked, received = struct.unpack_from("=QQ", info, TCP_INFO_BYTES_OFFSET)
    return int(acked), int(received)


def wire_source() -> str:
    if getattr(socket, "TCP_INFO", None) is None:
        return "unavailable (no TCP_INFO)"
    return "client socket's TCP_INFO: tcpi_bytes_acked (sent), tcpi_bytes_received (received)"


# ---------------------------------------------------------------------------------------------
# cells


@dataclasses.dataclass(frozen=True)
class WireSample(common.Sample):
    """A cell's measurement, plus the bytes that crossed the wire during its timed section."""

    payload_bytes: int = 0  # message bytes sent each way during the timed section
    wire_up: int | None = None  # TCP payload bytes client -> server
    wire_down: int | None = None  # TCP payload bytes server -> client
    own_counters_agree: bool | None = None  # wskit only: statistics() matched the kernel

    @property
    def up_ratio(self) -> float | None:
        if self.error is not None or self.wire_up is None or not self.payload_bytes:
            return None
        return self.wire_up / self.payload_bytes

    @property
    def down_ratio(self) -> float | None:
        if self.error is not None or self.wire_down is None or not self.payload_bytes:
            return None
        return self.wire_down / self.payload_bytes


async def measure(
    lib: str,
    server: common.ServerProcess,
    payloads: Sequence[str],
    settings: common.Settings,
    pinning: common.Pinning,
) -> WireSample:
    """Open a connection, check what it negotiated, time round trips on it, close it."""
    common.pin(server.pid, pinning.round_trip_server)
    common.pin(os.getpid(), pinning.round_trip_client)
    bound = settings.duration + settings.warmup_seconds + common.CELL_GRACE
    probe = common.Probe(server.pid)
    client = await asyncio.wait_for(CONNECT[lib](server.url), common.OPEN_TIMEOUT)
    try:
        require_deflate(lib, client)

        async def timed() -> tuple[int, Any, Any, Any, Any]:
            calls = client.calls
            await exchange(calls, payloads, settings.warmup, settings.warmup_seconds)
            wire0 = wire_counters(client.sock)
            own0 = client.own_counters() if client.own_counters else None
            probe.start()
            done = await exchange(calls, payloads, settings.max_round_trips, settings.duration)
            probe.stop()
            wire1 = wire_counters(client.sock)
            own1 = client.own_counters() if client.own_counters else None
            return done, wire0, wire1, own0, own1

        messages, wire0, wire1, own0, own1 = await asyncio.wait_for(timed(), bound)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.calls.close(), common.CLOSE_TIMEOUT)
    up = down = None
    if wire0 is not None and wire1 is not None:
        up, down = wire1[0] - wire0[0], wire1[1] - wire0[1]
    agree = None
    if own0 is not None and own1 is not None and up is not None and down is not None:
        agree = (own1[0] - own0[0], own1[1] - own0[1]) == (up, down)
    payload_bytes = messages * len(payloads[0].encode())
    error = None
    if down is not None and payload_bytes and down > NOT_COMPRESSED * payload_bytes:
        error = f"{lib}'s server did not compress: {down:,} bytes for {payload_bytes:,}"
    return WireSample(
        messages,
        probe.elapsed,
        probe.server_cpu,
        probe.client_cpu,
        True,
        error,
        payload_bytes=payload_bytes,
        wire_up=up,
        wire_down=down,
        own_counters_agree=agree,
    )


async def preflight(
    libs: Sequence[str], servers: dict[str, common.ServerProcess]
) -> dict[str, str]:
    """Connect once to each server: compression negotiated, one message echoed identically.

    Returns the negotiated ``Sec-WebSocket-Extensions`` per library; raises otherwise.
    """
    negotiated: dict[str, str] = {}
    probe_text = json_payload(2048, seed=SEED + 1)
    for lib in libs:
        client = await asyncio.wait_for(CONNECT[lib](servers[lib].url), common.OPEN_TIMEOUT)
        try:
            require_deflate(lib, client)
            await client.calls.send(probe_text)
            reply = await asyncio.wait_for(client.calls.recv(), common.OPEN_TIMEOUT)
            if reply != probe_text:
                raise BenchmarkError(f"{lib}: the echo differs from the message sent")
            negotiated[lib] = client.extensions
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.calls.close(), common.CLOSE_TIMEOUT)
    return negotiated


async def run_cells(
    libs: Sequence[str],
    servers: dict[str, common.ServerProcess],
    payloads: dict[str, list[str]],
    settings: common.Settings,
    pinning: common.Pinning,
    *,
    log: Callable[[str], None],
) -> dict[str, dict[str, list[common.Sample]]]:
    """Every cell ``settings.repeat`` times; libraries interleaved, their order rotated."""
    results: dict[str, dict[str, list[common.Sample]]] = {
        lib: {label: [] for label in payloads} for lib in libs
    }
    for rep in range(settings.repeat):
        order = list(libs[rep % len(libs) :]) + list(libs[: rep % len(libs)])
        for label, payload in payloads.items():
            for lib in order:
                sample: WireSample
                try:
                    sample = await measure(lib, servers[lib], payload, settings, pinning)
                except Exception as exc:
                    sample = WireSample(0, 0.0, None, None, False, f"{type(exc).__name__}: {exc}")
                results[lib][label].append(sample)
                log(f"[{rep + 1}/{settings.repeat}] {lib:<10} {label:<7} {describe(sample)}")
    return results


def describe(sample: WireSample) -> str:
    if sample.error is not None:
        return f"ERROR {sample.error}"
    rate = f"{sample.rate:,.0f}/s" if sample.rate is not None else "-"
    cpu = f"{sample.cpu_us:,.1f}" if sample.cpu_us is not None else "n/a"
    up = f"{sample.up_ratio:.3f}" if sample.up_ratio is not None else "n/a"
    down = f"{sample.down_ratio:.3f}" if sample.down_ratio is not None else "n/a"
    return (
        f"{sample.messages:>8,} msgs {rate:>10}  server CPU {cpu} us/msg  wire/payload: "
        f"up {up}, down {down}"
    )


# ---------------------------------------------------------------------------------------------
# report


def _wire(metric: str) -> Callable[[common.Sample], float | None]:
    def value(sample: common.Sample) -> float | None:
        return getattr(sample, metric) if isinstance(sample, WireSample) else None

    return value


def report(
    libs: Sequence[str],
    results: dict[str, dict[str, list[common.Sample]]],
    payloads: dict[str, list[str]],
) -> str:
    cols = [common.Column(label, len(texts[0]), False) for label, texts in payloads.items()]
    shared: dict[str, Any] = {"libs": libs, "cols": cols, "results": results}
    parts = [
        common.table(
            "Round trips per second (permessage-deflate, JSON text); ratio to the fastest",
            **shared,
            metric=lambda s: s.rate,
            higher_is_better=True,
            unit=lambda v: f"{v:,.0f}/s",
        ),
        "",
        common.table(
            "Server CPU time per message (inflate + deflate + framing; user + system, all "
            "threads); ratio to the cheapest",
            **shared,
            metric=lambda s: s.cpu_us,
            higher_is_better=False,
            unit=lambda v: f"{v:,.1f} us",
        ),
        "",
        common.table(
            "Client CPU time per message (this process); ratio to the cheapest",
            **shared,
            metric=lambda s: s.client_cpu_us,
            higher_is_better=False,
            unit=lambda v: f"{v:,.1f} us",
        ),
        "",
        common.table(
            "Server -> client: bytes on the wire / payload bytes (compressed by the server); "
            "ratio to the smallest",
            **shared,
            metric=_wire("down_ratio"),
            higher_is_better=False,
            unit=lambda v: f"{v:.3f}",
        ),
        "",
        common.table(
            "Client -> server: bytes on the wire / payload bytes (compressed by the client, "
            "masked); ratio to the smallest",
            **shared,
            metric=_wire("up_ratio"),
            higher_is_better=False,
            unit=lambda v: f"{v:.3f}",
        ),
    ]
    if "wskit" in libs and "aiohttp" in libs:
        ratios = []
        for label in payloads:
            ours = common.summarize(results["wskit"][label], lambda s: s.cpu_us).value
            theirs = common.summarize(results["aiohttp"][label], lambda s: s.cpu_us).value
            text = f"{ours / theirs:.2f}x" if ours and theirs else "n/a"
            ratios.append(f"{label} {text}")
        parts += [
            "",
            "Issue #3 target: wskit's server CPU per message <= 0.80x aiohttp's. Now: "
            + ", ".join(ratios),
        ]
    checks = [
        sample.own_counters_agree
        for row in results.values()
        for samples in row.values()
        for sample in samples
        if isinstance(sample, WireSample) and sample.own_counters_agree is not None
    ]
    if checks:
        verdict = "agree" if all(checks) else "DISAGREE"
        parts.append(
            f"Check: wskit's statistics() byte counters {verdict} with TCP_INFO "
            f"in {sum(checks)} of {len(checks)} cells."
        )
    notes = [
        f"  {lib}, {label}, repetition {i + 1}: {sample.error}"
        for lib in libs
        for label, samples in results[lib].items()
        for i, sample in enumerate(samples)
        if sample.error is not None
    ]
    if notes:
        parts += ["", "Problems:", *notes]
    return "\n".join(parts)


def machine_info(
    libs: Sequence[str],
    use_uvloop: bool,
    pinning: common.Pinning,
    settings: common.Settings,
    *,
    payloads: dict[str, list[str]],
    negotiated: dict[str, str],
) -> str:
    server_cpus = sorted(pinning.round_trip_server) if pinning.round_trip_server else None
    client_cpus = sorted(pinning.round_trip_client) if pinning.round_trip_client else None
    pins = (
        f"server on CPU {server_cpus}, client on CPU {client_cpus}"
        if server_cpus is not None
        else "not pinned"
    )
    sizes = ", ".join(
        f"{label}: {len(texts):,} distinct messages of {len(texts[0]):,} B, sent in turn"
        for label, texts in payloads.items()
    )
    lines = [
        *common.machine_lines(),
        f"loop:      {common.loop_name(use_uvloop)}, on both ends of every library",
        f"pinning:   {pins}",
        f"cpu time:  server process, {common.cpu_source()}",
        f"wire:      {wire_source()}",
        f"run:       {settings.duration:g} s per cell (at most {settings.max_round_trips:,} "
        f"round trips) after {settings.warmup} warm-up round trips; median of {settings.repeat}",
        f"payloads:  JSON text (seed {SEED}), {sizes}",
        "libraries: " + ", ".join(f"{lib} {common.version_of(lib)}" for lib in libs),
        f"wskit core: {common.wskit_implementation()}",
        f"load:      {common.load_average()} (1-minute load average before the run)",
        "negotiated (Sec-WebSocket-Extensions of the response; server compressor settings):",
        *(f"  {lib:<10} {negotiated[lib]}; {compressor_settings(lib)}" for lib in libs),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="permessage-deflate benchmark: wskit against websockets and aiohttp."
    )
    common.add_common_arguments(parser, LIBRARIES, quick="a few seconds instead of a minute")
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in SIZES),
        help="comma-separated message sizes in bytes (default: %(default)s)",
    )
    parser.add_argument("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_checkout()
    if args.serve:
        return common.serve_main(args.serve, args.port, args.uvloop, SERVERS)

    settings = common.apply_arguments(common.QUICK if args.quick else common.FULL, args)
    libs = common.choose_libraries(args.libs, LIBRARIES)
    if libs is None:
        return 2
    use_uvloop = common.want_uvloop(args)
    pinning = common.Pinning.plan(not args.no_pin)
    try:
        sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < MIN_SIZE:
        print(f"--sizes: integers of at least {MIN_SIZE} bytes, please", file=sys.stderr)
        return 2
    # common.format_size rounds down to whole KiB and MiB; other sizes keep their bytes.
    payloads = {
        common.format_size(size) if size % 1024 == 0 else f"{size:,} B": payload_pool(size)
        for size in sizes
    }

    servers: dict[str, common.ServerProcess] = {}
    try:
        for lib in libs:
            servers[lib] = common.ServerProcess(lib, use_uvloop, script=Path(__file__).resolve())
        for server in servers.values():
            server.wait_listening()
        try:
            negotiated = common.run(preflight(libs, servers), use_uvloop)
        except Exception as exc:
            print(f"preflight failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        info = machine_info(
            libs, use_uvloop, pinning, settings, payloads=payloads, negotiated=negotiated
        )
        print(info, flush=True)
        print(flush=True)
        results = common.run(
            run_cells(libs, servers, payloads, settings, pinning, log=common.log), use_uvloop
        )
    finally:
        for server in servers.values():
            server.stop()
    print(report(libs, results, payloads), flush=True)
    if args.json:
        common.write_json(args.json, results)
    return 1 if common.failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())

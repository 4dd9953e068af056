"""What every benchmark here shares: server subprocesses, CPU time, pinning, event loops, tables.

``echo.py``, ``compression.py`` and ``handshake.py`` import this module; each keeps only what
is its own (its servers, its clients, its cells and its report). Nothing here measures a
WebSocket library by itself.

* **CPU time** of a process is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds on the
  CPU, user + system, summed over its threads), or ``/proc/<pid>/stat`` clock ticks where
  schedstat is missing; a process's own with ``time.process_time()``.
* **Servers** run in subprocesses of their own (``SCRIPT --serve NAME --port N [--uvloop]``),
  exit when their parent is gone, and are pinned from the outside with ``os.sched_setaffinity``.
* **Tables** are text, one row per library, one column per cell, the median of the repetitions.
"""

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
    """Marks the timed section of a cell: wall clock, CPU time of the server process (by pid)
    and of this process (the client)."""

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


#: Starts a server on a port; returns the coroutine function that stops it.
ServerStarter = Callable[[int], Awaitable[Callable[[], Awaitable[None]]]]


async def serve_until_orphaned(lib: str, port: int, servers: Mapping[str, ServerStarter]) -> None:
    """Serve until the parent process is gone or :data:`SERVER_LIFETIME` has passed.

    ``servers`` maps a name (a library, or a row of echo.py) to the function starting its
    server: each benchmark passes its own.
    """
    stop = await servers[lib](port)
    parent = os.getppid()
    end = time.monotonic() + SERVER_LIFETIME
    try:
        while os.getppid() == parent and time.monotonic() < end:
            await asyncio.sleep(0.5)
    finally:
        await asyncio.wait_for(stop(), CLOSE_TIMEOUT)


def serve_main(lib: str, port: int, use_uvloop: bool, servers: Mapping[str, ServerStarter]) -> int:
    run(serve_until_orphaned(lib, port, servers), use_uvloop)
    return 0


class ServerProcess:
    """One server in a subprocess of its own.

    ``script`` is the benchmark whose ``--serve NAME --port N [--uvloop]`` mode runs the
    server; ``env`` replaces the subprocess's environment (echo.py's pure-Python rows set
    ``WSKIT_NO_EXTENSIONS=1`` there).
    """

    def __init__(
        self, lib: str, use_uvloop: bool, script: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.lib = lib
        self.port = free_port()
        command = [sys.executable, str(script), "--serve", lib, "--port", str(self.port)]
        if use_uvloop:
            command.append("--uvloop")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env
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


async def open_aiohttp(
    url: str, compress: int, max_size: int
) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """An aiohttp client WebSocket in a session of its own, and the coroutine function that
    closes both (the session too when the connection fails)."""
    import aiohttp  # imported here: only the runs that measure aiohttp need it

    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, compress=compress, heartbeat=None, max_msg_size=max_size)
    except BaseException:
        await session.close()
        raise

    async def close() -> None:
        try:
            await ws.close()
        finally:
            await session.close()

    return ws, close


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the tables: a round-trip payload size, or the pipelined test."""

    label: str
    size: int
    pipelined: bool


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
    """``compiled`` or ``python``: which core wskit runs in this process (``WSKIT_NO_EXTENSIONS=1``
    in the environment forces ``python``)."""
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


def use_checkout() -> None:
    """Import wskit from this checkout's ``src`` (the code under test), if it is there."""
    if SRC.is_dir() and str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    # Servers are started with the same interpreter; they find the checkout the same way.


def importable(lib: str) -> bool:
    try:
        importlib.import_module(lib)
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# the command line and the report header, alike in every benchmark


def add_common_arguments(
    parser: argparse.ArgumentParser,
    libraries: Sequence[str],
    quick: str,
    libs_help: str | None = None,
) -> None:
    """The options every benchmark takes: ``--quick`` (``quick`` says what it does),
    ``--libs``, ``--no-uvloop``, ``--no-pin``, ``--repeat``, ``--duration``, ``--json``."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument(
        "--libs",
        default=",".join(libraries),
        help=libs_help or "comma-separated subset of " + ",".join(libraries),
    )
    parser.add_argument("--no-uvloop", action="store_true", help="standard asyncio loop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--repeat", type=int, help="repetitions of each cell (median reported)")
    parser.add_argument("--duration", type=float, help="seconds per cell")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE")


def apply_arguments(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with ``--repeat`` and ``--duration`` applied."""
    if args.repeat is not None:
        settings = dataclasses.replace(settings, repeat=max(1, args.repeat))
    if args.duration is not None:
        settings = dataclasses.replace(settings, duration=args.duration)
    return settings


def choose_libraries(text: str, known: Sequence[str]) -> list[str] | None:
    """The names of ``--libs`` that are installed, in order; None (after saying why on
    stderr) if one is unknown or none is left. A missing library is skipped with a note."""
    libs = [lib.strip() for lib in text.split(",") if lib.strip()]
    unknown = [lib for lib in libs if lib not in known]
    if unknown or not libs:
        print(f"unknown libraries: {', '.join(unknown) or '(none given)'}", file=sys.stderr)
        return None
    missing = [lib for lib in libs if not importable(lib)]
    for lib in missing:
        print(f"skipping {lib}: not installed", file=sys.stderr)
    return [lib for lib in libs if lib not in missing] or None


def want_uvloop(args: argparse.Namespace) -> bool:
    """uvloop unless ``--no-uvloop``, where it is installed and runs (not on Windows)."""
    return not args.no_uvloop and uvloop_version() is not None and sys.platform != "win32"


def loop_name(use_uvloop: bool) -> str:
    return f"uvloop {uvloop_version()}" if use_uvloop else "asyncio (standard loop)"


def machine_lines() -> list[str]:
    """The first lines of every report: when, which Python on which machine, how many CPUs."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return [
        f"date:      {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"python:    {platform.python_implementation()} {platform.python_version()}"
        f" on {platform.system()} {platform.release()} ({platform.machine()})",
        f"cpus:      {os.cpu_count()} (usable: {affinity if affinity is not None else '?'})",
    ]


def log(text: str) -> None:
    """Progress, one line per cell, on stderr (the report goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def write_json(path: str, data: Any) -> None:
    """``data`` (nested dicts and lists of samples, usually ``{name: {column: [sample, ...]}}``)
    to ``path`` as JSON, every sample as a dict of its fields."""
    Path(path).write_text(json.dumps(data, indent=2, default=dataclasses.asdict) + "\n")


def failed(results: Mapping[str, Mapping[str, Sequence[Sample]]]) -> bool:
    """Whether any sample is an error."""
    return any(s.error is not None for row in results.values() for v in row.values() for s in v)

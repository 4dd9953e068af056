#!/usr/bin/env python3
"""Autobahn|Testsuite client driver: wskit's client echoes every case of a wstest fuzzingserver.

wstest in fuzzingserver mode tests a WebSocket *client*. The driver follows its protocol:

1. open ``{url}/getCaseCount``: the server sends one text message, the number of cases N;
2. for each case 1..N open ``{url}/runCase?case={i}&agent={agent}`` and send back every message
   received until the server closes the connection;
3. open ``{url}/updateReports?agent={agent}``: wstest writes the report, then closes.

``fuzzingserver.sh`` (in the shared conformance directory) starts wstest and runs this script with
``AUTOBAHN_URL`` and ``AUTOBAHN_AGENT`` set::

    $CONFORMANCE/fuzzingserver.sh -p 0 -a wskit-asyncio-client -- \\
        python compliance/autobahn_client.py --front-end asyncio

Many cases send invalid data on purpose, and the client must then fail the connection, so an error
inside a case is expected: it is counted (and printed with ``--verbose``), and the run goes on;
wstest judges the case. What makes the exit status non-zero: no case count, no report, or a case
that hangs (:data:`CASE_TIMEOUT`), which is a client bug wstest cannot see.

Each front end has one runner in :data:`RUNNERS`; a runner imports its front end itself, so the
script runs with only that front end importable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from wskit.exceptions import WebSocketError

# Case 9.1.6 sends a 16 MiB message; the default message limit would fail it with 1009.
MAX_SIZE = 16 * 2**20
# Cases 9.3.x / 9.4.x send 4 MiB in fragments of 64 bytes and up: 65536 fragments per message.
MAX_FRAGMENTS = 1_000_000
# The slowest cases (12.x with 128 KiB compressed messages) take about 21 s in reference runs
# (shared/conformance/README.md); a case still running after this long means the client hangs.
CASE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Settings:
    """What every runner needs: where wstest is, the agent name, and the client's limits."""

    url: str
    agent: str
    max_size: int
    max_fragments: int
    verbose: bool

    def case_count_url(self) -> str:
        return f"{self.url}/getCaseCount"

    def case_url(self, case: int) -> str:
        return f"{self.url}/runCase?case={case}&agent={quote(self.agent, safe='')}"

    def update_reports_url(self) -> str:
        return f"{self.url}/updateReports?agent={quote(self.agent, safe='')}"


def _log(message: str) -> None:
    print(f"autobahn_client: {message}", file=sys.stderr, flush=True)


def _report(count: int, errors: int, hangs: int) -> int:
    _log(
        f"{count} cases run; {errors} ended with an error (expected where a case sends invalid "
        f"data), {hangs} hung for {CASE_TIMEOUT:.0f} s"
    )
    return 1 if hangs else 0


# --- asyncio -------------------------------------------------------------------------------

# What a case may end with, besides a normal close: the connection failed by either side
# (wskit's errors, ConnectionClosed included), the TCP connection reset, a wskit timeout.
ASYNCIO_CASE_ERRORS = (WebSocketError, OSError, asyncio.TimeoutError)


def _asyncio_connect(settings: Settings, url: str) -> AbstractAsyncContextManager[Any]:
    # Imported here, not at the top: see RUNNERS.
    import wskit.asyncio  # noqa: PLC0415

    return wskit.asyncio.connect(
        url,
        compression="deflate",
        max_size=settings.max_size,
        max_fragments=settings.max_fragments,
        ping_interval=None,  # keepalive pings would be unexpected frames in the cases
    )


async def _asyncio_echo(settings: Settings, case: int) -> None:
    async with _asyncio_connect(settings, settings.case_url(case)) as ws:
        async for message in ws:
            await ws.send(message)


async def _asyncio_main(settings: Settings) -> int:
    async with _asyncio_connect(settings, settings.case_count_url()) as ws:
        message = await ws.recv()
    count = int(message.decode() if isinstance(message, bytes) else message)
    _log(f"{count} cases at {settings.url}, agent {settings.agent}")

    errors = hangs = 0
    for case in range(1, count + 1):
        try:
            await asyncio.wait_for(_asyncio_echo(settings, case), CASE_TIMEOUT)
        except asyncio.TimeoutError:
            hangs += 1
            _log(f"case {case}: still running after {CASE_TIMEOUT:.0f} s; abandoned")
        except ASYNCIO_CASE_ERRORS as exc:
            errors += 1
            if settings.verbose:
                _log(f"case {case}: {type(exc).__name__}: {exc}")

    async with _asyncio_connect(settings, settings.update_reports_url()) as ws:
        async for _ in ws:  # the server closes once the report is written
            pass
    return _report(count, errors, hangs)


def run_asyncio(settings: Settings) -> int:
    """Run every case with ``wskit.asyncio.connect`` on the default asyncio event loop."""
    return asyncio.run(_asyncio_main(settings))


# --- sync (threads) ---------------------------------------------------------------------------


def _sync_connect(settings: Settings, url: str) -> Any:
    import wskit.sync  # noqa: PLC0415

    return wskit.sync.connect(
        url,
        compression="deflate",
        max_size=settings.max_size,
        max_fragments=settings.max_fragments,
        ping_interval=None,
    )


def run_sync(settings: Settings) -> int:
    """Run every case with ``wskit.sync.connect``; a ``recv`` waiting longer than
    :data:`CASE_TIMEOUT` counts as a hung case."""
    with _sync_connect(settings, settings.case_count_url()) as ws:
        message = ws.recv(timeout=CASE_TIMEOUT)
    count = int(message.decode() if isinstance(message, bytes) else message)
    _log(f"{count} cases at {settings.url}, agent {settings.agent}")

    errors = hangs = 0
    for case in range(1, count + 1):
        try:
            with _sync_connect(settings, settings.case_url(case)) as ws:
                while True:
                    ws.send(ws.recv(timeout=CASE_TIMEOUT))
        except TimeoutError:
            hangs += 1
            _log(f"case {case}: still running after {CASE_TIMEOUT:.0f} s; abandoned")
        except WebSocketError as exc:  # ConnectionClosedOK ends every case
            if exc.__class__.__name__ != "ConnectionClosedOK":
                errors += 1
                if settings.verbose:
                    _log(f"case {case}: {type(exc).__name__}: {exc}")
        except OSError as exc:
            errors += 1
            if settings.verbose:
                _log(f"case {case}: {type(exc).__name__}: {exc}")

    with _sync_connect(settings, settings.update_reports_url()) as ws:
        for _ in ws:  # the server closes once the report is written
            pass
    return _report(count, errors, hangs)


# --- trio -----------------------------------------------------------------------------------


def _trio_connect(settings: Settings, url: str) -> AbstractAsyncContextManager[Any]:
    import wskit.trio  # noqa: PLC0415

    return wskit.trio.connect(
        url,
        compression="deflate",
        max_size=settings.max_size,
        max_fragments=settings.max_fragments,
        ping_interval=None,
    )


async def _trio_main(settings: Settings) -> int:
    import trio  # noqa: PLC0415

    async with _trio_connect(settings, settings.case_count_url()) as ws:
        message = await ws.recv()
    count = int(message.decode() if isinstance(message, bytes) else message)
    _log(f"{count} cases at {settings.url}, agent {settings.agent}")

    errors = hangs = 0
    for case in range(1, count + 1):
        try:
            with trio.fail_after(CASE_TIMEOUT):
                async with _trio_connect(settings, settings.case_url(case)) as ws:
                    async for message in ws:
                        await ws.send(message)
        except trio.TooSlowError:
            hangs += 1
            _log(f"case {case}: still running after {CASE_TIMEOUT:.0f} s; abandoned")
        except (WebSocketError, OSError, trio.BrokenResourceError) as exc:
            errors += 1
            if settings.verbose:
                _log(f"case {case}: {type(exc).__name__}: {exc}")

    async with _trio_connect(settings, settings.update_reports_url()) as ws:
        async for _ in ws:  # the server closes once the report is written
            pass
    return _report(count, errors, hangs)


def run_trio(settings: Settings) -> int:
    """Run every case with ``wskit.trio.connect`` under ``trio.run``."""
    import trio  # noqa: PLC0415

    return trio.run(_trio_main, settings)


# Front end name -> runner. A runner imports its own front end, so that one front end missing
# (trio not installed) never breaks the others.
RUNNERS: dict[str, Callable[[Settings], int]] = {
    "asyncio": run_asyncio,
    "sync": run_sync,
    "trio": run_trio,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Echo every case of a wstest fuzzingserver with a wskit client."
    )
    parser.add_argument("--front-end", choices=sorted(RUNNERS), default="asyncio")
    parser.add_argument(
        "--url",
        default=os.environ.get("AUTOBAHN_URL"),
        help="wstest fuzzingserver base URL (default: $AUTOBAHN_URL)",
    )
    parser.add_argument(
        "--agent",
        default=os.environ.get("AUTOBAHN_AGENT", "wskit"),
        help="agent name in the report (default: $AUTOBAHN_AGENT, else wskit)",
    )
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, metavar="BYTES")
    parser.add_argument("--max-fragments", type=int, default=MAX_FRAGMENTS, metavar="N")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case's error")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no server URL: set AUTOBAHN_URL (fuzzingserver.sh does) or pass --url")
    settings = Settings(
        url=args.url.rstrip("/"),
        agent=args.agent,
        max_size=args.max_size,
        max_fragments=args.max_fragments,
        verbose=args.verbose,
    )
    return RUNNERS[args.front_end](settings)


if __name__ == "__main__":
    sys.exit(main())

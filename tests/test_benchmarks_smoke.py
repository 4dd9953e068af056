"""Smoke test of the echo benchmark: it runs end to end and prints its tables.

No timing is asserted (that would make the suite flaky); what is checked is that every
library's server starts, that every cell produced a number rather than an error, and that
each table (rates, server CPU, client CPU) has a row per library.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "benchmarks" / "echo.py"
LIBS = ("wskit", "websockets")
#: Seconds: ``--quick`` takes a few; the margin is for a loaded CI machine.
TIMEOUT = 90


def run_quick(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, str(ECHO), "--quick", "--libs", ",".join(LIBS), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_quick_run_prints_a_table_row_per_library(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    extra = ("--no-uvloop",) if loop == "asyncio" else ()
    result = run_quick(*extra)
    assert result.returncode == 0, result.stderr
    out = result.stdout

    assert "Messages per second" in out
    assert "Server CPU time per message" in out
    assert "Client CPU time per message" in out
    for header in ("32 B", "1 KiB", "64 KiB", "1 MiB", "pipelined"):
        assert header in out
    expected_loop = "uvloop" if loop == "uvloop" else "asyncio (standard loop)"
    assert re.search(rf"^loop: +{re.escape(expected_loop)}", out, re.MULTILINE)

    for lib in LIBS:
        rows = [line for line in out.splitlines() if line.split()[:1] == [lib]]
        # One row in each table: rates, server CPU, client CPU.
        assert len(rows) == 3, out
        rate_row, server_row, client_row = rows
        # Five cells each: four payload sizes and the pipelined test, all with a ratio.
        assert len(re.findall(r"/s \(\d+\.\d\dx\)", rate_row)) == 5, rate_row
        if Path("/proc/self/stat").exists():  # the server's CPU time is read from /proc
            assert len(re.findall(r" us \(\d+\.\d\dx\)", server_row)) == 5, server_row
        assert len(re.findall(r" us \(\d+\.\d\dx\)", client_row)) == 5, client_row
    assert "error" not in out.lower(), out
    # The servers ran in subprocesses and logged every cell on stderr.
    assert len(re.findall(r"^\[1/1\]", result.stderr, re.MULTILINE)) == 5 * len(LIBS)


def test_unknown_library_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(ECHO), "--quick", "--libs", "wskit,nosuchlib"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "nosuchlib" in result.stderr


def test_idle_memory_benchmark_prints_a_row_per_library() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "idle_memory.py"),
            "--connections",
            "20",
            "--libs",
            "wskit,websockets,picows",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for lib in ("wskit", "websockets"):
        assert re.search(r"KiB \(\d+\.\d\dx\).*KiB \(\d+\.\d\dx\)", rows[lib]), result.stdout
    assert rows["picows"].rstrip().endswith("n/a")  # picows has no compression

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
            "wskit,websockets,aiohttp",
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
    for lib in ("wskit", "websockets", "aiohttp"):
        assert re.search(r"KiB \(\d+\.\d\dx\).*KiB \(\d+\.\d\dx\)", rows[lib]), result.stdout


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_compression_benchmark_prints_a_row_per_library() -> None:
    # wskit, websockets and aiohttp are all in the "test" extra.
    libs = ("wskit", "websockets", "aiohttp")
    result = run_benchmark("compression.py", "--quick", "--libs", ",".join(libs))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for lib in libs:
        # The preflight checked and printed what each library negotiated.
        assert re.search(rf"^  {lib} +permessage-deflate", out, re.MULTILINE), out
        # Rates, then server CPU, client CPU and the two wire ratios: two sizes each.
        assert re.search(rf"^{lib} +[\d,]+/s \(\d\.\d\dx\) +[\d,]+/s \(\d\.\d\dx\)$", out, re.M)
        ratios = re.findall(rf"^{lib} +(0\.\d{{3}}) \(\d\.\d\dx\) +(0\.\d{{3}}) \(", out, re.M)
        assert len(ratios) == 2, out  # server -> client, client -> server
        # JSON text compresses: every direction well under 1 byte on the wire per byte sent.
        assert all(float(ratio) < 0.8 for row in ratios for ratio in row), ratios
        if Path("/proc/self/stat").exists():
            cpu_rows = re.findall(rf"^{lib} +[\d,.]+ us \(\d+\.\d\dx\) +[\d,.]+ us \(", out, re.M)
            assert len(cpu_rows) == 2, out  # server and client CPU
    assert re.search(r"target: .* Now: 1 KiB \d+\.\d\dx, 64 KiB \d+\.\d\dx", out), out
    assert "wskit's statistics() byte counters agree with TCP_INFO" in out, out
    assert "error" not in out.lower(), out


def test_handshake_benchmark_prints_a_row_per_library() -> None:
    # picows is not in the "test" extra: the benchmark skips it when it is missing.
    result = run_benchmark("handshake.py", "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    libs = ["wskit", "websockets", "aiohttp"]
    if "skipping picows" not in result.stderr:
        libs.append("picows")
    for lib in libs:
        assert re.search(rf"^{lib} +[\d,]+/s \(\d\.\d\dx\)$", out, re.M), out
        if Path("/proc/self/stat").exists():
            assert re.search(rf"^{lib} +[\d,.]+ us \(\d+\.\d\dx\)$", out, re.M), out
        assert re.search(rf"^  {lib} +server \d\.\d\d, generator \d\.\d\d$", out, re.M), out
    assert "error" not in out.lower(), out

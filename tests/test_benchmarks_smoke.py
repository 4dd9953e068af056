"""Smoke tests of the benchmarks: each runs end to end and prints its tables.

Timing is not asserted (that would make the suite flaky), with one exception that has a margin
of about ten: the pure-Python rows of echo.py must really run the pure-Python core, which masks
a 1 MiB message many times slower than the compiled one. What is checked: every server and
client starts, every cell produced a number rather than an error, and every table has its
rows, cells and ratios.
"""

from __future__ import annotations

import importlib.util
import json
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
#: echo.py's columns: four round-trip sizes and two pipelined ones.
COLUMNS = ("32 B", "1 KiB", "64 KiB", "1 MiB", "pipelined 32 B", "pipelined 1 KiB")
#: picows is in the "bench" extra only: without it aiohttp is the common load generator.
HAVE_PICOWS = importlib.util.find_spec("picows") is not None
#: The callback API (wskit.handlers), measured by the ``-cb`` rows.
HAVE_HANDLERS = (ROOT / "src" / "wskit" / "handlers.py").exists()


def run_quick(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("WSKIT_NO_EXTENSIONS", None)  # the wskit rows run the compiled core where built
    return subprocess.run(
        [sys.executable, str(ECHO), "--quick", "--libs", ",".join(LIBS), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def side_table(out: str, side: str) -> list[str]:
    """The lines of one side's table, from its title to the end of its block."""
    start = out.index(f"{side} under test")
    return out[start:].split("\n\n", 1)[0].splitlines()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_echo_measures_each_side_against_one_common_peer(loop: str, tmp_path: Path) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    dump = tmp_path / "echo.json"
    extra = ("--no-uvloop",) if loop == "asyncio" else ()
    result = run_quick("--json", str(dump), *extra)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    expected_loop = "uvloop" if loop == "uvloop" else "asyncio (standard loop)"
    assert re.search(rf"^loop: +{re.escape(expected_loop)}", out, re.MULTILINE)

    # One load generator for every server, one echo server for every client.
    generator = "picows" if HAVE_PICOWS else "aiohttp"
    assert f"load generator: the {generator} client (for every server)" in out, out
    assert f"echo server: the {generator} server (for every client)" in out, out

    # The rows --libs wskit,websockets selects: every wskit row, websockets, and picows as
    # the reference of the others. The pure-Python rows run the pure-Python core.
    rows = ["wskit", *(["wskit-cb"] if HAVE_HANDLERS else []), "websockets"]
    rows += ["picows"] if HAVE_PICOWS else []
    rows += ["wskit-pure", *(["wskit-pure-cb"] if HAVE_HANDLERS else [])]
    core = re.search(r"^wskit core: (.*)$", out, re.MULTILINE)
    assert core is not None, out
    assert "wskit-pure python" in core.group(1), core.group(1)
    if HAVE_HANDLERS:
        assert "wskit-pure-cb python" in core.group(1), core.group(1)

    for side in ("SERVER", "CLIENT"):
        table = side_table(out, side)
        assert table[4].split()[:2] == ["row", "vs"], table
        assert [c.strip() for c in re.split(r" {2,}", table[4].strip())[2:]] == list(COLUMNS)
        body = [line for line in table[6:] if not line.startswith("-")]
        assert [line.split()[0] for line in body] == [r for r in rows for _ in (0, 1)], table
        for line in body:
            name, vs, what = line.split()[:3]
            assert vs == ("websockets" if name.startswith("wskit-pure") else "picows"), line
            unit = "us" if what == "CPU/msg" else "/s"
            assert what == ("CPU/msg" if unit == "us" else "rate")
            ratios = re.findall(rf"[\d,.]+ ?{re.escape(unit)} \((\d+\.\d\dx|-)\)", line)
            assert len(ratios) == len(COLUMNS), line
            if vs in rows:  # the reference was measured: every cell has its ratio
                assert "-" not in ratios, line
            if name == vs:
                assert set(ratios) == {"1.00x"}, line

    # A verdict for each of issue #3's four targets, each wskit row, each side.
    targets = re.findall(r"^  (server|client) +(wskit\S*) +.* -> (met|NOT met|n/a)$", out, re.M)
    expected = 3 * 2 * sum(not r.startswith("wskit-pure") for r in rows if r.startswith("wskit"))
    expected += 2 * sum(r.startswith("wskit-pure") for r in rows)
    assert len(targets) == expected, out
    assert "error" not in out.lower(), out
    # Every cell ran once per side and was logged on stderr.
    assert len(re.findall(r"^\[1/1\] ", result.stderr, re.M)) == 2 * len(COLUMNS) * len(rows)

    data = json.loads(dump.read_text())
    assert data["generator"] == generator
    for side in ("server", "client"):
        assert sorted(data[side]) == sorted(rows)
        for name in rows:
            assert sorted(data[side][name]) == sorted(COLUMNS)
            for samples in data[side][name].values():
                (sample,) = samples
                assert sample["error"] is None and sample["messages"] > 0, sample
                assert sample["client_cpu"] > 0, sample
                if Path("/proc/self/stat").exists():  # the server's CPU time is from /proc
                    assert sample["server_cpu"] > 0, sample
    # The pure-Python core masks in Python: far more CPU per 1 MiB message (about 10x) than
    # the compiled one, on each side, when the compiled one is built.
    if "wskit compiled" in core.group(1) and Path("/proc/self/stat").exists():
        for side, field in (("server", "server_cpu"), ("client", "client_cpu")):
            pure = data[side]["wskit-pure"]["1 MiB"][0]
            compiled = data[side]["wskit"]["1 MiB"][0]
            per_message = [s[field] / s["messages"] for s in (pure, compiled)]
            assert per_message[0] > 3 * per_message[1], (side, per_message)


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


def test_hosts_benchmark_prints_its_three_tables() -> None:
    """Threads servers and clients (wskit.sync, websockets.sync, simple-websocket,
    wskit.simple) and uvicorn's engines: every row of every table has two measured cells."""
    result = run_benchmark("hosts.py", "--repeat", "1", "--duration", "0.2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    tables = {
        "SERVER under test (threads": ("wskit-sync", "websockets-sync", "simple-websocket"),
        "CLIENT under test (threads": ("wskit-sync", "websockets-sync", "simple-websocket"),
        "SERVER under test (uvicorn": ("wskit", "websockets", "websockets-sansio", "wsproto"),
    }
    for title, rows in tables.items():
        block = out[out.index(title) :].split("\n\n", 1)[0].splitlines()
        for row in rows:
            (line,) = [line for line in block if line.split()[:1] == [row]]
            cells = re.findall(r"([\d.]+) us \(([\d.]+)x\) +([\d,]+)/s", line)
            assert len(cells) == 2, line
            assert all(float(cpu) > 0 and int(rate.replace(",", "")) > 0 for cpu, _, rate in cells)


def test_trio_front_end_benchmark_prints_both_tables() -> None:
    """wskit.trio, trio-websocket, websockets.trio and wskit.trio_websocket, servers and
    clients: every row has its three cells, CPU and rate, each with both ratios."""
    pytest.importorskip("trio")
    pytest.importorskip("trio_websocket")
    result = run_benchmark("trio_front_end.py", "--repeat", "1", "--duration", "0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    skipped = re.findall(r"^skipped: +(\S+) ", out, re.M)
    # Only the optional rows may be skipped, and only when they cannot be imported here.
    assert set(skipped) <= {"wskit-trio-websocket", "websockets-trio"}, out
    if (ROOT / "src" / "wskit" / "trio_websocket.py").exists():
        assert "wskit-trio-websocket" not in skipped, out
    if importlib.util.find_spec("websockets.trio") is not None:
        assert "websockets-trio" not in skipped, out
    rows = [
        row
        for row in ("wskit-trio", "wskit-trio-websocket", "trio-websocket", "websockets-trio")
        if row not in skipped
    ]
    cell = r"([\d,.]+) ?(?:us|/s) \((\d\.\d\dx|  -  ) (\d\.\d\dx|  -  )\)"
    for title in ("SERVER under test", "CLIENT under test"):
        block = out[out.index(title) :].split("\n\n", 1)[0].splitlines()
        assert block[1].split()[1:] == ["32", "B", "1", "KiB", "64", "KiB"], block
        for row in rows:
            lines = [line for line in block if line.split()[:1] == [row]]
            assert [line.split()[1] for line in lines] == ["CPU/msg", "rate"], block
            for line in lines:
                cells = re.findall(cell, line)
                assert len(cells) == 3, line
                assert all(float(value.replace(",", "")) > 0 for value, _, _ in cells), line
                if row == "trio-websocket":
                    assert all(vs_tw == "1.00x" for _, vs_tw, _ in cells), line
                if row == "websockets-trio":
                    assert all(vs_ws == "1.00x" for _, _, vs_ws in cells), line
    assert "error" not in out.lower(), out

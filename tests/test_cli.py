"""``python -m wskit``: demo server, echo server and interactive client, run as processes."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wskit.asyncio import connect
from wskit.exceptions import ConnectionClosedError

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wskit", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its address once it listens
    assert f"http://127.0.0.1:{port}/" in line, line
    return proc, port


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM: the server closes its connections and exits with 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(10) == 0
    finally:
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture(params=["asyncio", "sync", "trio"])
def demo(request: pytest.FixtureRequest) -> Iterator[int]:
    """The demo server on each front end (``--front-end``): the same page and endpoints."""
    proc, port = start("serve", "--front-end", request.param)
    yield port
    stop(proc)


def test_demo_page(demo: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{demo}/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert "wskit demo" in page and '"/time"' in page and '"/echo"' in page
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{demo}/nope", timeout=5)
    assert info.value.code == 404
    info.value.close()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{demo}/echo", timeout=5)
    assert info.value.code == 426
    info.value.close()


def test_demo_echo_and_time(demo: int) -> None:
    async def main() -> None:
        async with connect(f"ws://127.0.0.1:{demo}/echo") as ws:
            await ws.send("ping me")
            assert await ws.recv() == "ping me"
        async with connect(f"ws://127.0.0.1:{demo}/time") as ws:
            first = datetime.datetime.fromisoformat(str(await ws.recv()))
            second = datetime.datetime.fromisoformat(str(await ws.recv()))
            gap = (second - first).total_seconds()
            assert 0.5 <= gap <= 2

    asyncio.run(asyncio.wait_for(main(), 15))


@pytest.mark.browser
def test_demo_page_in_a_browser(demo: int, chromium: Callable[[], Any]) -> None:
    """The main job as a person uses it: the clock ticks, a typed message comes back."""
    from selenium.webdriver.common.by import By

    driver = chromium()
    driver.get(f"http://127.0.0.1:{demo}/")
    clock = driver.find_element(By.ID, "clock")
    log = driver.find_element(By.ID, "log")
    deadline = time.monotonic() + 15
    while "connected" not in log.text or "T" not in clock.text:
        assert time.monotonic() < deadline, (clock.text, log.text)
        time.sleep(0.1)
    first_tick = clock.text
    field = driver.find_element(By.ID, "message")
    field.send_keys("hello from the browser")
    driver.find_element(By.CSS_SELECTOR, "#form button").click()
    while "< hello from the browser" not in log.text or clock.text == first_tick:
        assert time.monotonic() < deadline, (clock.text, log.text)
        time.sleep(0.1)
    assert "> hello from the browser" in log.text
    assert datetime.datetime.fromisoformat(clock.text) > datetime.datetime.fromisoformat(first_tick)


def test_echo_server_options() -> None:
    proc, port = start("serve", "--echo", "--max-size", "100")

    async def main() -> None:
        async with connect(f"ws://127.0.0.1:{port}/any/path") as ws:
            assert "permessage-deflate" in str(ws.response.headers)  # type: ignore[union-attr]
            await ws.send(b"x" * 100)
            assert await ws.recv() == b"x" * 100
            await ws.send(b"x" * 101)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009

    try:
        asyncio.run(asyncio.wait_for(main(), 15))
    finally:
        stop(proc)


def test_interactive_client(demo: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wskit", "connect", f"ws://127.0.0.1:{demo}/echo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("Connected to ")
        for line in ("hello", "world"):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"< {line}\n"
        proc.stdin.close()  # Ctrl-D
        assert proc.wait(10) == 0
        assert proc.stdout.read() == "Connection closed: 1000\n"
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_client_reports_a_refused_connection() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wskit", "connect", f"ws://127.0.0.1:{free_port()}/"],
        capture_output=True,
        text=True,
        timeout=20,
        env=ENV,
        check=False,
    )
    assert result.returncode == 1
    assert "Failed to connect" in result.stderr

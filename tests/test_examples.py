"""Every file in examples/ runs and does what its docstring (and the docs) say it does.

Server examples run as scripts, in a subprocess on a free port (``WSKIT_PORT``), and a wskit
client, a raw socket or ``http.client`` talks to them; client examples run as scripts against
a wskit server started here. ``PYTHONPATH`` points the subprocesses at this checkout's ``src``
so the tests run the same from a source tree and from an installed virtualenv. Every wait is
bounded. A server example must not print a traceback in normal use, so its stderr is checked
once it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

import wskit.sync
from wskit.asyncio import WebSocketServerConnection, connect, serve
from wskit.core import Binary, ClientConnection, Closed, Event, Response, State, Text
from wskit.core.frames import OP_TEXT, encode_frame
from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SRC = ROOT / "src"
#: Bound on every wait in this file: a hang fails the test instead of blocking the suite.
TIMEOUT = 20.0

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a fresh event loop, within :data:`TIMEOUT`."""
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def example_env(port: int, **extra: str) -> dict[str, str]:
    """The environment of an example: its address, and this checkout's wskit on the path."""
    env = dict(os.environ, WSKIT_HOST="127.0.0.1", WSKIT_PORT=str(port), **extra)
    if SRC.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@dataclass
class RunningExample:
    port: int
    process: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def running(name: str, **env: str) -> Iterator[RunningExample]:
    """Run ``examples/<name>`` until the block ends; its output is on the result afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name)],
        env=example_env(port, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    example = RunningExample(port, process)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}: {process.stderr!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} is not listening on port {port}")
                time.sleep(0.05)
        yield example
    finally:
        process.terminate()
        try:
            example.stdout, example.stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            example.stdout, example.stderr = process.communicate()


def assert_quiet(example: RunningExample) -> None:
    """Normal use logs no error: a traceback means the example mishandles a closed client."""
    assert "Traceback" not in example.stderr, example.stderr
    assert "failed" not in example.stderr, example.stderr


async def run_client_example(name: str, port: int, *args: str, stdin: str = "") -> str:
    """Run ``examples/<name>`` as a script against ``port``; return its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        env=example_env(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, err.decode()
    return out.decode()


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (not run as a script)."""
    spec = importlib.util.spec_from_file_location(f"wskit_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def eventually(condition: Any, what: str) -> None:
    """Wait (bounded) until ``condition()`` is true."""
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


# -- hello -------------------------------------------------------------------------------------


def test_hello_server_greets_by_name_and_closes() -> None:
    async def talk(uri: str) -> None:
        async with connect(uri) as ws:
            await ws.send("Alice")
            assert await ws.recv() == "Hello Alice!"
            # The handler returned: the server closes with 1000.
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1000
        async with connect(uri) as ws:
            await ws.send(b"Alice")
            with pytest.raises(ConnectionClosedError):  # 1003 is not a normal closure
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (1003, "send your name as text")

    with running("hello_server.py") as server:
        run(talk(server.uri))
    assert "<<< Alice\n>>> Hello Alice!\n" in server.stdout
    assert_quiet(server)


def test_hello_client_sends_the_name_and_prints_the_greeting() -> None:
    names: list[str | bytes] = []

    async def greeter(ws: WebSocketServerConnection) -> None:
        name = await ws.recv()
        names.append(name)
        await ws.send(f"Hi {name!s}, from the test")

    async def main() -> tuple[str, str]:
        async with serve(greeter, "127.0.0.1", 0) as server:
            from_argv = await run_client_example("hello_client.py", server.port, "Bob")
            from_input = await run_client_example("hello_client.py", server.port, stdin="Carol\n")
        return from_argv, from_input

    from_argv, from_input = run(main())
    assert names == ["Bob", "Carol"]
    assert ">>> Bob\n<<< Hi Bob, from the test\n" in from_argv
    assert "<<< Hi Carol, from the test" in from_input


# -- echo --------------------------------------------------------------------------------------


def test_echo_server_echoes_text_and_binary() -> None:
    async def talk(uri: str) -> None:
        async with connect(uri) as ws:
            for message in ("hello", "", "ünïcode ✓", b"\x00\xff binary", "x" * 100_000):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "mented"])  # one message in two frames
            assert await ws.recv() == "fragmented"
        assert ws.close_code == 1000

    with running("echo_server.py") as server:
        run(talk(server.uri))
    assert_quiet(server)


# -- time --------------------------------------------------------------------------------------


def test_time_server_pushes_the_time_every_second() -> None:
    async def listen(uri: str) -> list[datetime.datetime]:
        async with connect(uri) as ws:
            return [datetime.datetime.fromisoformat(str(await ws.recv())) for _ in range(2)]

    with running("time_server.py") as server:
        first, second = run(listen(server.uri))
        time.sleep(1.5)  # past the next tick: the handler finds the client gone
    now = datetime.datetime.now(datetime.timezone.utc)
    assert first.tzinfo is not None
    assert now - datetime.timedelta(seconds=TIMEOUT) < first < second <= now
    assert second - first >= datetime.timedelta(seconds=0.5)  # PERIOD is 1 s
    assert_quiet(server)  # the client left: the producer loop ends without an error


@pytest.mark.browser
def test_time_html_lists_the_pushed_times_in_a_browser(chromium: Callable[[], Any]) -> None:
    with running("time_server.py") as server:
        driver = chromium()  # the fixture quits it
        page = (EXAMPLES / "time.html").as_uri() + f"?ws={server.uri}"
        driver.get(page)
        deadline = time.monotonic() + TIMEOUT
        script = "return [...document.querySelectorAll('#messages li')].map(e => e.textContent)"
        while len(items := driver.execute_script(script)) < 2:
            assert time.monotonic() < deadline, "the page did not list two messages"
            time.sleep(0.1)
        status = driver.execute_script("return document.getElementById('status').textContent")
    assert status == f"connected to {server.uri}"
    for item in items:
        assert datetime.datetime.fromisoformat(item).tzinfo is not None
    assert_quiet(server)


# -- broadcast ---------------------------------------------------------------------------------


def test_broadcast_reaches_every_connected_client() -> None:
    async def talk(uri: str) -> None:
        clients = [await connect(uri) for _ in range(3)]
        await clients[0].send("hi all")
        assert [await ws.recv() for ws in clients] == ["hi all"] * 3
        await clients[2].close()
        await clients[1].send(b"bytes too")
        assert [await ws.recv() for ws in clients[:2]] == [b"bytes too"] * 2
        for ws in clients[:2]:
            await ws.close()

    with running("broadcast.py") as server:
        run(talk(server.uri))
    assert_quiet(server)


def test_broadcast_registers_and_unregisters_connections() -> None:
    example = load_example("broadcast")

    async def main() -> None:
        async with serve(example.handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            clients = [await connect(uri) for _ in range(3)]
            assert len(example.CONNECTIONS) == 3
            await clients[0].close()
            await eventually(lambda: len(example.CONNECTIONS) == 2, "one client is unregistered")
            clients[1].transport.abort()  # gone without a closing handshake: still unregistered
            await eventually(lambda: len(example.CONNECTIONS) == 1, "an aborted one is too")
            await clients[2].close()
            await eventually(lambda: not example.CONNECTIONS, "every client is unregistered")

    run(main())


def test_handler_chat_relays_to_everyone_else() -> None:
    async def talk(uri: str) -> None:
        alice = await connect(uri)
        assert await alice.recv() == "welcome; 0 other(s) here"
        bob = await connect(uri)
        assert await bob.recv() == "welcome; 1 other(s) here"
        await alice.send("hi bob")
        assert await bob.recv() == "hi bob"
        await bob.send(b"hi alice")
        assert await alice.recv() == b"hi alice"
        await bob.close()
        carol = await connect(uri)
        # Bob left: the room has Alice only.
        assert await carol.recv() == "welcome; 1 other(s) here"
        await carol.send("anyone?")
        assert await alice.recv() == "anyone?"
        for ws in (alice, carol):
            await ws.close()

    with running("handler_chat.py") as server:
        run(talk(server.uri))
    assert_quiet(server)


def test_handler_chat_forgets_members_that_leave() -> None:
    example = load_example("handler_chat")

    async def main() -> None:
        async with serve(example.ChatMember, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            clients = [await connect(uri) for _ in range(3)]
            for ws in clients:
                await ws.recv()  # the welcome: its member is in the room now
            assert len(example.ChatMember.room) == 3
            await clients[0].close()
            await eventually(lambda: len(example.ChatMember.room) == 2, "one member left")
            clients[1].transport.abort()  # gone without a closing handshake
            await eventually(lambda: len(example.ChatMember.room) == 1, "an aborted one too")
            await clients[2].close()
            await eventually(lambda: not example.ChatMember.room, "the room is empty")

    run(main())


def test_ticker_broadcasts_the_same_ticks_to_every_client() -> None:
    async def listen(uri: str) -> None:
        clients = [await connect(uri) for _ in range(3)]
        # Every client gets consecutive ticks, from the first one after it joined.
        seen = [[await ws.recv() for _ in range(3)] for ws in clients]
        for ticks in seen:
            numbers = [int(str(tick).split()[1]) for tick in ticks]
            assert numbers == list(range(numbers[0], numbers[0] + 3)), ticks
        for ws in clients:
            await ws.close()

    with running("ticker.py", WSKIT_PERIOD="0.05") as server:
        run(listen(server.uri))
    assert_quiet(server)


# -- consumer and producer ---------------------------------------------------------------------


def test_consumer_producer_consumes_while_producing() -> None:
    async def talk(uri: str) -> list[str]:
        async with connect(uri) as ws:
            for n in range(3):
                await ws.send(f"message {n}")
            return [str(await ws.recv()) for _ in range(2)]

    with running("consumer_producer.py") as server:
        ticks = run(talk(server.uri))
    assert ticks == ["tick 1: 3 messages received", "tick 2: 3 messages received"]
    assert_quiet(server)


def test_consumer_producer_handler_ends_when_the_client_leaves() -> None:
    """The producer sleeps between ticks: the handler must cancel it, not wait for the tick."""
    example = load_example("consumer_producer")
    example.PERIOD = 3600.0

    async def main() -> None:
        done = asyncio.Event()

        async def handler(ws: WebSocketServerConnection) -> None:
            await example.handler(ws)
            done.set()

        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("one")
            await asyncio.wait_for(done.wait(), 5)

    run(main())


def test_consumer_producer_handler_ends_quietly_when_the_client_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client gone without a closing handshake ends the handler with ConnectionClosedError
    (re-raised by ``task.result()``): the server logs that at DEBUG as the client leaving, not
    as a failure, which is why the example need not catch it (docs/server.md, Logging)."""
    example = load_example("consumer_producer")
    example.PERIOD = 3600.0
    caplog.set_level(logging.DEBUG, logger="wskit")

    def ended() -> bool:
        return any(r.getMessage().startswith("connection handler ended") for r in caplog.records)

    async def main() -> None:
        async with serve(example.handler, "127.0.0.1", 0) as server:
            ws = await connect(f"ws://127.0.0.1:{server.port}/")
            await ws.send("one")
            ws.transport.abort()
            await eventually(ended, "the handler ends")

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# -- process_request ---------------------------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_health_check_answers_http_and_requires_a_token() -> None:
    async def talk(uri: str) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as caught:
                await connect(uri, extra_headers=headers)
            assert caught.value.response.status == 401
            assert caught.value.response.headers.get("WWW-Authenticate") == "Bearer"
        async with connect(uri, extra_headers={"Authorization": "Bearer t0ken"}) as ws:
            await ws.send("let me in")
            assert await ws.recv() == "let me in"

    with running("health_check.py", WSKIT_TOKEN="t0ken") as server:
        status, headers, body = http_get(server.port, "/healthz")
        assert (status, body) == (200, b"OK\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["Connection"] == "close"
        status, headers, _ = http_get(server.port, "/")
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")
        run(talk(server.uri))
    assert_quiet(server)


# -- sans-I/O ----------------------------------------------------------------------------------


def raw_session(port: int, after_request: bytes, close_after: int = 1) -> list[Event]:
    """Talk to ``port`` with the core's client over a blocking socket: send the request and
    ``after_request`` in one write, send a Close frame once ``close_after`` messages came back,
    and return every event until the server closes TCP."""
    client = ClientConnection(f"ws://127.0.0.1:{port}/")
    client.send_request()
    events: list[Event] = []
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(client.data_to_send()) + after_request)
        while True:
            data = sock.recv(65536)
            if data:
                client.receive_data(data)
            else:
                client.receive_eof()
            events += client.events()
            while client.input_held:
                client.receive_data(b"")
                events += client.events()
            if not data:
                return events
            messages = [event for event in events if isinstance(event, (Text, Binary))]
            if len(messages) >= close_after and client.state is State.OPEN:
                client.send_close(1000)
            sock.sendall(b"".join(client.data_to_send()))


def test_sansio_echo_talks_to_the_asyncio_client() -> None:
    async def talk(uri: str) -> None:
        for _ in range(2):  # one connection after another
            async with connect(uri) as ws:
                for message in ("hello", b"\x01\x02", "y" * 200_000):
                    await ws.send(message)
                    assert await ws.recv() == message
                rtt = await asyncio.wait_for(await ws.ping(), TIMEOUT)  # the core pongs
                assert rtt >= 0
            assert ws.close_code == 1000

    with running("sansio_echo.py") as server:
        run(talk(server.uri))
    assert server.stdout.count("connection closed: 1000") == 2
    assert "Traceback" not in server.stderr


def test_sansio_echo_handles_frames_sent_with_the_request() -> None:
    with running("sansio_echo.py") as server:
        events = raw_session(server.port, encode_frame(OP_TEXT, b"early", mask=True))
        # A valid frame, then one with a reserved opcode: the first is answered, then 1002.
        bad = encode_frame(OP_TEXT, b"answered", mask=True) + encode_frame(0x3, b"", mask=True)
        failed = raw_session(server.port, bad, close_after=2)
    assert isinstance(events[0], Response) and events[0].status == 101
    assert events[1:] == [Text("early"), Closed(1000, "", 1000)]
    assert failed[1] == Text("answered")
    closed = failed[-1]
    assert isinstance(closed, Closed) and closed.code == 1002
    assert "Traceback" not in server.stderr


def test_sansio_echo_answers_a_plain_http_request_with_an_error() -> None:
    with running("sansio_echo.py") as server:
        status, _, body = http_get(server.port, "/")
    assert status == 400
    assert b"Connection header" in body


# -- all of them -------------------------------------------------------------------------------


# -- threads (wskit.sync) ----------------------------------------------------------------------


def test_sync_echo_server_echoes_and_says_1001_on_sigterm() -> None:
    with running("sync_echo_server.py") as server:
        ws = wskit.sync.connect(server.uri)
        for message in ("hello", b"\x00\xff binary", "x" * 100_000):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        server.process.terminate()  # SIGTERM: the server closes every connection with 1001
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001
        ws.close()
        assert server.process.wait(TIMEOUT) == 0  # it stopped by itself, cleanly
    assert_quiet(server)


def test_sync_client_prints_replies_and_reports_slow_ones() -> None:
    async def replier(ws: WebSocketServerConnection) -> None:
        async for message in ws:
            if message == "slow":
                await asyncio.sleep(1.5)  # longer than the client's recv(timeout=1.0)
            await ws.send(f"got {message}")

    async def main() -> str:
        async with serve(replier, "127.0.0.1", 0) as server:
            return await run_client_example("sync_client.py", server.port, stdin="one\nslow\ntwo\n")

    out = run(main())
    # The late reply is not lost: it is the next one printed.
    assert out.splitlines() == ["< got one", "(no reply within a second)", "< got slow"]


# -- simple-websocket's examples (wskit.simple) --------------------------------------------------


def test_simple_flask_echo_and_simple_client() -> None:
    with running("simple_flask_echo.py") as server:
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "simple_client.py")],
            env=example_env(server.port),
            input="hello\nünïcode ✓\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        ).stdout
        with wskit.sync.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            ws.send(b"\x00binary")
            assert ws.recv(timeout=TIMEOUT) == b"\x00binary"
    assert out == "> < hello\n> < ünïcode ✓\n> "
    assert "Traceback" not in server.stderr, server.stderr


@pytest.mark.parametrize("server_example", ["simple_aiohttp_echo.py", "simple_asgi_echo.py"])
def test_simple_asyncio_servers_and_simple_aio_client(server_example: str) -> None:
    with running(server_example) as server:
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "simple_aio_client.py")],
            env=example_env(server.port),
            input="hello\nünïcode ✓\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        ).stdout
        with wskit.sync.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            for message in (b"\x00binary", "x" * 300_000):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
    assert out == "> < hello\n> < ünïcode ✓\n> "
    assert "Traceback" not in server.stderr, server.stderr


# -- Trio (wskit.trio) --------------------------------------------------------------------------


def test_trio_echo_server_echoes_and_says_1001_on_sigterm() -> None:
    with running("trio_echo_server.py") as server:
        ws = wskit.sync.connect(server.uri)
        for message in ("hello", b"\x00\xff binary", "x" * 100_000):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        server.process.terminate()  # SIGTERM: the server closes every connection with 1001
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001
        ws.close()
        assert server.process.wait(TIMEOUT) == 0  # it stopped by itself, cleanly
    assert_quiet(server)


def test_trio_client_prints_replies_and_reports_slow_ones() -> None:
    async def replier(ws: WebSocketServerConnection) -> None:
        async for message in ws:
            if message == "slow":
                await asyncio.sleep(1.5)  # longer than the client's one-second scope
            await ws.send(f"got {message}")

    async def main() -> str:
        async with serve(replier, "127.0.0.1", 0) as server:
            return await run_client_example("trio_client.py", server.port, stdin="one\nslow\ntwo\n")

    out = run(main())
    # The late reply is not lost: it is the next one printed.
    assert out.splitlines() == ["< got one", "(no reply within a second)", "< got slow"]


# -- trio-websocket's examples (wskit.trio_websocket) ------------------------------------------


def test_trio_websocket_echo_server_and_client() -> None:
    with running("trio_websocket_echo_server.py") as server:
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "trio_websocket_client.py")],
            env=example_env(server.port),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        with wskit.sync.connect(server.uri) as ws:
            for message in ("ünïcode ✓", b"\x00binary", "x" * 300_000):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
    assert out.stdout == "Received message: hello world!\n"
    assert out.stderr == ""
    assert_quiet(server)


def test_every_example_is_tested() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for path in sorted(EXAMPLES.iterdir()):
        if path.suffix in (".py", ".html"):
            assert f'"{path.stem}' in source, f"no test runs examples/{path.name}"


def test_examples_type_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples are what users copy: they must pass mypy --strict against the API, with the
    project's settings (python_version 3.10 among them)."""
    from mypy import api  # the [test] extra

    if SRC.is_dir():
        monkeypatch.setenv("MYPYPATH", str(SRC))
    files = [str(path) for path in sorted(EXAMPLES.glob("*.py"))]
    config = ["--config-file", str(ROOT / "pyproject.toml")]
    out, err, status = api.run([*config, "--strict", "--no-error-summary", *files])
    assert status == 0, out + err

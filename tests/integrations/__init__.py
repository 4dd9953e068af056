"""Tests of WebSocket routes inside existing web servers (WSGI, ASGI, aiohttp, uvicorn).

Helpers shared by the test files: a real server in a process of its own, and a raw client
that commits a protocol violation.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wskit.core import ClientConnection, State
from wskit.core.events import Closed

ROOT = Path(__file__).resolve().parents[2]
#: Seconds for a server to start, and for any one step.
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server_process(
    name: str, command: list[str], port: int, *, expected_errors: str | None = None
) -> Iterator[str]:
    """Run ``command`` (a server listening on ``port``) from the repository root, with this
    checkout's ``src`` importable; yield ``127.0.0.1:port``. Fails if it exits early or does
    not listen within :data:`WAIT`, and, once stopped, if it printed a traceback (beyond one
    per line containing ``expected_errors``: errors a test causes on purpose)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")])
    )
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # eventlet announces its retirement
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited: {process.stderr.read() if process.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{name} did not listen on {port}"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            _, errors = process.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
    allowed = errors.count(expected_errors) if expected_errors else 0
    assert errors.count("Traceback") <= allowed, errors


def violation_close_code(address: str, path: str) -> int | None:
    """Open ``path`` with a raw client, send a frame with the reserved opcode 0x3, and return
    the close code the server answered with (1006: it dropped TCP without a Close frame)."""
    core = ClientConnection(f"ws://{address}{path}", extensions=[])
    core.send_request()
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(b"".join(core.data_to_send()))
        while core.state is State.CONNECTING:
            core.receive_data(sock.recv(65536))
        core.events()
        sock.sendall(b"\x83\x80abcd")  # reserved opcode 0x3, masked, empty
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                core.receive_data(data)
    core.receive_eof()
    closed = [e for e in core.events() if isinstance(e, Closed)]
    return closed[0].code if closed else None

"""WebSocket routes in a Flask app under real WSGI servers (wskit.integrations.wsgi).

Each server runs tests/integrations/wsgi_app.py in a process of its own on 127.0.0.1; clients
are wskit's own (wskit.sync) and websockets' (websockets.sync). Per server: text, binary and
1 MiB messages, compression on and off, a subprotocol, a close code and reason each way, and
two bad inputs (a message over the route's limit: 1009; a reserved opcode: 1002); plain HTTP
still served on the same port. And a WSGI server that hides its sockets (wsgiref) gets a clear
IntegrationError.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import threading
import time
import urllib.request
import wsgiref.simple_server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect
from websockets.typing import Subprotocol

import wskit.sync
from tests.integrations import WAIT, free_port, server_process, violation_close_code
from tests.integrations.wsgi_app import SERVERS
from wskit.exceptions import ConnectionClosedError, IntegrationError
from wskit.integrations.wsgi import accept, request_head


def command(server: str, port: int, scratch: Path) -> list[str]:
    if server.startswith("gunicorn-"):
        worker = server.split("-", 1)[1]
        options = ["--threads", "4"] if worker == "gthread" else []
        if int(importlib.metadata.version("gunicorn").split(".")[0]) >= 27:
            # gunicorn 27 opens a control socket, by default in the home directory.
            options += ["--control-socket", str(scratch / "gunicorn.ctl")]
        return [
            sys.executable, "-m", "gunicorn", "-k", worker, *options, "-w", "1",
            "--timeout", "120", "-b", f"127.0.0.1:{port}", "tests.integrations.wsgi_app:app",
        ]  # fmt: skip
    return [sys.executable, "-m", "tests.integrations.wsgi_app", server, str(port)]


@pytest.fixture(scope="module", params=SERVERS)
def wsgi_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app under one server; yields ``127.0.0.1:port``. No view may fail: an error in
    a WebSocket route is logged with a traceback."""
    server: str = request.param
    port = free_port()
    scratch = tmp_path_factory.mktemp(server)
    with server_process(server, command(server, port, scratch), port) as address:
        yield address


def http_get(address: str, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=WAIT) as response:
        body: bytes = response.read()
        return body


# --------------------------------------------------------------------------- messages


def test_plain_http_on_the_same_port(wsgi_server: str) -> None:
    assert http_get(wsgi_server, "/") == b"plain HTTP still works\n"


def test_wskit_client_messages_compression_and_subprotocol(wsgi_server: str) -> None:
    big = os.urandom(1 << 20)
    with wskit.sync.connect(f"ws://{wsgi_server}/echo", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for message in ("hello ✓", b"\x00\xff", big, "x" * 200_000):
            ws.send(message)
            assert ws.recv(timeout=WAIT) == message
        before = ws.statistics().bytes_sent
        ws.send("compressible " * 10_000)
        assert ws.recv(timeout=WAIT) == "compressible " * 10_000
        assert ws.statistics().bytes_sent - before < 5_000
    with wskit.sync.connect(f"ws://{wsgi_server}/echo-plain") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send(b"uncompressed")
        assert ws.recv(timeout=WAIT) == b"uncompressed"


def test_websockets_client_messages_compression_and_subprotocol(wsgi_server: str) -> None:
    big = os.urandom(1 << 20)
    with peer_connect(
        f"ws://{wsgi_server}/echo", subprotocols=[Subprotocol("chat")], max_size=2 << 20
    ) as ws:
        assert ws.subprotocol == "chat"
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for message in ("hello ✓", b"\x00\xff", big):
            ws.send(message)
            assert ws.recv(timeout=WAIT) == message
    with peer_connect(f"ws://{wsgi_server}/echo-plain", compression=None) as ws:
        ws.send("plain")
        assert ws.recv(timeout=WAIT) == "plain"


# --------------------------------------------------------------------------- closing


def test_close_code_and_reason_from_the_client(wsgi_server: str) -> None:
    with wskit.sync.connect(f"ws://{wsgi_server}/echo", subprotocols=["chat"]) as ws:
        ws.send("hi")
        ws.recv(timeout=WAIT)
        ws.close(4001, "client says bye")
    deadline = time.monotonic() + WAIT
    while json.loads(http_get(wsgi_server, "/last-close")) != {
        "code": 4001,
        "reason": "client says bye",
    }:
        assert time.monotonic() < deadline, "the route did not see the client's close"
        time.sleep(0.05)


def test_close_code_and_reason_from_the_server(wsgi_server: str) -> None:
    with wskit.sync.connect(f"ws://{wsgi_server}/closer") as ws:
        ws.send("4002 server says bye")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert (info.value.code, info.value.reason) == (4002, "server says bye")
    with peer_connect(f"ws://{wsgi_server}/closer") as peer:
        peer.send("1001 going away")
        with pytest.raises(PeerClosed) as peer_info:
            peer.recv(timeout=WAIT)
        assert peer_info.value.rcvd is not None
        assert (peer_info.value.rcvd.code, peer_info.value.rcvd.reason) == (1001, "going away")


# --------------------------------------------------------------------------- bad input


def test_message_over_the_limit_closes_with_1009(wsgi_server: str) -> None:
    with wskit.sync.connect(f"ws://{wsgi_server}/echo-plain") as ws:
        ws.send(b"x" * 100_000)  # the route allows 64 KiB
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1009


def test_protocol_violation_closes_with_1002(wsgi_server: str) -> None:
    assert violation_close_code(wsgi_server, "/echo-plain") == 1002


def test_a_view_returning_at_once_after_the_close_sends_nothing_more(wsgi_server: str) -> None:
    """The view returns as soon as recv() raises, and the server then writes an HTTP
    response of its own on the socket: the client must see a clean close, never those bytes
    (which would parse as a frame with reserved bits: a 1002). Repeated: it is a race."""
    for _ in range(10):
        with wskit.sync.connect(f"ws://{wsgi_server}/bare", compression=None) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                # Over the route's limit: the server fails with 1009 at once, so the send
                # itself may already find the connection closed.
                ws.send("x" * 1001)
                ws.recv(timeout=WAIT)
            # 1009 received: no 1002 for bytes that are not a frame.
            assert info.value.code == 1009, info.value
            assert info.value.sent_code in (1009, None), info.value
        with wskit.sync.connect(f"ws://{wsgi_server}/bare", compression=None) as ws:
            ws.send("hi")
            assert ws.recv(timeout=WAIT) == "hi"
        assert (ws.close_code, ws.close_reason) == (1000, "")


# --------------------------------------------------------------------------- no socket


def test_a_server_that_hides_its_sockets_gets_a_clear_error() -> None:
    errors: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            accept(environ)
        except IntegrationError as exc:
            errors.append(exc)
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]

    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        with pytest.raises(wskit.exceptions.InvalidStatus) as info:
            wskit.sync.connect(f"ws://127.0.0.1:{server.server_port}/")
        assert info.value.response.status == 500
    finally:
        thread.join(WAIT)
        server.server_close()
    (error,) = errors
    assert "does not hand its connections over" in str(error)
    assert "werkzeug" in str(error) and "gunicorn" in str(error)


def test_request_head_rebuilds_the_request() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/chat room",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "wsgi.input": None,
    }
    head = request_head(environ).decode()
    assert head.startswith("GET /app/chat%20room?a=1 HTTP/1.1\r\n")
    assert "Host: example.com\r\n" in head and "Sec-Websocket-Key: dGhl" in head
    assert head.endswith("\r\n\r\n")
    assert request_head({**environ, "RAW_URI": "/raw?b=2"}).startswith(b"GET /raw?b=2 ")
    assert request_head(environ, "HTTP/1.1").startswith(b"GET /app/chat%20room?a=1 HTTP/1.1")

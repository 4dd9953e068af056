"""wskit's threads front end (wskit.sync) against websockets' threading implementation
(``websockets.sync``), in both directions, over real sockets on 127.0.0.1.

Each direction covers text and binary messages, 1 MiB messages, a fragmented message,
permessage-deflate on and off (negotiated on both ends, and the bytes on the wire), a
subprotocol, a close code and reason sent by either side, and a peer that sends a message over
wskit's ``max_size`` (1009).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect
from websockets.sync.server import serve as peer_serve
from websockets.typing import Subprotocol

import wskit.sync
from tests.interop import (
    CLOSE_CODE,
    COMPRESSED_BOUND,
    COMPRESSIBLE_SIZE,
    COMPRESSION,
    LARGE_MAX_SIZE,
    PEER_REASON,
    SMALL_MAX_SIZE,
    STEP,
    WSKIT_REASON,
    Payloads,
)
from wskit.exceptions import ConnectionClosed, ConnectionClosedError

TEXT_FRAGMENTS = ["fragmented ", "text ✓ ", "message"]


def wskit_echo(ws: wskit.sync.Connection) -> None:
    for message in ws:
        ws.send(message)


def peer_echo(ws: Any) -> None:
    with contextlib.suppress(PeerClosed):
        for message in ws:
            ws.send(message)


@contextlib.contextmanager
def wskit_server(handler: Callable[..., None], **kwargs: Any) -> Iterator[str]:
    """A wskit.sync server on a free port; yields its URL."""
    kwargs.setdefault("ping_interval", None)
    server = wskit.sync.serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.port}/"
    finally:
        server.shutdown(timeout=STEP)
        thread.join(STEP)


@contextlib.contextmanager
def websockets_server(handler: Callable[..., None], **kwargs: Any) -> Iterator[str]:
    """A websockets.sync server on a free port; yields its URL."""
    server = peer_serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
    finally:
        server.shutdown()
        thread.join(STEP)


# --------------------------------------------------------------------------- wskit server


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_websockets_client_messages(
    payloads: Payloads, compression: str | None
) -> None:
    with (
        wskit_server(wskit_echo, compression=compression, max_size=LARGE_MAX_SIZE) as url,
        peer_connect(url, compression=compression, max_size=LARGE_MAX_SIZE) as ws,
    ):
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (negotiated is not None) == (compression is not None)
        for message in (payloads.text, payloads.binary, payloads.text_1mib, payloads.binary_1mib):
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        ws.send(TEXT_FRAGMENTS)
        assert ws.recv(timeout=STEP) == "".join(TEXT_FRAGMENTS)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_compression_on_the_wire(payloads: Payloads, compression: str | None) -> None:
    sizes: list[int] = []

    def handler(ws: wskit.sync.Connection) -> None:
        before = ws.statistics().bytes_received
        ws.send("ready")  # the peer sends once this is counted: nothing is read before it
        message = ws.recv(timeout=STEP)
        sizes.append(ws.statistics().bytes_received - before)
        ws.send(message)

    with (
        wskit_server(handler, compression=compression) as url,
        peer_connect(url, compression=compression) as ws,
    ):
        assert ws.recv(timeout=STEP) == "ready"
        ws.send(payloads.compressible)
        assert ws.recv(timeout=STEP) == payloads.compressible
    (wire,) = sizes
    if compression:
        assert wire < COMPRESSED_BOUND
    else:
        assert wire > COMPRESSIBLE_SIZE


def test_wskit_server_subprotocol_and_close_from_each_side() -> None:
    seen: list[tuple[str | None, int | None, str | None]] = []

    def handler(ws: wskit.sync.Connection) -> None:
        if ws.recv(timeout=STEP) == "close please":
            ws.close(CLOSE_CODE, WSKIT_REASON)
        else:
            with contextlib.suppress(ConnectionClosed):
                ws.recv(timeout=STEP)
        seen.append((ws.subprotocol, ws.close_code, ws.close_reason))

    with wskit_server(handler, subprotocols=["chat.v2"]) as url:
        offer = [Subprotocol("chat.v1"), Subprotocol("chat.v2")]
        with peer_connect(url, subprotocols=offer) as ws:
            assert ws.subprotocol == "chat.v2"
            ws.send("close please")
            with pytest.raises(PeerClosed) as info:
                ws.recv(timeout=STEP)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (CLOSE_CODE, WSKIT_REASON)
        with peer_connect(url) as ws:
            ws.send("wait")
            ws.close(CLOSE_CODE, PEER_REASON)
    # websockets echoes the close reason; its client offers no subprotocol the second time.
    assert seen == [("chat.v2", CLOSE_CODE, WSKIT_REASON), (None, CLOSE_CODE, PEER_REASON)]


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_server_closes_an_oversized_message_with_1009(
    payloads: Payloads, compression: str | None
) -> None:
    with (
        wskit_server(wskit_echo, compression=compression, max_size=SMALL_MAX_SIZE) as url,
        peer_connect(url, compression=compression) as ws,
    ):
        ws.send(payloads.oversized(compression))
        with pytest.raises(PeerClosed) as info:
            ws.recv(timeout=STEP)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# --------------------------------------------------------------------------- wskit client


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_websockets_server_messages(
    payloads: Payloads, compression: str | None
) -> None:
    with (
        websockets_server(peer_echo, compression=compression, max_size=LARGE_MAX_SIZE) as url,
        wskit.sync.connect(url, compression=compression, max_size=LARGE_MAX_SIZE) as ws,
    ):
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")  # type: ignore[union-attr]
        assert (negotiated is not None) == (compression is not None)
        for message in (payloads.text, payloads.binary, payloads.text_1mib, payloads.binary_1mib):
            ws.send(message)
            assert ws.recv(timeout=STEP) == message
        ws.send(TEXT_FRAGMENTS)
        assert ws.recv(timeout=STEP) == "".join(TEXT_FRAGMENTS)
        before = ws.statistics().bytes_sent
        ws.send(payloads.compressible)
        assert ws.recv(timeout=STEP) == payloads.compressible
        wire = ws.statistics().bytes_sent - before
        assert wire < COMPRESSED_BOUND if compression else wire > COMPRESSIBLE_SIZE


def test_wskit_client_subprotocol_and_close_from_each_side() -> None:
    def handler(ws: Any) -> None:
        with contextlib.suppress(PeerClosed):
            if ws.recv() == "close please":
                ws.close(CLOSE_CODE, PEER_REASON)
            else:
                ws.recv()

    with websockets_server(handler, subprotocols=[Subprotocol("chat.v2")]) as url:
        with wskit.sync.connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            ws.send("close please")
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=STEP)
            assert (info.value.code, info.value.reason) == (CLOSE_CODE, PEER_REASON)
        # websockets refuses a client that offers none of its subprotocols: offer one again.
        with wskit.sync.connect(url, subprotocols=["chat.v2"]) as ws:
            ws.send("wait")
            ws.close(CLOSE_CODE, WSKIT_REASON)
            assert (ws.close_code, ws.close_reason) == (CLOSE_CODE, WSKIT_REASON)


@pytest.mark.parametrize("compression", COMPRESSION)
def test_wskit_client_closes_on_an_oversized_message_with_1009(
    payloads: Payloads, compression: str | None
) -> None:
    def sender(ws: Any) -> None:
        with contextlib.suppress(PeerClosed):
            ws.send(payloads.oversized(compression))
            ws.recv()

    with (
        websockets_server(sender, compression=compression) as url,
        wskit.sync.connect(url, compression=compression, max_size=SMALL_MAX_SIZE) as ws,
    ):
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=STEP)
        assert info.value.sent_code == 1009

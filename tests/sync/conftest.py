"""A threads server for the tests of this folder, started and shut down around each use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from wskit.sync import Server, serve

#: Every blocking call of these tests is bounded by this (seconds): a hang fails the test.
WAIT = 10.0


@contextmanager
def running(handler: Callable[..., None], **kwargs: Any) -> Iterator[Server]:
    """``serve(handler, "127.0.0.1", 0, **kwargs)`` running in a thread; shut down after."""
    kwargs.setdefault("ping_interval", None)
    server = serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown(timeout=WAIT)
        thread.join(WAIT)
        assert not thread.is_alive(), "serve_forever() did not return after shutdown()"


@pytest.fixture
def echo_server() -> Iterator[Server]:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with running(echo) as server:
        yield server

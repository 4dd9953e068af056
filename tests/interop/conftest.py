"""Fixtures of the interoperability tests (helpers and constants live in ``__init__.py``).

No pytest plugin runs coroutines here: :func:`run` wraps ``asyncio.run`` with a deadline, so a
test that would hang fails with ``TimeoutError`` inside pytest-timeout's 120 s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

import wskit.asyncio
from tests.interop import TEST_DEADLINE, Payloads, build_payloads

T = TypeVar("T")


@pytest.fixture(scope="session")
def payloads() -> Payloads:
    """The shared messages, built once (1 MiB of random text takes a moment)."""
    return build_payloads()


@pytest.fixture
def run() -> Callable[..., Any]:
    """``run(main)`` runs the coroutine function ``main`` in a new event loop, with a deadline."""

    def run_(main: Callable[[], Awaitable[T]], timeout: float = TEST_DEADLINE) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(main(), timeout)

        return asyncio.run(bounded())

    return run_


class ThreadedServer:
    """A wskit server on its own event loop in a background thread, for blocking clients
    (selenium). ``port`` is where it listens once :meth:`start` returns."""

    def __init__(self, handler: Callable[..., Awaitable[None]], **kwargs: Any) -> None:
        self._handler = handler
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started: Future[int] = Future()
        self._thread = threading.Thread(target=self._main, name="wskit-interop-server")
        self.port = 0

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with wskit.asyncio.serve(self._handler, "127.0.0.1", 0, **self._kwargs) as server:
            self._started.set_result(server.port)
            await self._stop.wait()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self.port = self._started.result(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the wskit server thread did not stop"


@pytest.fixture
def threaded_server() -> Iterator[Callable[..., ThreadedServer]]:
    """``threaded_server(handler, **serve_kwargs)`` starts a :class:`ThreadedServer`; every
    server started this way is stopped at teardown."""
    servers: list[ThreadedServer] = []

    def start(handler: Callable[..., Awaitable[None]], **kwargs: Any) -> ThreadedServer:
        server = ThreadedServer(handler, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()

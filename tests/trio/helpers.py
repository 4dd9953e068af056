"""Helpers for the trio front end's tests: a runner with a deadline, raw peers made of a core
over a trio socket, and the census of tasks and sockets the cancellation tests compare."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from wskit.core import ClientConnection, State
from wskit.core.events import Event, Response
from wskit.core.limits import Limits

#: Seconds any one test may take before it fails (never a hang).
WAIT = 15.0


def run(test: Callable[..., Awaitable[Any]], *args: Any, clock: Any = None) -> Any:
    """``trio.run`` with a deadline: a hang fails the test instead of the run."""

    async def bounded() -> Any:
        with trio.fail_after(WAIT):
            return await test(*args)

    return trio.run(bounded, clock=clock)


def url(port: int | None, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


class RawClient:
    """A client core over a plain trio stream: the test decides what goes out, and when (or
    whether) to answer; nothing is answered behind its back."""

    def __init__(self, stream: trio.SocketStream, core: ClientConnection) -> None:
        self.stream = stream
        self.core = core

    @classmethod
    async def open(
        cls, port: int | None, path: str = "/", max_size: int | None = 1 << 20
    ) -> RawClient:
        core = ClientConnection(
            f"ws://127.0.0.1:{port}{path}", extensions=[], limits=Limits.for_size(max_size)
        )
        core.send_request()
        stream = await trio.open_tcp_stream("127.0.0.1", port or 0)
        await stream.send_all(b"".join(core.data_to_send()))
        while core.state is State.CONNECTING:
            data = await stream.receive_some(65536)
            assert data, "server closed during the handshake"
            core.receive_data(data)
        assert isinstance(core.events()[0], Response)
        return cls(stream, core)

    async def flush(self) -> None:
        data = self.core.data_to_send()
        if data:
            await self.stream.send_all(b"".join(data))

    async def next_events(self) -> list[Event]:
        """Read until the core has events (EOF counts)."""
        while True:
            events = self.core.events()
            if events:
                return events
            data = await self.stream.receive_some(65536)
            if data:
                self.core.receive_data(data)
            else:
                self.core.receive_eof()

    async def read_until_eof(self) -> list[Event]:
        events: list[Event] = []
        while data := await self.stream.receive_some(65536):
            self.core.receive_data(data)
            events.extend(self.core.events())
        self.core.receive_eof()
        events.extend(self.core.events())
        return events


def live_tasks() -> set[str]:
    """The names of every task alive in this trio run, but the test's own chain."""
    names: set[str] = set()
    current = trio.lowlevel.current_task()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        if task is not current:
            names.add(task.name)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return names


def open_sockets() -> int:
    """How many socket descriptors this process holds (from /proc/self/fd)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

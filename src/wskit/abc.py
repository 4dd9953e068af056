"""What applications may ask of a connection, whatever front end runs it.

Code in the application layer (:mod:`wskit.handlers`, and later pub/sub) types its connections
with these protocols rather than with one front end's class, so the same handler runs on every
front end that implements them (DESIGN rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from wskit.core.connection import State
from wskit.core.events import Request, Response

__all__ = ["CallbackConnection", "CallbackHandler", "ConnectionStatistics", "Data"]

#: A message: ``str`` for text, ``bytes`` for binary.
Data = str | bytes


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """A snapshot of one connection's counters (``statistics()`` on every front end's
    connection)."""

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    #: Messages received and waiting for ``recv()``.
    messages_queued: int
    #: Bytes accepted by ``send`` and not yet handed to the operating system.
    write_buffer_size: int
    #: The round-trip time of the last answered ping, in seconds.
    latency: float | None


class CallbackConnection(Protocol):
    """A connection driven from callbacks: every action returns at once, nothing awaits.

    Sends are written to the transport right away; above the write buffer's high-water mark
    they are still accepted (and buffered) and :attr:`writing_paused` is True: a producer that
    cares stops sending until its handler's ``on_resume_writing`` hook runs.
    """

    @property
    def state(self) -> State: ...

    @property
    def request(self) -> Request | None: ...

    @property
    def response(self) -> Response | None: ...

    @property
    def subprotocol(self) -> str | None: ...

    @property
    def remote_address(self) -> Any: ...

    @property
    def writing_paused(self) -> bool: ...

    def send_nowait(self, message: Data, *, compress: bool = True) -> None: ...

    def ping_nowait(self, data: bytes = b"") -> None: ...

    def close_nowait(self, code: int = 1000, reason: str = "") -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class CallbackHandler(Protocol):
    """What a front end calls on a class-based handler (:class:`wskit.handlers.Handler`).

    The front end sets :attr:`connection`, then calls ``on_open`` once, the other hooks as
    events arrive, and ``on_close`` once, last. Hooks run on the front end's read callback,
    so they must not block.
    """

    connection: CallbackConnection

    def on_open(self) -> None: ...

    def on_message(self, message: Data) -> None: ...

    def on_ping(self, payload: bytes) -> None: ...

    def on_pong(self, payload: bytes) -> None: ...

    def on_pause_writing(self) -> None: ...

    def on_resume_writing(self) -> None: ...

    def on_close(self, code: int, reason: str) -> None: ...

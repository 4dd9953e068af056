"""Class-based handlers: hooks run as events arrive, with no task per connection.

Subclass :class:`Handler`, override the hooks you need, and give the class to a front end
(``wskit.asyncio.serve(EchoHandler, host, port)`` or ``connect(url, handler=...)``). The front
end makes one instance per connection and calls its hooks from its read callback: a message
goes from the socket to ``on_message`` without waking a task, and ``send`` writes to the
transport at once. That is the cheapest way to run a WebSocket server in Python; the
await-style API (``recv``/``send``) remains the default and is easier to get right.

Hooks must not block: they run on the event loop. Work that has to wait belongs in a task the
hook starts (``asyncio.get_running_loop().create_task(...)`` on asyncio). An exception that
escapes a hook is logged and closes the connection with 1011 (internal error), as a failing
coroutine handler does.
"""

from __future__ import annotations

from wskit.abc import CallbackConnection, Data

__all__ = ["Handler"]


class Handler:
    """One connection's hooks. The front end sets :attr:`connection` before ``on_open``.

    Every hook does nothing by default, so a subclass overrides only what it needs::

        class Echo(Handler):
            def on_message(self, message: str | bytes) -> None:
                self.send(message)

    Hooks run in this order: ``on_open`` once; then ``on_message``, ``on_ping``, ``on_pong``,
    ``on_pause_writing`` and ``on_resume_writing`` as things happen; ``on_close`` once, last.
    A connection whose opening handshake fails never gets a handler.
    """

    #: The connection this handler serves (set by the front end before ``on_open``).
    connection: CallbackConnection

    # ------------------------------------------------------------------ hooks

    def on_open(self) -> None:
        """The opening handshake succeeded; messages may arrive and be sent from now on."""

    def on_message(self, message: Data) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_ping(self, payload: bytes) -> None:
        """A Ping arrived. Its Pong is sent automatically (RFC 6455 5.5.2)."""

    def on_pong(self, payload: bytes) -> None:
        """A Pong arrived (an answer to :meth:`ping`, a keepalive ping, or unsolicited)."""

    def on_pause_writing(self) -> None:
        """The write buffer went above its high-water mark: the peer reads slower than this
        side sends. Stop producing until :meth:`on_resume_writing`."""

    def on_resume_writing(self) -> None:
        """The write buffer drained below its low-water mark: sending may go on."""

    def on_close(self, code: int, reason: str) -> None:
        """The connection closed: ``code`` and ``reason`` of the peer's Close frame (1005
        when it carried no code, 1006 when there was no Close frame at all)."""

    # ------------------------------------------------------------------ actions

    def send(self, message: Data, *, compress: bool = True) -> None:
        """Send a message now: ``str`` as text, bytes-like as binary.

        From a hook, it is written after the last hook run for the same read, in one write
        with the other answers; from elsewhere (a timer, a task), at once. Raises
        :class:`~wskit.exceptions.ConnectionClosed` once the connection is closing. Never
        waits: check ``self.connection.writing_paused`` (or use the writing hooks) to avoid
        buffering without bound for a slow peer.
        """
        self.connection.send_nowait(message, compress=compress)

    def ping(self, payload: bytes = b"") -> None:
        """Send a Ping; its Pong arrives at :meth:`on_pong`."""
        self.connection.ping_nowait(payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; :meth:`on_close` runs when it is over."""
        self.connection.close_nowait(code, reason)

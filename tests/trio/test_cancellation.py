"""Cancellation at every stage of a trio connection: during the opening handshake, in
``recv``, in the middle of a large ``send`` and during ``aclose``. After each, no task and no
socket is left behind (a census of the run's tasks and of the process's socket descriptors
before and after), and the connection is in the documented state."""

from __future__ import annotations

import trio
import trio.testing

from tests.trio.helpers import RawClient, live_tasks, open_sockets, run, url
from wskit.core.events import Closed
from wskit.exceptions import ConnectionClosedError
from wskit.trio import Connection, WebSocketServerConnection, connect, serve


async def echo(ws: Connection) -> None:
    async for message in ws:
        await ws.send(message)


class Census:
    """The tasks and sockets alive when it was taken, to compare with later."""

    def __init__(self) -> None:
        self.tasks = live_tasks()
        self.sockets = open_sockets()

    @classmethod
    async def take(cls) -> Census:
        await trio.testing.wait_all_tasks_blocked()  # tasks just started are running
        return cls()

    async def assert_unchanged(self) -> None:
        await trio.testing.wait_all_tasks_blocked()
        assert live_tasks() == self.tasks
        assert open_sockets() == self.sockets


def test_cancel_during_the_opening_handshake() -> None:
    async def main() -> None:
        census = await Census.take()
        # Client side: a server that accepts TCP and never answers the request.
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        with trio.move_on_after(0.2) as scope:
            async with connect(url(port)):
                raise AssertionError("the handshake cannot succeed")
        assert scope.cancelled_caught
        # Same, with the connection's task meant for a nursery of mine.
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(0.2) as scope:
                await connect(url(port), nursery=nursery)
            assert scope.cancelled_caught
        for listener in listeners:
            await listener.aclose()
        await census.assert_unchanged()

        # Server side: a client that sends half a request; the server is cancelled.
        with trio.move_on_after(0.3) as scope:
            async with serve(echo, "127.0.0.1", 0) as server:
                stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert await stream.receive_some(100) == b""  # the server closed it
        await stream.aclose()
        await census.assert_unchanged()

    run(main)


def test_cancel_during_recv_loses_nothing_and_cancelling_the_nursery_closes() -> None:
    async def main() -> None:
        census = await Census.take()
        async with serve(echo, "127.0.0.1", 0) as server:
            server_census = await Census.take()
            async with trio.open_nursery() as nursery:
                ws = await connect(url(server.port), nursery=nursery)
                with trio.move_on_after(0.1) as scope:
                    await ws.recv()
                assert scope.cancelled_caught
                await ws.send("after the cancel")
                assert await ws.recv() == "after the cancel"  # not taken by the cancelled recv
                peer = next(iter(server.connections))
                nursery.cancel_scope.cancel()  # the connection's task goes with its nursery
            # The server saw TCP close without a closing handshake.
            with trio.fail_after(5):
                await peer.wait_closed()
            assert peer.close_code == 1006
            assert ws.close_code == 1006
            await server_census.assert_unchanged()
        await census.assert_unchanged()

    run(main)


def test_cancel_during_a_large_send_drops_the_connection() -> None:
    async def main() -> None:
        census = await Census.take()
        connection: list[WebSocketServerConnection] = []

        async def hold(ws: WebSocketServerConnection) -> None:
            connection.append(ws)
            await trio.sleep_forever()

        async with serve(hold, "127.0.0.1", 0) as server:
            raw = await RawClient.open(server.port)  # never reads: the send blocks
            while not connection:
                await trio.sleep(0.01)
            ws = connection[0]
            big = b"x" * (64 << 20)
            with trio.move_on_after(0.3) as scope:
                await ws.send(big)
            assert scope.cancelled_caught
            # Part of a frame went out: the connection cannot go on, and says so.
            assert ws.close_code == 1006
            try:
                await ws.send("more")
            except ConnectionClosedError as exc:
                assert exc.code == 1006
            else:
                raise AssertionError("a send after the broken one must fail")
            await raw.stream.aclose()

            # Cancelled while waiting for another send to finish: nothing was sent, and the
            # connection is intact.
            raw = await RawClient.open(server.port, max_size=None)  # reads when told to
            while len(connection) < 2:
                await trio.sleep(0.01)
            ws = connection[1]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.send, b"y" * (32 << 20))  # blocks: nobody reads
                await trio.testing.wait_all_tasks_blocked()
                with trio.move_on_after(0.1) as scope:
                    await ws.send("never sent")
                assert scope.cancelled_caught
                nursery.start_soon(ws.send, "sent")
                messages: list[object] = []
                while len(messages) < 2:
                    messages.extend(
                        event.data  # type: ignore[attr-defined]
                        for event in await raw.next_events()
                        if hasattr(event, "data")
                    )
            assert messages == [b"y" * (32 << 20), "sent"]
            await raw.stream.aclose()
        await census.assert_unchanged()

    run(main)


def test_cancel_during_aclose_closes_the_socket_at_once() -> None:
    async def main() -> None:
        census = await Census.take()
        connection: list[WebSocketServerConnection] = []

        async def hold(ws: WebSocketServerConnection) -> None:
            connection.append(ws)
            await trio.sleep_forever()

        async with serve(hold, "127.0.0.1", 0, close_timeout=60) as server:
            raw = await RawClient.open(server.port)  # never answers the Close
            while not connection:
                await trio.sleep(0.01)
            ws = connection[0]
            with trio.move_on_after(0.2) as scope:
                await ws.aclose()
            assert scope.cancelled_caught
            # The socket is gone now, not after close_timeout: the peer sees the Close frame,
            # then EOF.
            with trio.fail_after(2):
                events = await raw.read_until_eof()
            assert any(isinstance(event, Closed) for event in events)
            assert ws.close_code == 1006
            await raw.stream.aclose()
        await census.assert_unchanged()

    run(main)

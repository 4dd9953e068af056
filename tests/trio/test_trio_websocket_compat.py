"""trio-websocket's API on wskit (``wskit.trio_websocket``), against the real trio-websocket.

Every test runs real sockets on 127.0.0.1, in ``trio.run`` under ``trio.fail_after``. Where
the two libraries are meant to agree, the same thing is done with both and the results
compared; where trio-websocket has a defect, a test shows the defect on trio-websocket and
wskit's behaviour beside it (docs/trio_websocket.md quotes these).
"""

from __future__ import annotations

import gc
import inspect
import logging
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket as tw

import wskit.trio_websocket as compat
from wskit.core import ServerConnection, State
from wskit.core.events import Pong

#: Seconds any one test may take.
WAIT = 15.0

#: A fixed upgrade request, sent as is to both servers.
RAW_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    b"Origin: http://example.com\r\n"
    b"X-Custom:  spaced value  \r\n"
    b"x-lower: v\xe9\r\n"
    b"\r\n"
)


def run(test: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    async def bounded() -> Any:
        with trio.fail_after(WAIT):
            return await test(*args)

    return trio.run(bounded)


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so that an unclosed socket is reported by the test that
    left it (a ResourceWarning is an error here), not by a later one."""
    yield
    gc.collect()


def run_leaky(test: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """:func:`run` for the characterisations of trio-websocket where it leaves its socket
    unclosed (a timed-out or cancelled connection attempt): its ResourceWarning is ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return run(test, *args)
        finally:
            gc.collect()


def runner(*libs: Any) -> Callable[..., Any]:
    """:func:`run_leaky` when trio-websocket takes part, else the strict :func:`run`."""
    return run_leaky if tw in libs else run


LIBS = pytest.mark.parametrize("lib", [tw, compat], ids=["trio_websocket", "wskit"])


async def echo(request: Any) -> None:
    ws = await request.accept()
    while True:
        try:
            message = await ws.get_message()
            await ws.send_message(message)
        except (tw.ConnectionClosed, compat.ConnectionClosed):
            break


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data``; return everything the server sends until it closes (or 2 s pass)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    received = b""
    with trio.move_on_after(2):
        while chunk := await stream.receive_some(65536):
            received += chunk
    await stream.aclose()
    return received


async def deaf_server(stream: trio.SocketStream) -> None:
    """A server (the core over a socket) that accepts the handshake, then reads nothing: no
    Pong, no Close frame comes back."""
    core = ServerConnection()
    while core.request is None:
        core.receive_data(await stream.receive_some(65536))
    core.send_response(core.accept())
    await stream.send_all(b"".join(core.data_to_send()))
    await trio.sleep_forever()


# -- the API surface ---------------------------------------------------------------------------

PUBLIC = sorted(
    name
    for name in dir(tw)
    if not name.startswith("_") and not isinstance(getattr(tw, name), ModuleType)
)
#: Constructors that take wsproto objects in trio-websocket: users never call them (the
#: module's functions make these objects), and wskit's take wskit's connection instead.
INTERNAL_CONSTRUCTORS = {"WebSocketConnection"}


def assert_parameters_match(original: Any, ours: Any, what: str) -> None:
    """Same positional parameters, names, kinds and defaults; extras only keyword-only."""
    theirs = inspect.signature(original).parameters
    mine = inspect.signature(ours).parameters
    for name, param in theirs.items():
        assert name in mine, f"{what}: parameter {name} is missing"
        other = mine[name]
        assert other.kind == param.kind, f"{what}: {name} is {other.kind}, not {param.kind}"
        if param.default is inspect.Parameter.empty:
            assert other.default is inspect.Parameter.empty, f"{what}: {name} has a default"
        else:
            assert other.default == param.default, f"{what}: default of {name}"
    positional = [p.name for p in theirs.values() if p.kind is not p.KEYWORD_ONLY]
    assert [p.name for p in mine.values() if p.kind is not p.KEYWORD_ONLY] == positional, what
    for name, param in mine.items():
        if name not in theirs:
            assert param.kind is param.KEYWORD_ONLY, f"{what}: extra {name} is not keyword-only"
            assert param.default is not inspect.Parameter.empty, f"{what}: extra {name}"


def test_every_public_name_of_trio_websocket_exists() -> None:
    assert "open_websocket_url" in PUBLIC and "serve_websocket" in PUBLIC
    for name in PUBLIC:
        if name == "__version__":
            continue
        assert name in compat.__all__, name
        assert hasattr(compat, name), name


@pytest.mark.parametrize("name", [n for n in PUBLIC if callable(getattr(tw, n))])
def test_signature_parity(name: str) -> None:
    original = getattr(tw, name)
    ours = getattr(compat, name)
    if not inspect.isclass(original):
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(original), name
        assert_parameters_match(original, ours, name)
        return
    if "__init__" not in vars(original):
        assert "__init__" not in vars(ours), name  # Exception's constructor, in both
    elif name not in INTERNAL_CONSTRUCTORS:
        assert_parameters_match(original, ours, name)
    for attr, value in vars(original).items():
        if attr.startswith("_") and attr not in ("__str__", "__repr__"):
            continue
        assert hasattr(ours, attr), f"{name}.{attr} is missing"
        mine = inspect.getattr_static(ours, attr)
        if isinstance(value, property):
            assert isinstance(mine, property), f"{name}.{attr} is not a property"
        elif inspect.isfunction(value):
            assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(value), attr
            assert_parameters_match(value, mine, f"{name}.{attr}")


def test_constants_are_trio_websockets() -> None:
    from trio_websocket import _impl

    for name in ("CONN_TIMEOUT", "MESSAGE_QUEUE_SIZE", "MAX_MESSAGE_SIZE", "RECEIVE_BYTES"):
        assert getattr(compat, name) == getattr(_impl, name), name


def test_exception_tree_is_trio_websockets() -> None:
    names = ["HandshakeError", "ConnectionTimeout", "DisconnectionTimeout", "ConnectionRejected"]
    for name in [*names, "ConnectionClosed"]:
        theirs = [c.__name__ for c in getattr(tw, name).__mro__]
        ours = [c.__name__ for c in getattr(compat, name).__mro__]
        assert ours == theirs, name
    reason = compat.CloseReason(1001, "bye")
    exc = compat.ConnectionClosed(reason)
    assert exc.reason is reason and exc.args == (reason,)
    assert repr(exc) == repr(tw.ConnectionClosed(tw.CloseReason(1001, "bye")))
    rejected = compat.ConnectionRejected(403, ((b"a", b"b"),), b"no")
    assert (rejected.status_code, rejected.headers, rejected.body) == (403, ((b"a", b"b"),), b"no")
    assert repr(rejected) == repr(tw.ConnectionRejected(403, ((b"a", b"b"),), b"no"))


def test_close_reason_names_match_for_every_code() -> None:
    # 1000-1015 one by one, the reserved ranges and their edges, and what lies outside.
    for code in range(5001):
        theirs = tw.CloseReason(code, "why")
        ours = compat.CloseReason(code, "why")
        assert (ours.code, ours.name, ours.reason) == (theirs.code, theirs.name, theirs.reason)
    assert compat.CloseReason(1014, None).name == "RFC_RESERVED"
    assert compat.CloseReason(3000, None).name == "IANA_RESERVED"
    assert compat.CloseReason(4000, None).name == "PRIVATE_RESERVED"
    assert compat.CloseReason(5000, None).name == "INVALID_CODE"
    assert repr(compat.CloseReason(1000, None)) == repr(tw.CloseReason(1000, None))


@pytest.mark.parametrize(
    "args",
    [("127.0.0.1", 80, False), ("127.0.0.1", 8000, False), ("::1", 443, True), ("::1", 80, True)],
)
def test_endpoint_matches(args: tuple[str, int, bool]) -> None:
    theirs, ours = tw.Endpoint(*args), compat.Endpoint(*args)
    assert (ours.url, repr(ours), ours.address, ours.port) == (
        theirs.url,
        repr(theirs),
        theirs.address,
        theirs.port,
    )


# -- both ways between the two libraries ------------------------------------------------------


@pytest.mark.parametrize(
    ("server_lib", "client_lib"),
    [(compat, compat), (compat, tw), (tw, compat)],
    ids=["wskit-wskit", "wskit-server-tw-client", "tw-server-wskit-client"],
)
def test_messages_between_the_libraries(server_lib: Any, client_lib: Any) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Any) -> None:
        seen["subprotocols"] = request.proposed_subprotocols
        seen["path"] = request.path
        ws = await request.accept(subprotocol="two", extra_headers=[(b"X-Hello", b"there")])
        seen["server"] = (ws.is_server, ws.is_client, ws.path, ws.subprotocol, str(ws)[:7])
        seen["remote"] = ws.remote
        while True:
            try:
                message = await ws.get_message()
            except server_lib.ConnectionClosed:
                seen["server closed"] = ws.closed
                return
            await ws.send_message(message)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(server_lib.serve_websocket, handler, "127.0.0.1", 0, None)
            url = f"ws://127.0.0.1:{server.port}/a/path?q=1"
            async with client_lib.open_websocket_url(url, subprotocols=["one", "two"]) as ws:
                assert (ws.is_client, ws.is_server, ws.path, ws.subprotocol) == (
                    True,
                    False,
                    "/a/path?q=1",
                    "two",
                )
                assert (b"x-hello", b"there") in ws.handshake_headers
                assert all(name == name.lower() for name, _ in ws.handshake_headers)
                assert not {b"upgrade", b"connection", b"sec-websocket-accept"} & {
                    name for name, _ in ws.handshake_headers
                }
                assert str(ws).startswith("client-")
                assert ws.closed is None
                for message in ("hello", b"\x00\xff", "é" * 1000, b"x" * 300_000):
                    await ws.send_message(message)
                    assert await ws.get_message() == message
                assert ws.remote.port == server.port and ws.local.port == seen["remote"].port
                await ws.ping(b"abcd")
                await ws.ping()
                await ws.pong(b"unsolicited")
                await ws.aclose(4000, "done here")
                closed = ws.closed
                # wsproto echoes the reason with the code; wskit's core echoes the code only.
                assert (closed.code, closed.name, closed.reason) == (
                    4000,
                    "PRIVATE_RESERVED",
                    "done here" if server_lib is tw else None,
                )
                with pytest.raises(client_lib.ConnectionClosed):
                    await ws.get_message()
                with pytest.raises(client_lib.ConnectionClosed):
                    await ws.send_message("late")
                await ws.aclose()  # again: nothing happens
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert seen["subprotocols"] == ("one", "two")
        assert seen["path"] == "/a/path?q=1"
        assert seen["server"] == (True, False, "/a/path?q=1", "two", "server-")
        assert seen["server closed"].code == 4000
        assert seen["server closed"].reason == "done here"

    runner(server_lib, client_lib)(main)


def test_request_headers_are_the_same_on_both_servers() -> None:
    """A fixed request, byte for byte, then a real client of each library: the handler sees
    the same ``headers``, ``path`` and ``proposed_subprotocols`` from wskit as from
    trio-websocket."""

    async def collect(server_lib: Any) -> list[tuple[Any, ...]]:
        seen: list[tuple[Any, ...]] = []

        async def handler(request: Any) -> None:
            seen.append((request.headers, request.path, request.proposed_subprotocols))
            await request.accept()

        async with trio.open_nursery() as nursery:
            server = await nursery.start(server_lib.serve_websocket, handler, "127.0.0.1", 0, None)
            await raw_exchange(server.port, RAW_REQUEST + b"\x88\x82abcd" + bytes([0x62, 0xEB]))
            for client_lib in (tw, compat):
                async with client_lib.open_websocket(
                    "127.0.0.1",
                    server.port,
                    "/x",
                    use_ssl=False,
                    subprotocols=["p"],
                    extra_headers=[(b"X-Extra", b"1"), (b"Cookie", b"a=b")],
                ):
                    pass
            nursery.cancel_scope.cancel()
        return seen

    def masked(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(n, b"*" if n == b"sec-websocket-key" else v) for n, v in headers]

    theirs = run_leaky(collect, tw)
    ours = run_leaky(collect, compat)
    assert len(ours) == len(theirs) == 3
    assert ours[0] == theirs[0]  # the raw request: identical, key and all
    assert ours[0][0][-1] == (b"x-lower", b"v\xe9")
    assert ours[0][1:] == ("/chat?room=1", ("chat", "superchat"))
    for mine, other in zip(ours[1:], theirs[1:], strict=True):
        assert (masked(mine[0]), mine[1:]) == (masked(other[0]), other[1:])


# -- opening errors ----------------------------------------------------------------------------


@LIBS
def test_unreachable_server_is_a_handshake_error_caused_by_oserror(lib: Any) -> None:
    async def main() -> None:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nobody listens there
        with pytest.raises(lib.HandshakeError) as caught:
            async with lib.open_websocket("127.0.0.1", port, "/", use_ssl=False):
                pass  # pragma: no cover
        assert type(caught.value) is lib.HandshakeError
        assert isinstance(caught.value.__cause__, OSError)
        async with trio.open_nursery() as nursery:
            with pytest.raises(OSError):
                await lib.connect_websocket(nursery, "127.0.0.1", port, "/", use_ssl=False)

    runner(lib)(main)


async def open_against_a_silent_server(lib: Any) -> tuple[str, float]:
    """Open a connection, with ``connect_timeout=0.3``, to a server that accepts TCP and then
    says nothing; give up after 3 s. What happened, and when."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    start = trio.current_time()
    outcome = "still waiting after 3 s"
    async with listeners[0]:
        with trio.move_on_after(3):
            try:
                async with lib.open_websocket_url(f"ws://127.0.0.1:{port}/", connect_timeout=0.3):
                    pass  # pragma: no cover
            except lib.ConnectionTimeout:
                outcome = "ConnectionTimeout"
    return outcome, trio.current_time() - start


def test_silent_server_trio_websocket_ignores_connect_timeout() -> None:
    """Characterisation of trio-websocket 0.12.2: the timeout fires, but ``open_websocket``
    then waits for its reader task, still blocked reading the silent socket."""
    outcome, elapsed = run_leaky(open_against_a_silent_server, tw)
    assert outcome == "still waiting after 3 s" and elapsed >= 3


def test_silent_server_wskit_raises_connection_timeout() -> None:
    outcome, elapsed = run(open_against_a_silent_server, compat)
    assert outcome == "ConnectionTimeout" and 0.3 <= elapsed < 2


def test_bad_urls_raise_value_error() -> None:
    for url in ("http://example.com/", "ws:///nohost"):
        for lib in (tw, compat):
            with pytest.raises(ValueError):
                lib.open_websocket_url(url)
    with pytest.raises(ValueError):
        compat.open_websocket_url("ws://example.com/", ssl.create_default_context())
    with pytest.raises(TypeError):
        compat.open_websocket("example.com", 80, "/", use_ssl="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("server_lib", "client_lib"), [(compat, tw), (tw, compat), (compat, compat)]
)
def test_reject_is_seen_as_connection_rejected(server_lib: Any, client_lib: Any) -> None:
    async def handler(request: Any) -> None:
        if request.path == "/body":
            await request.reject(403, extra_headers=[(b"X-Why", b"no")], body=b"go away")
        else:
            await request.reject(401)

    async def main() -> list[Any]:
        caught = []
        async with trio.open_nursery() as nursery:
            server = await nursery.start(server_lib.serve_websocket, handler, "127.0.0.1", 0, None)
            for path in ("/body", "/"):
                with pytest.raises(client_lib.ConnectionRejected) as info:
                    async with client_lib.open_websocket_url(f"ws://127.0.0.1:{server.port}{path}"):
                        pass  # pragma: no cover
                rejected = info.value
                caught.append((rejected.status_code, rejected.headers, rejected.body))
                del info, rejected  # their tracebacks hold trio-websocket's unclosed socket
            nursery.cancel_scope.cancel()
        return caught

    (status, headers, body), (status_2, headers_2, body_2) = runner(server_lib, client_lib)(main)
    assert (status, body) == (403, b"go away")
    assert (b"x-why", b"no") in headers
    assert (b"content-length", b"7") in headers
    assert all(name == name.lower() for name, _ in headers)
    assert (status_2, body_2) == (401, b"")
    assert (b"content-length", b"0") in headers_2


@LIBS
def test_a_rejected_client_closes_its_socket_in_wskit_only(lib: Any) -> None:
    async def refuse(request: Any) -> None:
        await request.reject(403)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(compat.serve_websocket, refuse, "127.0.0.1", 0, None)
            with pytest.raises(lib.ConnectionRejected):
                async with lib.open_websocket_url(f"ws://127.0.0.1:{server.port}/"):
                    pass  # pragma: no cover
            nursery.cancel_scope.cancel()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run(main)
        gc.collect()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert bool(leaked) == (lib is tw), leaked


# -- no ExceptionGroup -------------------------------------------------------------------------


@LIBS
def test_no_exception_group_escapes_open_websocket(lib: Any) -> None:
    async def closing(request: Any) -> None:
        ws = await request.accept()
        await ws.aclose(1001, "bye")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lib.serve_websocket, echo, "127.0.0.1", 0, None)
            url = f"ws://127.0.0.1:{server.port}/"
            with pytest.raises(KeyError) as caught:
                async with lib.open_websocket_url(url) as ws:
                    await ws.send_message("x")
                    raise KeyError("from the body")
            assert type(caught.value) is KeyError
            closer = await nursery.start(lib.serve_websocket, closing, "127.0.0.1", 0, None)
            with pytest.raises(lib.ConnectionClosed) as closed:
                async with lib.open_websocket_url(f"ws://127.0.0.1:{closer.port}/") as ws:
                    await ws.get_message()
            assert type(closed.value) is lib.ConnectionClosed
            assert closed.value.reason.code == 1001
            nursery.cancel_scope.cancel()

    runner(lib)(main)


# -- closing -----------------------------------------------------------------------------------


@LIBS
def test_a_peer_that_never_answers_close_is_a_disconnection_timeout(lib: Any) -> None:
    """A server (the core over a socket) that accepts, then ignores the client's Close."""

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, deaf_server, 0)
            port = listeners[0].socket.getsockname()[1]
            start = trio.current_time()
            with pytest.raises(lib.DisconnectionTimeout):
                async with lib.open_websocket(
                    "127.0.0.1", port, "/", use_ssl=False, disconnect_timeout=0.3
                ):
                    pass
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
        return elapsed

    assert 0.3 <= runner(lib)(main) < 3


def test_aclose_from_wskit_is_bounded_by_disconnect_timeout() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, deaf_server, listeners)
            port = listeners[0].socket.getsockname()[1]
            ws = await compat.connect_websocket(
                nursery, "127.0.0.1", port, "/", use_ssl=False, disconnect_timeout=0.2
            )
            with trio.fail_after(2):
                await ws.aclose()  # returns, TCP dropped, no exception outside open_websocket
            # The code this side sent, as trio-websocket reports it; TCP is gone.
            assert ws.closed is not None and ws.closed.code == 1000
            assert ws._ws.state is State.CLOSED
            nursery.cancel_scope.cancel()

    run(main)


# -- connection methods ------------------------------------------------------------------------


def test_send_message_refuses_other_types_and_ping_refuses_duplicates() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, deaf_server, 0)
            port = listeners[0].socket.getsockname()[1]
            ws = await compat.connect_websocket(
                nursery, "127.0.0.1", port, "/", use_ssl=False, disconnect_timeout=0.1
            )
            for bad in (bytearray(b"x"), memoryview(b"x"), 1, None):
                with pytest.raises(ValueError):
                    await ws.send_message(bad)
            # The server never answers: the first ping waits while the second one asks.
            async with trio.open_nursery() as pings:
                pings.start_soon(ws.ping, b"same")
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(ValueError, match="already in flight"):
                    await ws.ping(b"same")
                pings.cancel_scope.cancel()
            await ws.aclose()
            with pytest.raises(compat.ConnectionClosed):
                await ws.ping(b"other")
            nursery.cancel_scope.cancel()

    run(main)


@LIBS
def test_get_message_after_a_local_close_raises_at_once(lib: Any) -> None:
    async def chatty(request: Any) -> None:
        ws = await request.accept()
        await ws.send_message("unread")
        await ws.get_message()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lib.serve_websocket, chatty, "127.0.0.1", 0, None)
            async with lib.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await trio.sleep(0.2)  # "unread" arrived
                await ws.aclose()
                with pytest.raises(lib.ConnectionClosed):
                    await ws.get_message()
            nursery.cancel_scope.cancel()

    runner(lib)(main)


def test_several_tasks_may_wait_in_get_message() -> None:
    async def two(request: Any) -> None:
        ws = await request.accept()
        await ws.send_message("a")
        await ws.send_message("b")
        await ws.get_message()

    async def main() -> None:
        got: list[str | bytes] = []
        async with trio.open_nursery() as nursery:
            server = await nursery.start(compat.serve_websocket, two, "127.0.0.1", 0, None)
            async with compat.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:

                async def reader() -> None:
                    got.append(await ws.get_message())

                async with trio.open_nursery() as readers:
                    readers.start_soon(reader)
                    readers.start_soon(reader)
            nursery.cancel_scope.cancel()
        assert sorted(got) == ["a", "b"]  # type: ignore[type-var]

    run(main)


# -- the server --------------------------------------------------------------------------------


def test_handler_errors_trio_websocket_closes_1000_and_stops_serving() -> None:
    """Characterisation of trio-websocket 0.12.2: the client sees a normal close (1000) and the
    handler's exception ends ``serve_websocket`` (in nested ExceptionGroups)."""

    async def failing(request: Any) -> None:
        await request.accept()
        raise ValueError("boom")

    async def main() -> tuple[Any, bool]:
        closed = None
        try:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(tw.serve_websocket, failing, "127.0.0.1", 0, None)
                async with tw.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                    with pytest.raises(tw.ConnectionClosed):
                        await ws.get_message()
                    closed = ws.closed
                await trio.sleep(1)  # the server crashes meanwhile
                nursery.cancel_scope.cancel()  # pragma: no cover
        except BaseException as group:  # an ExceptionGroup (exceptiongroup's before 3.11)
            return closed, group.subgroup(ValueError) is not None  # type: ignore[attr-defined]
        return closed, False  # pragma: no cover

    closed, crashed_with_the_handlers_error = run_leaky(main)
    assert closed.code == 1000
    assert crashed_with_the_handlers_error


@LIBS
def test_handler_errors_wskit_closes_1011_and_serves_on(
    lib: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(request: Any) -> None:
        ws = await request.accept()
        if await ws.get_message() == "fail":
            raise ValueError("boom")
        await ws.send_message("fine")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(compat.serve_websocket, failing, "127.0.0.1", 0, None)
            url = f"ws://127.0.0.1:{server.port}/"
            for _ in range(2):
                async with lib.open_websocket_url(url) as ws:
                    await ws.send_message("fail")
                    with pytest.raises(lib.ConnectionClosed):
                        await ws.get_message()
                    assert ws.closed.code == 1011
                    assert ws.closed.name == "INTERNAL_ERROR"
                async with lib.open_websocket_url(url) as ws:  # the server serves on
                    await ws.send_message("ok")
                    assert await ws.get_message() == "fine"
            nursery.cancel_scope.cancel()

    caplog.set_level(logging.ERROR, logger="wskit.trio_websocket")
    runner(lib)(main)
    failures = [r for r in caplog.records if r.getMessage() == "connection handler failed"]
    assert len(failures) == 2
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in failures)


def test_handler_that_neither_accepts_nor_rejects() -> None:
    """trio-websocket drops TCP without an answer, and its own client does not notice: it
    waits for ``connect_timeout``. wskit answers 500, which both clients report at once."""

    async def undecided(request: Any) -> None:
        pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            theirs = await nursery.start(tw.serve_websocket, undecided, "127.0.0.1", 0, None)
            assert await raw_exchange(theirs.port, RAW_REQUEST) == b""
            start = trio.current_time()
            with pytest.raises(tw.ConnectionTimeout):
                async with tw.open_websocket_url(
                    f"ws://127.0.0.1:{theirs.port}/", connect_timeout=0.5
                ):
                    pass  # pragma: no cover
            assert trio.current_time() - start >= 0.5

            ours = await nursery.start(compat.serve_websocket, undecided, "127.0.0.1", 0, None)
            answer = await raw_exchange(ours.port, RAW_REQUEST)
            assert answer.startswith(b"HTTP/1.1 500 ")
            for client in (tw, compat):
                with pytest.raises(client.ConnectionRejected) as caught:
                    async with client.open_websocket_url(f"ws://127.0.0.1:{ours.port}/"):
                        pass  # pragma: no cover
                assert caught.value.status_code == 500
            nursery.cancel_scope.cancel()

    run_leaky(main)


def test_invalid_upgrade_never_reaches_the_handler() -> None:
    calls: list[Any] = []

    async def handler(request: Any) -> None:
        calls.append(request)  # pragma: no cover

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(compat.serve_websocket, handler, "127.0.0.1", 0, None)
            bad = RAW_REQUEST.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
            answer = await raw_exchange(server.port, bad)
            nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 426 ")

    run(main)
    assert calls == []


def test_websocket_server_on_own_listeners_with_a_handler_nursery() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery, trio.open_nursery() as handlers:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            server = compat.WebSocketServer(echo, listeners, handler_nursery=handlers)
            assert await nursery.start(server.run) is server
            (endpoint,) = server.listeners
            assert isinstance(endpoint, compat.Endpoint)
            assert (str(endpoint.address), endpoint.is_ssl) == ("127.0.0.1", False)
            assert server.port == endpoint.port == listeners[0].socket.getsockname()[1]
            async with compat.open_websocket_url(endpoint.url + "/") as ws:
                await ws.send_message("via the handler nursery")
                assert await ws.get_message() == "via the handler nursery"
            nursery.cancel_scope.cancel()
            handlers.cancel_scope.cancel()
        with pytest.raises(ValueError):
            compat.WebSocketServer(echo, [])
        two = await trio.open_tcp_listeners(0, host="127.0.0.1")
        two += await trio.open_tcp_listeners(0, host="127.0.0.1")
        with pytest.raises(RuntimeError):
            _ = compat.WebSocketServer(echo, two).port
        for listener in two:
            await listener.aclose()

    run(main)


def test_wrap_client_stream_and_wrap_server_stream() -> None:
    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def server_side() -> None:
                stream = await listeners[0].accept()
                request = await compat.wrap_server_stream(nursery, stream)
                assert request.path == "/wrapped"
                assert (b"x-via", b"wrap") in request.headers
                ws = await request.accept()
                await ws.send_message(await ws.get_message())
                await ws.aclose(1001)

            nursery.start_soon(server_side)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            ws = await compat.wrap_client_stream(
                nursery, stream, "example.com", "/wrapped", extra_headers=[(b"X-Via", b"wrap")]
            )
            await ws.send_message("round trip")
            assert await ws.get_message() == "round trip"
            with pytest.raises(compat.ConnectionClosed):
                await ws.get_message()  # the server side closed
            assert ws.closed is not None and ws.closed.code == 1001
            await ws.aclose()
            await listeners[0].aclose()

    run(main)


def test_tls_both_ways() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for server_lib, client_lib in ((compat, tw), (tw, compat), (compat, compat)):
                server = await nursery.start(
                    server_lib.serve_websocket, echo, "127.0.0.1", 0, server_context
                )
                assert server.listeners[0].is_ssl
                url = f"wss://127.0.0.1:{server.port}/"
                async with client_lib.open_websocket_url(url, client_context) as ws:
                    assert ws.remote.is_ssl and ws.remote.url == url.rstrip("/")
                    await ws.send_message("secret")
                    assert await ws.get_message() == "secret"
            nursery.cancel_scope.cancel()

    run_leaky(main)


# -- the defects wskit does not have -----------------------------------------------------------


async def unread_then_ping(client_lib: Any) -> bool:
    """A server (the core over a socket) sends three messages and a ping in one write to a
    client that reads none: True if the client's pong comes within a second."""
    answered: list[bool] = []

    async def pusher(stream: trio.SocketStream) -> None:
        core = ServerConnection()
        while core.request is None:
            core.receive_data(await stream.receive_some(65536))
        core.send_response(core.accept())
        for n in range(3):
            core.send_text(f"message {n}")
        core.send_ping(b"still there?")
        await stream.send_all(b"".join(core.data_to_send()))
        with trio.move_on_after(1):
            while not answered:
                data = await stream.receive_some(65536)
                if not data:
                    break
                core.receive_data(data)
                answered.extend(isinstance(event, Pong) for event in core.events())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, pusher, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.move_on_after(1.5):
            async with client_lib.open_websocket_url(f"ws://127.0.0.1:{port}/"):
                await trio.sleep_forever()  # reads nothing; the queue size is the default, 1
        nursery.cancel_scope.cancel()
    return any(answered)


def test_full_queue_trio_websocket_leaves_pings_unanswered() -> None:
    """trio-websocket #82: its reader blocks on the full queue in the middle of the frames it
    read, so the ping that came with the messages is never answered."""
    assert run_leaky(unread_then_ping, tw) is False


def test_full_queue_wskit_still_answers_pings() -> None:
    """wskit handles every frame of a read before it stops reading."""
    assert run(unread_then_ping, compat) is True


@LIBS
def test_max_message_size_counts_bytes_in_wskit_characters_in_trio_websocket(lib: Any) -> None:
    received: list[str] = []

    async def keep(request: Any) -> None:
        ws = await request.accept()
        try:
            received.append(await ws.get_message())
        except lib.ConnectionClosed:
            received.append(f"closed {ws.closed.code}")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools_partial(lib.serve_websocket, max_message_size=10),
                keep,
                "127.0.0.1",
                0,
                None,
            )
            async with compat.open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send_message("é" * 6)  # 6 characters, 12 bytes in UTF-8
                await trio.sleep(0.3)
            nursery.cancel_scope.cancel()

    runner(lib)(main)
    assert received == (["é" * 6] if lib is tw else ["closed 1009"])


def functools_partial(function: Any, **kwargs: Any) -> Any:
    import functools

    return functools.partial(function, **kwargs)


def test_compression_and_keepalive_are_keyword_extras() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools_partial(compat.serve_websocket, compression="deflate"),
                echo,
                "127.0.0.1",
                0,
                None,
            )
            url = f"ws://127.0.0.1:{server.port}/"
            async with compat.open_websocket_url(url, compression="deflate") as ws:
                assert ws._ws.response is not None
                assert "permessage-deflate" in ws._ws.response.headers["Sec-WebSocket-Extensions"]
                await ws.send_message("z" * 10_000)
                assert await ws.get_message() == "z" * 10_000
                assert ws._ws.core.bytes_received < 1000  # it came compressed
            async with compat.open_websocket_url(url) as ws:  # off by default, as in the original
                assert ws._ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws._ws.response.headers
            async with compat.open_websocket_url(url, ping_interval=0.1) as ws:
                before = ws._ws.core.bytes_received
                await trio.sleep(0.5)
                assert ws._ws.core.bytes_received > before  # pongs to the keepalive pings
                assert ws._ws.state is State.OPEN
            nursery.cancel_scope.cancel()

    run(main)

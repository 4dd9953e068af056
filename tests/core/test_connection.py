"""The connection state machine: RFC 6455 byte vectors both ways, violations, closing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.helpers import FEED_MODES, drain, exchange, feed, open_pair
from wskit.core import ClientConnection, Limits, ServerConnection, State, frames
from wskit.core import connection as connection_module
from wskit.core.connection import MAX_PENDING_PONGS, TRANSITIONS
from wskit.core.events import Binary, Closed, Ping, Pong, Text
from wskit.core.extensions import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from wskit.core.frames import MessageBufferLike, encode_frame, serialize_close
from wskit.exceptions import LocalProtocolError, PayloadTooBig, RemoteProtocolError

MASK = bytes((0x37, 0xFA, 0x21, 0x3D))


@pytest.fixture
def fixed_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the client's masking key to RFC 6455 5.7's example key.

    Small frames are built by ``build_frame`` (the compiled one draws keys in C): the pure
    twin takes its key from ``frames.new_mask``, pinned here too.
    """
    monkeypatch.setattr(connection_module, "new_mask", lambda: MASK)
    monkeypatch.setattr(frames, "new_mask", lambda: MASK)
    monkeypatch.setattr(connection_module, "build_frame", frames.build_frame_py)


def masked(frame_header: bytes, payload: bytes) -> bytes:
    """A client frame: header with the MASK bit, RFC 5.7's key, masked payload."""
    b0, b1 = frame_header[0], frame_header[1] | 0x80
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((b0, b1)) + frame_header[2:] + MASK + body


# --------------------------------------------------------------------------- RFC 6455 5.7


@pytest.mark.parametrize("how", FEED_MODES)
def test_rfc_unmasked_text_to_client(how: str) -> None:
    client, _ = open_pair()
    assert feed(client, bytes.fromhex("810548656c6c6f"), how) == [Text("Hello")]


@pytest.mark.parametrize("how", FEED_MODES)
def test_rfc_masked_text_to_server(how: str) -> None:
    _, server = open_pair()
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert feed(server, data, how) == [Text("Hello")]


@pytest.mark.parametrize("how", FEED_MODES)
def test_rfc_fragmented_text(how: str) -> None:
    client, _ = open_pair()
    data = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert feed(client, data, how) == [Text("Hello")]


@pytest.mark.parametrize("how", FEED_MODES)
def test_rfc_ping_and_pong(how: str) -> None:
    client, server = open_pair()
    assert feed(client, bytes.fromhex("890548656c6c6f"), how) == [Ping(b"Hello")]
    # The automatic pong is masked: check it by feeding it to the server.
    assert exchange(client, server) == [Pong(b"Hello")]
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert feed(server, pong, how) == [Pong(b"Hello")]


@pytest.mark.parametrize("how", FEED_MODES)
@pytest.mark.parametrize(("size", "header"), [(256, "827e0100"), (65536, "827f0000000000010000")])
def test_rfc_binary_lengths(how: str, size: int, header: str) -> None:
    client, server = open_pair()
    payload = bytes(range(256)) * (size // 256)
    data = bytes.fromhex(header) + payload
    assert feed(client, data, how if size == 256 else "whole") == [Binary(payload)]
    server.send_binary(payload)
    assert drain(server) == data


def test_rfc_send_vectors(fixed_mask: None) -> None:
    client, server = open_pair()
    server.send_text("Hello")
    assert drain(server) == bytes.fromhex("810548656c6c6f")
    client.send_text("Hello")
    assert drain(client) == bytes.fromhex("818537fa213d7f9f4d5158")
    client.send_pong(b"Hello")
    assert drain(client) == bytes.fromhex("8a8537fa213d7f9f4d5158")
    server.send_text("Hel", fin=False)
    server.send_continuation("lo", fin=True)
    assert drain(server) == bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")


def test_length_encodings_are_minimal() -> None:
    _, server = open_pair()
    for size, header_len in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]:
        server.send_binary(b"x" * size)
        assert len(drain(server)) == size + header_len


# --------------------------------------------------------------------------- violations


def failed_with(events: list[object], code: int) -> Closed:
    closed = [e for e in events if isinstance(e, Closed)]
    assert len(closed) == 1, events
    assert closed[0].sent_code == code, closed[0]
    assert isinstance(closed[0].cause, RemoteProtocolError)
    assert closed[0].cause.code == code
    return closed[0]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes.fromhex("810548656c6c6f"), 1002),  # unmasked frame to a server
        (masked(bytes.fromhex("c105"), b"Hello"), 1002),  # RSV1 without extension
        (masked(bytes.fromhex("a105"), b"Hello"), 1002),  # RSV2
        (masked(bytes.fromhex("9105"), b"Hello"), 1002),  # RSV3
        (masked(bytes.fromhex("8300"), b""), 1002),  # reserved data opcode 3
        (masked(bytes.fromhex("8b00"), b""), 1002),  # reserved control opcode B
        (masked(bytes.fromhex("097e007e"), b"x" * 126), 1002),  # control frame > 125
        (masked(bytes.fromhex("0900"), b""), 1002),  # fragmented ping
        (masked(bytes.fromhex("8003"), b"abc"), 1002),  # continuation with nothing to continue
        (
            masked(bytes.fromhex("0103"), b"abc") + masked(bytes.fromhex("8103"), b"abc"),
            1002,
        ),  # new message inside a fragmented one
        (masked(bytes.fromhex("8102"), b"\xc3\x28"), 1007),  # invalid UTF-8
        (masked(bytes.fromhex("8801"), b"\x03"), 1002),  # 1-byte close payload
        (masked(bytes.fromhex("8803"), b"\x03\xe8\xff"), 1002),  # close reason not UTF-8
    ],
)
@pytest.mark.parametrize("how", ["whole", "bytes"])
def test_protocol_violations_fail_the_connection(data: bytes, code: int, how: str) -> None:
    _, server = open_pair()
    events = feed(server, data, how)
    failed_with(events, code)
    out = drain(server)
    assert out.startswith(bytes((0x88,))) and int.from_bytes(out[2:4], "big") == code
    assert server.should_close()
    assert server.state is State.CLOSED
    # Input after a failure is ignored.
    server.receive_data(masked(bytes.fromhex("8103"), b"abc"))
    assert server.events() == []


def test_violation_after_a_message_is_held_until_the_message_is_handled() -> None:
    # Autobahn 3.2 / 4.1.3 / 5.15: a valid message, then a bad frame, in one read. The message
    # comes out first and the failure waits for the next receive_data() call, so the
    # application can answer the message before the Close frame goes out.
    _, server = open_pair()
    data = masked(bytes.fromhex("8102"), b"ok") + masked(bytes.fromhex("a100"), b"")
    assert feed(server, data) == [Text("ok")]
    assert server.input_held and server.state is State.OPEN
    server.send_text("ok")
    assert drain(server) == bytes.fromhex("81026f6b")
    server.receive_data(b"")
    failed_with(server.events(), 1002)
    assert not server.input_held


def test_violation_after_a_message_that_ends_a_partial_frame_is_held() -> None:
    # Autobahn 4.1.5 sends byte by byte: one read may finish a message whose frame began in an
    # earlier read and also carry the whole header of a bad frame.
    _, server = open_pair()
    text = masked(bytes.fromhex("8102"), b"ok")
    bad = masked(bytes.fromhex("8702"), b"xx")
    assert feed(server, text[:-1]) == []
    assert feed(server, text[-1:] + bad) == [Text("ok")]
    assert server.input_held and server.state is State.OPEN
    server.receive_data(b"")
    failed_with(server.events(), 1002)


def test_violation_first_in_a_read_fails_at_once() -> None:
    _, server = open_pair()
    data = masked(bytes.fromhex("a100"), b"") + masked(bytes.fromhex("8102"), b"ok")
    failed_with(feed(server, data), 1002)
    assert not server.input_held


def test_hold_errors_holds_a_violation_in_a_later_read() -> None:
    # Autobahn 4.1.5: the bad frame arrives in a read of its own, while the application is
    # still answering the message before it; the I/O layer says so with hold_errors.
    _, server = open_pair()
    assert feed(server, masked(bytes.fromhex("8102"), b"ok")) == [Text("ok")]
    server.hold_errors = True
    assert feed(server, masked(bytes.fromhex("8602"), b"xx")) == []
    assert server.input_held
    assert server.release_held()  # the application answered: fail on the held frame now
    assert not server.hold_errors and not server.input_held
    failed_with(server.events(), 1002)
    assert drain(server).startswith(bytes.fromhex("881503ea"))  # its Close frame: 1002, a reason
    assert not server.release_held()  # nothing held any more: a no-op


def test_release_held_without_a_held_frame_only_ends_the_hold() -> None:
    _, server = open_pair()
    server.hold_errors = True
    assert feed(server, masked(bytes.fromhex("8102"), b"ok")) == [Text("ok")]
    assert not server.release_held()
    assert not server.hold_errors and server.state is State.OPEN
    assert server.events() == [] and drain(server) == b""
    # With the hold over, a bad frame in a read of its own fails at once.
    failed_with(feed(server, masked(bytes.fromhex("8602"), b"xx")), 1002)


def test_a_held_frame_is_dropped_when_the_connection_ends_first() -> None:
    # EOF (or a local failure) while a bad frame is held: input is ignored from then on, so
    # nothing stays held and release_held() has nothing to do (a front end that looped on
    # "input_held, release it" recursed forever here).
    for end in ("eof", "fail"):
        _, server = open_pair()
        server.hold_errors = True
        assert feed(server, masked(bytes.fromhex("8602"), b"xx")) == [] and server.input_held
        if end == "eof":
            server.receive_eof()
        else:
            server.fail(1011, "keepalive ping timeout")
        assert not server.input_held and server.state is State.CLOSED
        assert not server.release_held()
        assert [type(event) for event in server.events()] == [Closed]


def test_held_input_is_bounded() -> None:
    _, server = open_pair()
    server.hold_errors = True
    bad = masked(bytes.fromhex("a100"), b"")
    assert feed(server, bad) == [] and server.input_held
    # The peer keeps sending behind the bad frame: past MAX_HELD_BYTES, fail at once.
    failed_with(feed(server, bytes(connection_module.MAX_HELD_BYTES)), 1002)


def test_invalid_utf8_fails_inside_an_incomplete_frame() -> None:
    # Autobahn 6.4.3: one 21-byte frame arrives in pieces; the invalid sequence in the second
    # piece fails the connection before the rest of the frame is sent.
    _, server = open_pair()
    payload = bytes.fromhex("cebae1bdb9cf83cebcceb5f4908080656469746564")
    frame = masked(bytes((0x81, len(payload))), payload)
    assert feed(server, frame[: 6 + 11]) == []
    assert server.state is State.OPEN
    failed_with(feed(server, frame[17:21]), 1007)


def test_large_frame_is_consumed_as_it_arrives() -> None:
    client, _ = open_pair()
    payload = bytes(range(256)) * 400
    frame = bytes.fromhex("827f") + len(payload).to_bytes(8, "big") + payload
    for how in ("whole", "random-2"):
        assert feed(client, frame, how) == [Binary(payload)]
        assert len(client._buf) == 0


def record_buffers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the message buffers the connections create from now on."""
    sizes: list[int] = []
    real = connection_module.MessageBuffer

    def recording(size: int) -> MessageBufferLike:
        sizes.append(size)
        return real(size)

    monkeypatch.setattr(connection_module, "MessageBuffer", recording)
    return sizes


@pytest.mark.parametrize("role", ["server", "client"])
def test_large_binary_frame_is_assembled_in_one_buffer(
    monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    # The header gives the exact length: one buffer of that size, filled as pieces arrive.
    sizes = record_buffers(monkeypatch)
    client, server = open_pair()
    payload = bytes(range(256)) * 800
    frame = encode_frame(0x2, payload, mask=role == "server")
    conn = server if role == "server" else client
    for how in ("whole", "random-2"):
        sizes.clear()
        # A piece that holds the header and the start of the payload, then the rest.
        events = feed(conn, frame[:1000], how) + feed(conn, frame[1000:], "whole")
        assert events == [Binary(payload)]
        assert sizes == [len(payload)]
        assert conn._rx_buffer is None and not conn._buf
    assert conn.messages_received == 2


def test_message_buffer_only_for_a_binary_message_in_one_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Text keeps its incremental UTF-8 check; fragments of a message keep their list of
    # parts; stream mode hands pieces out as they come; whole frames need no buffer.
    sizes = record_buffers(monkeypatch)
    client, _ = open_pair()
    text = "\u00e9" * 50_000
    data = encode_frame(0x1, text.encode())
    data += encode_frame(0x2, b"a" * 50_000, fin=False) + encode_frame(0x0, b"b" * 50_000)
    assert feed(client, data, "random-1") == [Text(text), Binary(b"a" * 50_000 + b"b" * 50_000)]
    assert feed(client, encode_frame(0x2, b"c" * 100)) == [Binary(b"c" * 100)]
    streaming, _ = open_pair(client_kwargs={"stream": True})
    events = feed(streaming, encode_frame(0x2, b"d" * 50_000), "random-1")
    assert b"".join(e.data for e in events if isinstance(e, Binary)) == b"d" * 50_000
    assert sizes == []


def test_large_message_then_violation_in_one_read_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    # The read that completes a buffered message also holds a bad frame: the message comes
    # out first, the failure waits (as for messages assembled from parts).
    sizes = record_buffers(monkeypatch)
    _, server = open_pair()
    payload = b"x" * 100_000
    frame = encode_frame(0x2, payload, mask=True)
    bad = masked(bytes.fromhex("8702"), b"xx")
    assert feed(server, frame[:5000]) == []
    assert feed(server, frame[5000:] + bad) == [Binary(payload)]
    assert sizes == [len(payload)]
    assert server.input_held and server.state is State.OPEN
    server.receive_data(b"")
    failed_with(server.events(), 1002)


def test_invalid_utf8_still_fails_inside_a_large_text_frame() -> None:
    # RFC 6455 8.1: fail at the first invalid byte, before the rest of the frame arrives.
    _, server = open_pair()
    payload = b"a" * 70_000 + b"\xff" + b"a" * 70_000
    frame = encode_frame(0x1, payload, mask=True)
    assert feed(server, frame[:60_000]) == []
    failed_with(feed(server, frame[60_000:80_000]), 1007)


def test_masked_frame_to_client_fails() -> None:
    client, _ = open_pair()
    failed_with(feed(client, masked(bytes.fromhex("8103"), b"abc")), 1002)
    assert client.should_close()


def test_64bit_length_high_bit_fails() -> None:
    client, _ = open_pair()
    failed_with(feed(client, bytes.fromhex("827f8000000000000000")), 1002)


def test_invalid_utf8_fails_mid_fragment() -> None:
    # The first fragment already holds a byte that can start no valid sequence: fail at once,
    # without waiting for the final fragment (RFC 6455 8.1, Autobahn 6.4.x).
    client, _ = open_pair()
    events = feed(client, bytes.fromhex("0104") + b"ab\xf8c")
    failed_with(events, 1007)


def test_utf8_split_inside_a_character_is_fine() -> None:
    client, _ = open_pair()
    euro = "€".encode()
    data = bytes((0x01, 1)) + euro[:1] + bytes((0x00, 1)) + euro[1:2] + bytes((0x80, 1)) + euro[2:]
    assert feed(client, data) == [Text("€")]


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_fail_with_1002(code: int) -> None:
    _, server = open_pair()
    failed_with(feed(server, masked(bytes.fromhex("8802"), code.to_bytes(2, "big"))), 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes_are_echoed(code: int) -> None:
    client, server = open_pair()
    client.send_close(code, "bye")
    (closed,) = exchange(client, server)
    assert closed == Closed(code, "bye", code, "")
    assert closed.ok is (code in (1000, 1001))
    assert drain(server) == bytes((0x88, 2)) + code.to_bytes(2, "big")


# --------------------------------------------------------------------------- limits


def test_frame_over_limit_is_refused_from_its_header() -> None:
    client, _ = open_pair(client_kwargs={"limits": Limits.for_size(1000)})
    # Only the header of a 2000-byte frame: refused before any payload arrives.
    closed = failed_with(feed(client, bytes.fromhex("827e07d0")), 1009)
    assert isinstance(closed.cause, PayloadTooBig)


@pytest.mark.parametrize(
    "limits",
    [
        Limits.for_size(100_000),
        Limits(max_message_size=100_000, max_frame_size=None),
        Limits(max_message_size=None, max_frame_size=100_000),
    ],
)
@pytest.mark.parametrize("role", ["server", "client"])
def test_large_frame_over_limit_fails_before_any_buffer(
    monkeypatch: pytest.MonkeyPatch, limits: Limits, role: str
) -> None:
    # The declared length is checked before a buffer of that length is allocated.
    sizes = record_buffers(monkeypatch)
    mask = role == "server"
    for size, fails in ((100_001, True), (100_000, False)):
        client, server = open_pair(
            client_kwargs={"limits": limits}, server_kwargs={"limits": limits}
        )
        conn = server if mask else client
        frame = encode_frame(0x2, b"z" * size, mask=mask)
        events = feed(conn, frame[:50_000])
        if fails:
            closed = failed_with(events, 1009)
            assert isinstance(closed.cause, PayloadTooBig)
            assert sizes == []
        else:
            assert events == [] and sizes == [100_000]
            assert feed(conn, frame[50_000:]) == [Binary(b"z" * size)]


def test_message_over_limit_across_fragments() -> None:
    client, _ = open_pair(client_kwargs={"limits": Limits(max_message_size=1000)})
    data = bytes.fromhex("027e0258") + b"x" * 600 + bytes.fromhex("807e0258")
    events = feed(client, data)
    failed_with(events, 1009)


def test_fragment_count_limit() -> None:
    client, _ = open_pair(client_kwargs={"limits": Limits(max_fragments=3)})
    ok = bytes.fromhex("0200") + bytes.fromhex("0000") + bytes.fromhex("8000")
    assert feed(client, ok) == [Binary(b"")]
    bad = bytes.fromhex("0200") + bytes.fromhex("0000") * 3
    failed_with(feed(client, bad), 1009)


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_message_size=0)
    assert Limits(max_message_size=None).max_message_size is None


# --------------------------------------------------------------------------- ping / pong


def test_ping_flood_is_coalesced() -> None:
    client, _ = open_pair()
    pings = b"".join(bytes((0x89, 1, i)) for i in range(MAX_PENDING_PONGS + 10))
    events = feed(client, pings)
    assert len(events) == MAX_PENDING_PONGS + 10
    out = drain(client)
    # Only the latest MAX_PENDING_PONGS are answered; each masked pong is 7 bytes.
    assert len(out) == MAX_PENDING_PONGS * 7
    # Each pong is 0x8a 0x81, a 4-byte key, one masked byte: the oldest pings were dropped.
    assert out[6] ^ out[2] == 10
    assert out[-1] ^ out[-5] == MAX_PENDING_PONGS + 9


def test_no_pong_after_close_sent() -> None:
    _, server = open_pair()
    server.send_close()
    drain(server)
    server.receive_data(masked(bytes.fromhex("8901"), b"x"))
    assert server.events() == [Ping(b"x")]
    assert drain(server) == b""


def test_control_frames_between_fragments() -> None:
    client, _ = open_pair()
    data = bytes.fromhex("0102") + b"ab" + bytes.fromhex("8900") + bytes.fromhex("8001") + b"c"
    assert feed(client, data) == [Ping(b""), Text("abc")]


def test_close_in_the_middle_of_a_fragmented_message_is_echoed() -> None:
    # Autobahn 7.1.5: a Close between fragments is a normal close (1000), not an error.
    _, server = open_pair()
    data = masked(bytes.fromhex("0102"), b"ab") + masked(bytes.fromhex("8802"), b"\x03\xe8")
    (closed,) = feed(server, data)
    assert closed == Closed(1000, "", 1000, "") and closed.ok


# --------------------------------------------------------------------------- closing handshake


def test_closing_handshake_client_initiated() -> None:
    client, server = open_pair()
    client.send_close(1000, "done")
    assert client.state is State.CLOSING and client.close_expected()
    assert not client.should_close()
    (closed,) = exchange(client, server)
    assert closed == Closed(1000, "done", 1000, "")
    assert server.state is State.CLOSED and server.should_close()
    (closed,) = exchange(server, client)
    assert closed == Closed(1000, "", 1000, "done") and closed.ok
    # RFC 6455 7.1.1: the server closes TCP first; the client waits for it.
    assert not client.should_close()
    client.receive_eof()
    assert client.events() == [] and client.should_close()


def test_empty_close_is_echoed_empty() -> None:
    client, server = open_pair()
    client.send_close(None)
    (closed,) = exchange(client, server)
    assert closed.code == 1005 and closed.ok
    assert drain(server) == bytes.fromhex("8800")


def test_eof_without_close_is_abnormal() -> None:
    client, _ = open_pair()
    client.receive_eof()
    (closed,) = client.events()
    assert closed.code == 1006 and not closed.ok


def test_illegal_calls_raise_local_protocol_error() -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError):
        client.send_ping(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        client.send_close(1005)
    with pytest.raises(LocalProtocolError):
        client.send_close(1000, "x" * 124)
    with pytest.raises(LocalProtocolError):
        client.send_continuation("x", fin=True)
    client.send_text("a", fin=False)
    with pytest.raises(LocalProtocolError):
        client.send_binary(b"b")
    with pytest.raises(LocalProtocolError):
        client.send_continuation(b"b", fin=True)
    client.send_close()
    with pytest.raises(LocalProtocolError):
        client.send_text("late")
    with pytest.raises(LocalProtocolError):
        client.send_close()


def test_fail_during_the_handshake_closes_without_a_close_frame() -> None:
    for conn in (ClientConnection("ws://example.com/"), ServerConnection()):
        conn.fail(1011, "timeout")
        (closed,) = conn.events()
        assert closed.code == 1006 and closed.sent_code is None
        assert conn.state is State.CLOSED and conn.should_close()
        assert conn.data_to_send() == []


def test_payloads_must_be_bytes_like() -> None:
    # bytes(5) would be five zero bytes: an int must not become a payload.
    client, server = open_pair()
    for call in (
        lambda: server.send_binary(5),  # type: ignore[arg-type]
        lambda: server.send_ping(5),  # type: ignore[arg-type]
        lambda: server.send_pong("text"),  # type: ignore[arg-type]
        lambda: connection_module.encode_message(3),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError):
            call()
    server.send_binary(b"a", fin=False)
    with pytest.raises(TypeError):
        server.send_continuation(7, fin=True)  # type: ignore[arg-type]
    server.send_continuation(memoryview(b"b"), fin=True)
    server.send_binary(bytearray(b"c"))
    assert feed(client, drain(server)) == [Binary(b"ab"), Binary(b"c")]


def test_transition_table_covers_every_state() -> None:
    sources = {state for state, _ in TRANSITIONS}
    assert sources == {State.CONNECTING, State.OPEN, State.CLOSING}
    assert all(target >= source for (source, _), target in TRANSITIONS.items())


# --------------------------------------------------------------------------- sending


def test_outgoing_messages_are_split() -> None:
    client, server = open_pair(server_kwargs={"fragment_size": 4})
    server.send_binary(b"0123456789")
    frames = drain(server)
    assert frames == (
        bytes.fromhex("0204")
        + b"0123"
        + bytes.fromhex("0004")
        + b"4567"
        + bytes.fromhex("8002")
        + b"89"
    )
    assert feed(client, frames) == [Binary(b"0123456789")]


def test_encode_message_once_for_many_servers() -> None:
    frame = connection_module.encode_message("Hello")
    assert frame == bytes.fromhex("810548656c6c6f")
    assert connection_module.encode_message(b"\x00") == bytes.fromhex("820100")
    pairs = [open_pair() for _ in range(3)]
    for client, server in pairs:
        server.send_encoded(frame)
        assert exchange(server, client) == [Text("Hello")]
        assert server.messages_sent == 1
    client, server = pairs[0]
    with pytest.raises(LocalProtocolError):
        client.send_encoded(frame)  # a client masks every frame itself
    server.send_binary(b"part", fin=False)
    with pytest.raises(LocalProtocolError):
        server.send_encoded(frame)  # would interleave with the fragmented message
    server.finish_message()
    server.send_close()
    with pytest.raises(LocalProtocolError):
        server.send_encoded(frame)


def test_large_payload_is_not_copied_behind_its_header() -> None:
    _, server = open_pair()
    payload = b"x" * 100_000
    server.send_binary(payload)
    header, body = server.data_to_send()
    assert body is payload and len(header) == 10


def test_stream_mode_hands_out_fragments() -> None:
    client, _ = open_pair(client_kwargs={"stream": True})
    data = bytes.fromhex("0102") + b"ab" + bytes.fromhex("0000") + bytes.fromhex("8001") + b"c"
    assert feed(client, data) == [Text("ab", False), Text("c", True)]
    data = bytes.fromhex("0202") + b"ab" + bytes.fromhex("8001") + b"c"
    assert feed(client, data) == [Binary(b"ab", False), Binary(b"c", True)]


# --------------------------------------------------------------------------- compression


def deflate_pair(**limits: int) -> tuple[ClientConnection, ServerConnection]:
    return open_pair(
        client_kwargs={
            "extensions": [ClientPerMessageDeflateFactory()],
            "limits": Limits(**limits) if limits else Limits(),
        },
        server_kwargs={"extensions": [ServerPerMessageDeflateFactory()]},
    )


def test_compressed_messages_both_ways() -> None:
    client, server = deflate_pair()
    assert client.extensions and server.extensions
    text = "hello compression " * 100
    server.send_text(text)
    wire = drain(server)
    assert wire[0] & 0x40 and len(wire) < len(text) // 4
    assert feed(client, wire) == [Text(text)]
    client.send_binary(text.encode())
    assert exchange(client, server) == [Binary(text.encode())]
    server.send_text(text, compress=False)
    wire = drain(server)
    assert not wire[0] & 0x40
    assert feed(client, wire) == [Text(text)]


def test_compression_option_names_the_factories() -> None:
    from wskit.core.extensions import extension_factories

    (factory,) = extension_factories("deflate", ServerPerMessageDeflateFactory)
    assert isinstance(factory, ServerPerMessageDeflateFactory)
    assert extension_factories(None, ServerPerMessageDeflateFactory) == []
    custom = ClientPerMessageDeflateFactory(client_no_context_takeover=True)
    assert extension_factories([custom], ClientPerMessageDeflateFactory) == [custom]
    with pytest.raises(ValueError):
        extension_factories("brotli", ClientPerMessageDeflateFactory)


def test_deflate_bomb_is_refused_without_inflating() -> None:
    client, server = deflate_pair(max_message_size=1 << 20)
    server.send_binary(bytes(50 << 20))  # 50 MiB of zeros: ~50 KiB on the wire
    wire = drain(server)
    assert len(wire) < 100_000
    failed_with(feed(client, wire), 1009)


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["whole", "bytes", "random-1"]))
def test_arbitrary_input_never_raises(data: bytes, how: str) -> None:
    """Any input is parsed, or fails the connection with a documented close code."""
    for role in ("client", "server"):
        client, server = open_pair(
            client_kwargs={"limits": Limits.for_size(100)},
            server_kwargs={"limits": Limits.for_size(100)},
        )
        conn = client if role == "client" else server
        events = feed(conn, data, how)
        for event in events:
            if isinstance(event, Closed) and event.cause is not None:
                assert event.sent_code in (1002, 1007, 1009)
        drain(conn)


def test_frames_from_encode_frame_roundtrip() -> None:
    client, _ = open_pair()
    data = encode_frame(0x2, b"abc") + encode_frame(0x8, serialize_close(1001, "bye"))
    assert feed(client, data) == [Binary(b"abc"), Closed(1001, "bye", 1001, "")]


def client_sends_binary(size: int) -> tuple[ServerConnection, bytes, list[bytes], int]:
    """A client sends ``size`` bytes (limits of 2 MiB both ways): the server, the payload,
    the buffers the client hands out and the growth of its ``bytes_sent``."""
    limits = Limits.for_size(2 << 20)
    client, server = open_pair({"limits": limits}, {"limits": limits})
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sent_before = client.bytes_sent
    client.send_binary(payload)
    return server, payload, client.data_to_send(), client.bytes_sent - sent_before


@pytest.mark.parametrize("size", [4097, 30_000, connection_module.MASK_CHUNK])
def test_a_client_frame_up_to_mask_chunk_is_one_buffer(size: int) -> None:
    """Header, key and masked payload in one buffer: one write, no join in the I/O layer."""
    server, payload, out, sent = client_sends_binary(size)
    assert [len(piece) for piece in out] == [(4 if size < 65536 else 10) + 4 + size]
    assert sent == len(out[0])
    assert feed(server, out[0], "random-1") == [Binary(payload)]


@pytest.mark.parametrize("size", [connection_module.MASK_CHUNK + 1, 3 * 65536 + 3, 1 << 20])
def test_a_large_client_frame_is_masked_in_pieces(size: int) -> None:
    """Above MASK_CHUNK a client hands out its masked payload in pieces of that size (no
    megabyte-sized copy), and the server unmasks the same message."""
    server, payload, out, sent = client_sends_binary(size)
    chunk = connection_module.MASK_CHUNK
    assert [len(piece) for piece in out[1:]] == [
        min(chunk, size - start) for start in range(0, size, chunk)
    ]
    assert len(out[0]) == 2 + 8 + 4  # the header: 64-bit length and the masking key
    assert sent == sum(len(piece) for piece in out)
    wire = b"".join(out)
    events = []
    for start in range(0, len(wire), 4099):  # pieces that straddle the client's pieces
        server.receive_data(wire[start : start + 4099])
        events += server.events()
    assert events == [Binary(payload)]


def test_a_101_not_made_by_accept_is_refused_before_anything_is_queued() -> None:
    # The caller can still answer: nothing of the refused response was queued or recorded.
    client = ClientConnection("ws://example.com/")
    client.send_request()
    server = ServerConnection()
    server.receive_data(drain(client))
    (request,) = server.events()
    assert request.target == "/"  # type: ignore[union-attr]
    forged = server.reject(101)
    with pytest.raises(LocalProtocolError, match="accept"):
        server.send_response(forged)
    assert server.data_to_send() == []
    assert server.response is None
    assert server.state is State.CONNECTING
    server.send_response(server.reject(500, "sorry"))
    assert drain(server).startswith(b"HTTP/1.1 500 ")
    assert server.state is State.CLOSED

"""permessage-deflate (RFC 7692): byte vectors, round trips, limits, negotiation, interop."""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections.abc import Sequence

import pytest
from zlib_ng import zlib_ng  # the "test" extra installs it (wskit's "speed" extra uses it)

from wskit.core import extensions
from wskit.core.extensions import (
    ClientExtensionFactory,
    ClientPerMessageDeflateFactory,
    Extension,
    ExtensionParameter,
    PerMessageDeflate,
    ServerExtensionFactory,
    ServerPerMessageDeflateFactory,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from wskit.core.extensions.permessage_deflate import (
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_SERVER_MAX_WINDOW_BITS,
)
from wskit.core.frames import OP_BINARY, OP_CONT, OP_TEXT, RSV1, RSV2, Frame
from wskit.exceptions import NegotiationError, PayloadTooBig, RemoteProtocolError

TAIL = b"\x00\x00\xff\xff"
WINDOWS = range(8, 16)
MiB = 1024 * 1024


def deflate(
    remote_nct: bool = False,
    local_nct: bool = False,
    remote_bits: int = 15,
    local_bits: int = 15,
    threshold: int = 0,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=remote_nct,
        local_no_context_takeover=local_nct,
        remote_max_window_bits=remote_bits,
        local_max_window_bits=local_bits,
        threshold=threshold,
    )


def pair(nct: bool = False, bits: int = 15, threshold: int = 0) -> tuple[PerMessageDeflate, ...]:
    """A sender and a receiver that agree on one direction's parameters."""
    sender = deflate(local_nct=nct, local_bits=bits, threshold=threshold)
    receiver = deflate(remote_nct=nct, remote_bits=bits, threshold=threshold)
    return sender, receiver


def parse_frame(raw: bytes) -> Frame:
    """Parse one unmasked frame with a 7-bit length, as the RFC 7692 examples are written."""
    b0, b1 = raw[0], raw[1]
    assert not b1 & 0x80 and (b1 & 0x7F) == len(raw) - 2
    return Frame(b0 & 0x0F, raw[2:], bool(b0 & 0x80), b0 & 0x70)


def send(sender: PerMessageDeflate, opcode: int, fragments: Sequence[bytes]) -> list[Frame]:
    frames = []
    for i, data in enumerate(fragments):
        frame = Frame(opcode if i == 0 else OP_CONT, data, i == len(fragments) - 1)
        frames.append(sender.encode(frame))
    return frames


def receive(receiver: PerMessageDeflate, frames: Sequence[Frame]) -> bytes:
    return b"".join(receiver.decode(frame).data for frame in frames)


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


TEXT = (
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    b"incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud. "
) * 40


# -- RFC 7692 section 7.2.3 examples ---------------------------------------------------------


def test_rfc_one_compressed_block() -> None:
    # 7.2.3.1: "Hello" compressed in one frame.
    frame = parse_frame(bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]))
    assert frame.rsv1
    decoded = deflate().decode(frame)
    assert decoded == Frame(OP_TEXT, b"Hello", True, 0)


def test_rfc_one_compressed_block_fragmented() -> None:
    # 7.2.3.1: the same message in two fragments; only the first has RSV1.
    frames = [
        parse_frame(bytes([0x41, 0x03, 0xF2, 0x48, 0xCD])),
        parse_frame(bytes([0x80, 0x04, 0xC9, 0xC9, 0x07, 0x00])),
    ]
    ext = deflate()
    first, second = (ext.decode(frame) for frame in frames)
    assert (first.opcode, first.fin, first.rsv) == (OP_TEXT, False, 0)
    assert (second.opcode, second.fin, second.rsv) == (OP_CONT, True, 0)
    assert first.data + second.data == b"Hello"


SECOND_HELLO = bytes([0xC1, 0x05, 0xF2, 0x00, 0x11, 0x00, 0x00])
FIRST_HELLO = bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])


def test_rfc_sharing_window() -> None:
    # 7.2.3.2: the second "Hello" refers back into the first message.
    ext = deflate()
    assert ext.decode(parse_frame(FIRST_HELLO)).data == b"Hello"
    assert ext.decode(parse_frame(SECOND_HELLO)).data == b"Hello"


def test_rfc_sharing_window_refused_without_context_takeover() -> None:
    # Under server_no_context_takeover the window is dropped, so the back reference is invalid.
    ext = deflate(remote_nct=True)
    ext.decode(parse_frame(FIRST_HELLO))
    with pytest.raises(RemoteProtocolError) as info:
        ext.decode(parse_frame(SECOND_HELLO))
    assert info.value.code == 1002
    assert not isinstance(info.value, PayloadTooBig)


def test_rfc_encoder_matches_vectors() -> None:
    ext = deflate()
    assert ext.encode(Frame(OP_TEXT, b"Hello")) == parse_frame(FIRST_HELLO)
    assert ext.encode(Frame(OP_TEXT, b"Hello")) == parse_frame(SECOND_HELLO)


def test_rfc_stored_block() -> None:
    # 7.2.3.3: a DEFLATE block with no compression.
    raw = bytes([0xC1, 0x0B, 0x00, 0x05, 0x00, 0xFA, 0xFF, 0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x00])
    assert deflate().decode(parse_frame(raw)).data == b"Hello"


def test_rfc_bfinal_block() -> None:
    # 7.2.3.4: a block with BFINAL set ends the DEFLATE stream; later messages still work.
    raw = bytes([0xC1, 0x08, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
    ext = deflate()
    assert ext.decode(parse_frame(raw)).data == b"Hello"
    assert ext.decode(parse_frame(FIRST_HELLO)).data == b"Hello"
    assert ext.decode(parse_frame(raw)).data == b"Hello"


def test_rfc_two_blocks() -> None:
    # 7.2.3.5: two DEFLATE blocks in one message.
    raw = bytes(
        [0xC1, 0x0D, 0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00]
    )
    assert deflate().decode(parse_frame(raw)).data == b"Hello"


def test_rfc_empty_fragment() -> None:
    # 7.2.3.6: the single octet 0x00 is an empty final fragment.
    ext = deflate()
    # A non-final fragment keeps its sync-flush marker 0x00 0x00 0xff 0xff.
    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00, 0x00, 0xFF, 0xFF])
    first = ext.decode(Frame(OP_TEXT, hello, False, RSV1))
    last = ext.decode(Frame(OP_CONT, b"\x00", True, 0))
    assert first.data + last.data == b"Hello"
    assert ext.decode(Frame(OP_BINARY, b"\x00", True, RSV1)).data == b""


# -- decoding rules --------------------------------------------------------------------------


def test_uncompressed_message_passes_through() -> None:
    ext = deflate()
    frames = [Frame(OP_TEXT, b"plain", False), Frame(OP_CONT, b" text", True)]
    for frame in frames:
        assert ext.decode(frame) is frame
    # The next compressed message is still decoded.
    assert ext.decode(parse_frame(FIRST_HELLO)).data == b"Hello"


def test_continuations_follow_their_message() -> None:
    ext = deflate()
    ext.decode(Frame(OP_TEXT, bytes([0xF2, 0x48, 0xCD]), False, RSV1))
    assert ext.decode(Frame(OP_CONT, bytes([0xC9, 0xC9, 0x07, 0x00]), True)).data == b"llo"
    # After the compressed message, a plain one's continuation is left alone.
    plain = Frame(OP_CONT, b"\xc9\xc9", True)
    ext.decode(Frame(OP_BINARY, b"x", False))
    assert ext.decode(plain) is plain


@pytest.mark.parametrize("compressed", [True, False])
def test_rsv1_on_continuation_is_protocol_error(compressed: bool) -> None:
    ext = deflate()
    ext.decode(
        Frame(OP_TEXT, bytes([0xF2, 0x48]) if compressed else b"He", False, RSV1 * compressed)
    )
    with pytest.raises(RemoteProtocolError) as info:
        ext.decode(Frame(OP_CONT, b"\xcd", True, RSV1))
    assert info.value.code == 1002


def test_corrupt_stream_is_protocol_error() -> None:
    ext = deflate()
    # BTYPE 11 is reserved: "invalid block type".
    with pytest.raises(RemoteProtocolError) as info:
        ext.decode(Frame(OP_BINARY, b"\xff\xff\xff", True, RSV1))
    assert info.value.code == 1002
    assert type(info.value) is RemoteProtocolError


def test_other_rsv_bits_are_kept() -> None:
    ext = deflate()
    frame = parse_frame(FIRST_HELLO)
    decoded = ext.decode(Frame(frame.opcode, frame.data, True, RSV1 | RSV2))
    assert decoded.rsv == RSV2
    encoded = deflate().encode(Frame(OP_TEXT, b"Hello", True, RSV2))
    assert encoded.rsv == RSV1 | RSV2


def test_control_frames_untouched() -> None:
    ext = deflate()
    ping = Frame(0x9, b"ping")
    assert ext.encode(ping) is ping
    assert ext.decode(ping) is ping


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", WINDOWS)
@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_round_trip(opcode: int, nct: bool, bits: int) -> None:
    sender, receiver = pair(nct, bits)
    messages = [TEXT, random_bytes(3000), b"", TEXT[:500], TEXT, b"x", random_bytes(70000, 1)]
    for message in messages:
        (frame,) = send(sender, opcode, [message])
        assert frame.rsv == RSV1 and frame.opcode == opcode and frame.fin
        decoded = receiver.decode(frame)
        assert decoded == Frame(opcode, message, True, 0)


@pytest.mark.parametrize("bits", [8, 9, 12, 15])
@pytest.mark.parametrize("nct", [False, True])
def test_round_trip_fragmented(nct: bool, bits: int) -> None:
    sender, receiver = pair(nct, bits)
    splits = [
        [TEXT[:100], TEXT[100:2000], TEXT[2000:]],
        [b"", TEXT, b""],
        [b"", b"", b""],
        [random_bytes(5000), b"", random_bytes(10, 2)],
        [TEXT],
    ]
    for fragments in splits:
        frames = send(sender, OP_BINARY, fragments)
        assert frames[0].rsv == RSV1
        assert all(frame.rsv == 0 and frame.opcode == OP_CONT for frame in frames[1:])
        assert frames[-1].data != b""
        decoded = [receiver.decode(frame) for frame in frames]
        assert [frame.fin for frame in decoded] == [frame.fin for frame in frames]
        assert b"".join(frame.data for frame in decoded) == b"".join(fragments)


def test_empty_messages() -> None:
    sender, receiver = pair()
    (frame,) = send(sender, OP_TEXT, [b""])
    # RFC 7692 7.2.3.6: an empty compressed message is the single octet 0x00.
    assert frame == Frame(OP_TEXT, b"\x00", True, RSV1)
    assert receiver.decode(frame).data == b""
    frames = send(sender, OP_TEXT, [b"abc", b""])
    assert frames[-1].data == b"\x00"
    assert receive(receiver, frames) == b"abc"


def test_both_directions_independent() -> None:
    # A client/server pair negotiated with different settings per direction.
    client_factory = ClientPerMessageDeflateFactory(
        client_no_context_takeover=True, client_max_window_bits=10, threshold=0
    )
    server_factory = ServerPerMessageDeflateFactory(server_max_window_bits=9, threshold=0)
    response, server = server_factory.process_request_params(
        client_factory.get_request_params(), []
    )
    client = client_factory.process_response_params(response, [])
    for i in range(5):
        message = TEXT[i * 100 :]
        assert receive(server, send(client, OP_TEXT, [message])) == message
        assert receive(client, send(server, OP_BINARY, [message[:50], message[50:]])) == message


@pytest.mark.parametrize("bits", WINDOWS)
def test_context_takeover_shrinks_repeated_messages(bits: int) -> None:
    # Shorter than the smallest window (zlib matches at most 250 bytes back with 9 bits).
    payload = random_bytes(200, bits)
    sizes = {}
    for nct in (False, True):
        sender, receiver = pair(nct, bits)
        first, second = (send(sender, OP_BINARY, [payload])[0] for _ in range(2))
        assert receive(receiver, [first]) == receive(receiver, [second]) == payload
        sizes[nct] = len(second.data)
    assert sizes[False] < 20 < sizes[True]


def test_no_context_takeover_messages_stand_alone() -> None:
    for nct in (False, True):
        sender, _ = pair(nct)
        send(sender, OP_TEXT, [TEXT])
        (second,) = send(sender, OP_TEXT, [TEXT])
        fresh = zlib.decompressobj(-15)
        if nct:
            assert fresh.decompress(second.data + TAIL) == TEXT
        else:
            with pytest.raises(zlib.error):
                fresh.decompress(second.data + TAIL)


def test_zlib_state_is_released() -> None:
    sender, receiver = pair(nct=True)
    assert sender._compressor is None and receiver._decompressor is None  # lazily created
    frames = send(sender, OP_TEXT, [TEXT[:1000], TEXT[1000:]])
    assert sender._compressor is None  # dropped after the message
    receiver.decode(frames[0])
    assert receiver._decompressor is not None  # kept within the message
    receiver.decode(frames[1])
    assert receiver._decompressor is None

    sender, receiver = pair(nct=False)
    receive(receiver, send(sender, OP_TEXT, [TEXT]))
    assert sender._compressor is not None and receiver._decompressor is not None
    sender.close()
    receiver.close()
    assert sender._compressor is None and receiver._decompressor is None


@pytest.mark.parametrize("bits", WINDOWS)
def test_compressor_honours_window(bits: int) -> None:
    # Repeats at distances just over and under the window; a decompressor with exactly the
    # negotiated window (-8 included: zlib inflates raw 8-bit windows) must accept the stream.
    rng = random.Random(bits)
    sender, _ = pair(bits=bits)
    window = 1 << bits
    check = zlib.decompressobj(-bits)
    for period in (window // 2, window - 10, window, window + 7, 2 * window - 1):
        block = rng.randbytes(period)
        for message in (block * 3, block[:100], block):
            (frame,) = send(sender, OP_BINARY, [message])
            out = b"".join(
                check.decompress(frame.data[i : i + 7]) for i in range(0, len(frame.data), 7)
            )
            assert out + check.decompress(TAIL) == message


def test_window_8_stream_many_periods() -> None:
    # The 8 -> 9 substitution: zlib's 9-bit deflate never reaches back more than 250 bytes.
    rng = random.Random(8)
    sender, receiver = pair(bits=8)
    check = zlib.decompressobj(-8)
    for period in range(200, 600, 7):
        message = rng.randbytes(period) * 3
        (frame,) = send(sender, OP_BINARY, [message])
        out = b"".join(check.decompress(frame.data[i : i + 1]) for i in range(len(frame.data)))
        assert out + check.decompress(TAIL) == message
        assert receiver.decode(frame).data == message


# -- threshold -------------------------------------------------------------------------------


def test_threshold() -> None:
    sender, receiver = pair(threshold=DEFAULT_COMPRESS_THRESHOLD)
    small = TEXT[: DEFAULT_COMPRESS_THRESHOLD - 1]
    frame = Frame(OP_TEXT, small)
    assert sender.encode(frame) is frame  # sent as is, no RSV1
    assert receiver.decode(frame) is frame
    big = TEXT[:DEFAULT_COMPRESS_THRESHOLD]
    (encoded,) = send(sender, OP_TEXT, [big])
    assert encoded.rsv == RSV1
    assert receiver.decode(encoded).data == big
    # A fragmented message is compressed whatever the size of its first fragment.
    frames = send(sender, OP_TEXT, [b"a", b"b"])
    assert frames[0].rsv == RSV1 and frames[1].rsv == 0
    assert receive(receiver, frames) == b"ab"
    # An uncompressed message between compressed ones does not disturb context takeover.
    assert sender.encode(Frame(OP_BINARY, b"tiny")).data == b"tiny"
    (again,) = send(sender, OP_TEXT, [big])
    assert len(again.data) < len(encoded.data)
    assert receiver.decode(Frame(OP_BINARY, b"tiny")).data == b"tiny"
    assert receiver.decode(again).data == big


def test_threshold_uncompressed_continuations() -> None:
    # CONT frames of an uncompressed message pass through (a message sent whole below the
    # threshold never has any, but a plain message started elsewhere may be continued).
    sender = deflate(threshold=10)
    sender.encode(Frame(OP_TEXT, b"short"))
    cont = Frame(OP_CONT, b"more")
    assert sender.encode(cont) is cont


# -- bounded decompression -------------------------------------------------------------------


def bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    return data[:-4]


def test_deflate_bomb_is_bounded() -> None:
    payload = bomb(10 * MiB)
    assert len(payload) < 20_000
    frame = Frame(OP_BINARY, payload, True, RSV1)
    ext = deflate()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig) as info:
            ext.decode(frame, max_size=MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 4 * MiB


def test_max_size_exact() -> None:
    size = 3 * MiB + 17
    frame = Frame(OP_BINARY, bomb(size), True, RSV1)
    assert deflate().decode(frame, max_size=size).data == bytes(size)
    with pytest.raises(PayloadTooBig):
        deflate().decode(frame, max_size=size - 1)
    assert deflate().decode(frame).data == bytes(size)


def test_max_size_across_fragments() -> None:
    sender, _ = pair()
    frames = send(sender, OP_TEXT, [TEXT[:1000], TEXT[1000:]])
    total = len(TEXT)
    ok = deflate()
    first = ok.decode(frames[0], max_size=total)
    assert ok.decode(frames[1], max_size=total - len(first.data)).data == TEXT[1000:]
    too_small = deflate()
    first = too_small.decode(frames[0], max_size=total - 1)
    with pytest.raises(PayloadTooBig):
        too_small.decode(frames[1], max_size=total - 1 - len(first.data))


def test_max_size_zero() -> None:
    assert deflate().decode(Frame(OP_TEXT, b"\x00", True, RSV1), max_size=0).data == b""
    with pytest.raises(PayloadTooBig):
        deflate().decode(parse_frame(FIRST_HELLO), max_size=0)
    assert deflate().decode(parse_frame(FIRST_HELLO), max_size=5).data == b"Hello"
    with pytest.raises(PayloadTooBig):
        deflate().decode(parse_frame(FIRST_HELLO), max_size=4)


# -- interop with plain zlib -----------------------------------------------------------------


@pytest.mark.parametrize("message", [b"", b"Hello", TEXT, random_bytes(100_000, 3)])
def test_interop_with_zlib(message: bytes) -> None:
    # wskit -> zlib: append the tail, inflate with a fresh raw decompressor.
    (frame,) = send(deflate(), OP_BINARY, [message])
    assert zlib.decompressobj(-15).decompress(frame.data + TAIL) == message
    # zlib -> wskit: sync flush, strip the tail.
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    data = data[:-4] or b"\x00"
    assert deflate().decode(Frame(OP_BINARY, data, True, RSV1)).data == message


# -- negotiation: client ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({}, [("client_max_window_bits", None)]),
        ({"client_max_window_bits": None}, []),
        ({"client_max_window_bits": False}, []),
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "10")]),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 8,
                "client_max_window_bits": 15,
            },
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "8"),
                ("client_max_window_bits", "15"),
            ],
        ),
    ],
)
def test_client_offer(kwargs: dict[str, object], params: list[ExtensionParameter]) -> None:
    assert ClientPerMessageDeflateFactory(**kwargs).get_request_params() == params  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"server_max_window_bits": True},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"compress_level": 10},
        {"mem_level": 0},
        {"threshold": -1},
    ],
)
def test_client_factory_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


def settings(ext: Extension) -> tuple[bool, bool, int, int]:
    assert isinstance(ext, PerMessageDeflate)
    return (
        ext.remote_no_context_takeover,
        ext.local_no_context_takeover,
        ext.remote_max_window_bits,
        ext.local_max_window_bits,
    )


# (client factory kwargs, response params, expected (remote nct, local nct, remote, local)).
CLIENT_ACCEPTS = [
    ({}, [], (False, False, 15, 15)),
    ({}, [("server_no_context_takeover", None)], (True, False, 15, 15)),
    ({}, [("client_no_context_takeover", None)], (False, True, 15, 15)),
    ({}, [("server_max_window_bits", "10")], (False, False, 10, 15)),
    ({}, [("client_max_window_bits", "9")], (False, False, 15, 9)),
    ({}, [("client_max_window_bits", "8")], (False, False, 15, 8)),
    (
        {"server_no_context_takeover": True},
        [("server_no_context_takeover", None)],
        (True, False, 15, 15),
    ),
    ({"client_no_context_takeover": True}, [], (False, True, 15, 15)),
    ({"server_max_window_bits": 12}, [("server_max_window_bits", "12")], (False, False, 12, 15)),
    ({"server_max_window_bits": 12}, [("server_max_window_bits", "8")], (False, False, 8, 15)),
    ({"client_max_window_bits": 11}, [], (False, False, 15, 11)),
    ({"client_max_window_bits": 11}, [("client_max_window_bits", "10")], (False, False, 15, 10)),
    # RFC 7692 7.1.2.2: a larger answer does not lift the offered limit.
    ({"client_max_window_bits": 11}, [("client_max_window_bits", "13")], (False, False, 15, 11)),
    ({"client_max_window_bits": None}, [], (False, False, 15, 15)),
    (
        {"server_no_context_takeover": True, "server_max_window_bits": 9},
        [
            ("client_max_window_bits", "12"),
            ("server_max_window_bits", "9"),
            ("client_no_context_takeover", None),
            ("server_no_context_takeover", None),
        ],
        (True, True, 9, 12),
    ),
]


@pytest.mark.parametrize(("kwargs", "params", "expected"), CLIENT_ACCEPTS)
def test_client_accepts(
    kwargs: dict[str, object],
    params: list[ExtensionParameter],
    expected: tuple[bool, bool, int, int],
) -> None:
    factory = ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
    assert settings(factory.process_response_params(params, [])) == expected


CLIENT_REJECTS = [
    ({}, [("unknown", None)]),
    ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)]),
    ({}, [("server_max_window_bits", "10"), ("server_max_window_bits", "10")]),
    ({}, [("server_no_context_takeover", "1")]),
    ({}, [("client_no_context_takeover", "")]),
    ({}, [("server_max_window_bits", None)]),
    ({}, [("server_max_window_bits", "7")]),
    ({}, [("server_max_window_bits", "16")]),
    ({}, [("server_max_window_bits", "010")]),
    ({}, [("server_max_window_bits", "ten")]),
    # A response's client_max_window_bits needs a value.
    ({}, [("client_max_window_bits", None)]),
    ({}, [("client_max_window_bits", "7")]),
    # Not offered, so not allowed in the response.
    ({"client_max_window_bits": None}, [("client_max_window_bits", "10")]),
    # Required but not accepted.
    ({"server_no_context_takeover": True}, []),
    ({"server_max_window_bits": 10}, []),
    ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")]),
]


@pytest.mark.parametrize(("kwargs", "params"), CLIENT_REJECTS)
def test_client_rejects(kwargs: dict[str, object], params: list[ExtensionParameter]) -> None:
    factory = ClientPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(NegotiationError):
        factory.process_response_params(params, [])


def test_client_rejects_second_acceptance() -> None:
    factory = ClientPerMessageDeflateFactory()
    first = factory.process_response_params([], [])
    with pytest.raises(NegotiationError):
        factory.process_response_params([], [first])


# -- negotiation: server ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": True},
        {"require_client_max_window_bits": True},
        {"compress_level": -2},
        {"mem_level": 10},
    ],
)
def test_server_factory_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServerPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


NO_DEFAULT = {"server_max_window_bits": None}

# (server factory kwargs, offer, expected response, expected (remote nct, local nct, remote,
# local)).
SERVER_ACCEPTS = [
    (NO_DEFAULT, [], [], (False, False, 15, 15)),
    (
        {},
        [],
        [("server_max_window_bits", str(DEFAULT_SERVER_MAX_WINDOW_BITS))],
        (False, False, 15, 12),
    ),
    # server_no_context_takeover: asked by the client, or configured.
    (
        NO_DEFAULT,
        [("server_no_context_takeover", None)],
        [("server_no_context_takeover", None)],
        (False, True, 15, 15),
    ),
    (
        {**NO_DEFAULT, "server_no_context_takeover": True},
        [],
        [("server_no_context_takeover", None)],
        (False, True, 15, 15),
    ),
    # client_no_context_takeover: configured, or the client's promise echoed.
    (
        {**NO_DEFAULT, "client_no_context_takeover": True},
        [],
        [("client_no_context_takeover", None)],
        (True, False, 15, 15),
    ),
    (
        NO_DEFAULT,
        [("client_no_context_takeover", None)],
        [("client_no_context_takeover", None)],
        (True, False, 15, 15),
    ),
    # server_max_window_bits: min of ours and theirs.
    (
        NO_DEFAULT,
        [("server_max_window_bits", "10")],
        [("server_max_window_bits", "10")],
        (False, False, 15, 10),
    ),
    (
        {},
        [("server_max_window_bits", "10")],
        [("server_max_window_bits", "10")],
        (False, False, 15, 10),
    ),
    (
        {},
        [("server_max_window_bits", "14")],
        [("server_max_window_bits", "12")],
        (False, False, 15, 12),
    ),
    (
        {},
        [("server_max_window_bits", "8")],
        [("server_max_window_bits", "8")],
        (False, False, 15, 8),
    ),
    # client_max_window_bits.
    (NO_DEFAULT, [("client_max_window_bits", None)], [], (False, False, 15, 15)),
    (
        NO_DEFAULT,
        [("client_max_window_bits", "11")],
        [("client_max_window_bits", "11")],
        (False, False, 11, 15),
    ),
    ({**NO_DEFAULT, "client_max_window_bits": 10}, [], [], (False, False, 15, 15)),
    (
        {**NO_DEFAULT, "client_max_window_bits": 10},
        [("client_max_window_bits", None)],
        [("client_max_window_bits", "10")],
        (False, False, 10, 15),
    ),
    (
        {**NO_DEFAULT, "client_max_window_bits": 10},
        [("client_max_window_bits", "9")],
        [("client_max_window_bits", "9")],
        (False, False, 9, 15),
    ),
    (
        {**NO_DEFAULT, "client_max_window_bits": 10, "require_client_max_window_bits": True},
        [("client_max_window_bits", "12")],
        [("client_max_window_bits", "10")],
        (False, False, 10, 15),
    ),
    # Everything at once.
    (
        {},
        [
            ("client_max_window_bits", None),
            ("server_max_window_bits", "9"),
            ("client_no_context_takeover", None),
            ("server_no_context_takeover", None),
        ],
        [
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "9"),
        ],
        (True, True, 15, 9),
    ),
]


@pytest.mark.parametrize(("kwargs", "offer", "response", "expected"), SERVER_ACCEPTS)
def test_server_accepts(
    kwargs: dict[str, object],
    offer: list[ExtensionParameter],
    response: list[ExtensionParameter],
    expected: tuple[bool, bool, int, int],
) -> None:
    factory = ServerPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
    params, ext = factory.process_request_params(offer, [])
    assert params == response
    assert settings(ext) == expected
    # The client that made this offer agrees with the response.
    client = client_for(offer).process_response_params(params, [])
    assert settings(client) == (expected[1], expected[0], expected[3], expected[2])


def client_for(offer: list[ExtensionParameter]) -> ClientPerMessageDeflateFactory:
    """The client factory whose offer is ``offer``."""
    given = dict(offer)
    client_bits: int | bool | None = None
    if "client_max_window_bits" in given:
        value = given["client_max_window_bits"]
        client_bits = True if value is None else int(value)
    server_bits = given.get("server_max_window_bits")
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover="server_no_context_takeover" in given,
        client_no_context_takeover="client_no_context_takeover" in given,
        server_max_window_bits=None if server_bits is None else int(server_bits),
        client_max_window_bits=client_bits,
    )
    assert factory.get_request_params() == sorted(
        offer, key=lambda param: CLIENT_ORDER.index(param[0])
    )
    return factory


CLIENT_ORDER = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
]

SERVER_DECLINES = [
    ({}, [("unknown", None)]),
    ({}, [("client_max_window_bits", None), ("client_max_window_bits", "10")]),
    ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)]),
    ({}, [("server_no_context_takeover", "yes")]),
    ({}, [("client_no_context_takeover", "0")]),
    ({}, [("server_max_window_bits", None)]),
    ({}, [("server_max_window_bits", "7")]),
    ({}, [("server_max_window_bits", "16")]),
    ({}, [("server_max_window_bits", "09")]),
    ({}, [("client_max_window_bits", "7")]),
    ({}, [("client_max_window_bits", "")]),
    ({"client_max_window_bits": 10, "require_client_max_window_bits": True}, []),
]


@pytest.mark.parametrize(("kwargs", "offer"), SERVER_DECLINES)
def test_server_declines(kwargs: dict[str, object], offer: list[ExtensionParameter]) -> None:
    factory = ServerPerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(NegotiationError):
        factory.process_request_params(offer, [])


def test_server_declines_second_acceptance() -> None:
    factory = ServerPerMessageDeflateFactory()
    _, first = factory.process_request_params([], [])
    with pytest.raises(NegotiationError):
        factory.process_request_params([], [first])


def negotiate(
    factories: Sequence[ServerExtensionFactory],
    offers: Sequence[tuple[str, list[ExtensionParameter]]],
) -> tuple[list[tuple[str, list[ExtensionParameter]]], list[Extension]]:
    """What a server does with a parsed Sec-WebSocket-Extensions: first acceptable offer wins."""
    response: list[tuple[str, list[ExtensionParameter]]] = []
    accepted: list[Extension] = []
    for name, params in offers:
        for factory in factories:
            if factory.name != name:
                continue
            try:
                answer, extension = factory.process_request_params(params, accepted)
            except NegotiationError:
                continue
            response.append((name, answer))
            accepted.append(extension)
    return response, accepted


def test_server_takes_first_acceptable_offer() -> None:
    factory = ServerPerMessageDeflateFactory(
        client_max_window_bits=10, require_client_max_window_bits=True
    )
    offers: list[tuple[str, list[ExtensionParameter]]] = [
        ("permessage-deflate", [("server_max_window_bits", "7")]),  # invalid
        ("permessage-deflate", [("server_no_context_takeover", None)]),  # lacks client bits
        ("permessage-deflate", [("client_max_window_bits", None)]),  # accepted
        ("permessage-deflate", [("client_max_window_bits", "9")]),  # already accepted
        ("x-other", []),
    ]
    response, accepted = negotiate([factory], offers)
    assert response == [
        ("permessage-deflate", [("server_max_window_bits", "12"), ("client_max_window_bits", "10")])
    ]
    assert [settings(ext) for ext in accepted] == [(False, False, 10, 12)]


def test_declined_everything() -> None:
    offers: list[tuple[str, list[ExtensionParameter]]] = [
        ("permessage-deflate", [("bogus", None)]),
        ("permessage-deflate", [("bogus", "1")]),
    ]
    response, accepted = negotiate([ServerPerMessageDeflateFactory()], offers)
    assert response == [] and accepted == []


ALL_CLIENTS = [
    {},
    {"client_max_window_bits": None},
    {"client_max_window_bits": 9},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 8, "client_max_window_bits": 8},
    {"server_max_window_bits": 14},
]
ALL_SERVERS = [
    {},
    {"server_max_window_bits": None},
    {"server_max_window_bits": 8, "client_max_window_bits": 8},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"client_max_window_bits": 11},
]


@pytest.mark.parametrize("client_kwargs", ALL_CLIENTS)
@pytest.mark.parametrize("server_kwargs", ALL_SERVERS)
def test_negotiated_pair_talks(
    client_kwargs: dict[str, object], server_kwargs: dict[str, object]
) -> None:
    client_factory = ClientPerMessageDeflateFactory(threshold=0, **client_kwargs)  # type: ignore[arg-type]
    server_factory = ServerPerMessageDeflateFactory(threshold=0, **server_kwargs)  # type: ignore[arg-type]
    response, server = server_factory.process_request_params(
        client_factory.get_request_params(), []
    )
    client = client_factory.process_response_params(response, [])
    assert settings(client) == (
        server.local_no_context_takeover,
        server.remote_no_context_takeover,
        server.local_max_window_bits,
        server.remote_max_window_bits,
    )
    # Each side compresses within the window the other inflates with.
    check_client = zlib.decompressobj(-client.local_max_window_bits)
    for message in (TEXT, random_bytes(40_000), TEXT):
        frames = send(client, OP_TEXT, [message])
        assert receive(server, frames) == message
        assert receive(client, send(server, OP_BINARY, [message[:7], message[7:]])) == message
        if not client.local_no_context_takeover:
            assert check_client.decompress(frames[0].data + TAIL) == message


# -- interop with the websockets library ----------------------------------------------------


def test_interop_with_websockets_library() -> None:
    from websockets.extensions import permessage_deflate as ws_pmd
    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode as WsOpcode

    # wskit client <-> websockets server.
    client_factory = ClientPerMessageDeflateFactory(
        server_max_window_bits=10, client_max_window_bits=True, threshold=0
    )
    ws_server = ws_pmd.ServerPerMessageDeflateFactory(client_max_window_bits=11)
    response, ws_ext = ws_server.process_request_params(client_factory.get_request_params(), [])
    ours = client_factory.process_response_params(response, [])
    assert settings(ours) == (False, False, 10, 11)
    for message in (TEXT, random_bytes(5000), TEXT):
        (frame,) = send(ours, OP_TEXT, [message])
        ws_frame = ws_ext.decode(WsFrame(WsOpcode.TEXT, frame.data, True, rsv1=True))
        assert ws_frame.data == message
        back = ws_ext.encode(WsFrame(WsOpcode.BINARY, message))
        assert back.rsv1
        decoded = ours.decode(Frame(OP_BINARY, bytes(back.data), True, RSV1))
        assert decoded.data == message

    # websockets client <-> wskit server.
    ws_client = ws_pmd.ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_max_window_bits=True
    )
    server_factory = ServerPerMessageDeflateFactory(client_max_window_bits=9, threshold=0)
    answer, server = server_factory.process_request_params(ws_client.get_request_params(), [])
    ws_ext = ws_client.process_response_params(answer, [])
    assert settings(server) == (False, True, 9, 12)
    for message in (TEXT, b"", TEXT):
        (frame,) = send(server, OP_BINARY, [message])
        assert ws_ext.decode(WsFrame(WsOpcode.BINARY, frame.data, True, rsv1=True)).data == message
        back = ws_ext.encode(WsFrame(WsOpcode.TEXT, message))
        assert server.decode(Frame(OP_TEXT, bytes(back.data), True, RSV1)).data == message


# -- helpers and exports ---------------------------------------------------------------------


def test_enable_client() -> None:
    (added,) = enable_client_permessage_deflate(None)
    assert isinstance(added, ClientPerMessageDeflateFactory)
    custom = ClientPerMessageDeflateFactory(client_max_window_bits=9)
    assert enable_client_permessage_deflate([custom]) == [custom]

    class Other(ClientExtensionFactory):
        name = "x-other"

        def get_request_params(self) -> list[ExtensionParameter]:
            return []

        def process_response_params(
            self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
        ) -> Extension:
            raise NegotiationError("no")

    other = Other()
    result = enable_client_permessage_deflate((other,))
    assert result[0] is other and isinstance(result[1], ClientPerMessageDeflateFactory)


def test_enable_server() -> None:
    (added,) = enable_server_permessage_deflate([])
    assert isinstance(added, ServerPerMessageDeflateFactory)
    assert added.server_max_window_bits == DEFAULT_SERVER_MAX_WINDOW_BITS
    custom = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
    assert enable_server_permessage_deflate((custom,)) == [custom]


def test_exports() -> None:
    for name in extensions.__all__:
        assert getattr(extensions, name) is not None
    assert "PerMessageDeflate" in extensions.__all__
    assert PerMessageDeflate.name == "permessage-deflate"
    assert PerMessageDeflate.rsv_bits == RSV1


@pytest.mark.parametrize(
    "kwargs",
    [{"remote_max_window_bits": 7}, {"local_max_window_bits": 16}, {"threshold": -5}],
)
def test_extension_arguments(kwargs: dict[str, int]) -> None:
    arguments: dict[str, object] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
        **kwargs,
    }
    with pytest.raises(ValueError):
        PerMessageDeflate(**arguments)  # type: ignore[arg-type]


# -- another DEFLATE implementation (zlib-ng, the "speed" extra) ---------------------------------


def deflate_with(module: object, **kwargs: object) -> PerMessageDeflate:
    settings: dict[str, object] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
        "threshold": 0,
    }
    settings.update(kwargs)
    return PerMessageDeflate(zlib_module=module, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", WINDOWS)
@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize(("sending", "receiving"), [("zlib-ng", "zlib"), ("zlib", "zlib-ng")])
def test_zlib_ng_and_zlib_understand_each_other(
    sending: str, receiving: str, nct: bool, bits: int
) -> None:
    """Same format: what one implementation compresses, with any window and with or without
    context takeover, the other inflates, message after message."""
    modules = {"zlib": zlib, "zlib-ng": zlib_ng}
    sender = deflate_with(
        modules[sending], local_no_context_takeover=nct, local_max_window_bits=bits
    )
    receiver = deflate_with(
        modules[receiving], remote_no_context_takeover=nct, remote_max_window_bits=bits
    )
    for i in range(4):
        message = TEXT[i:] + random_bytes(3000, seed=i)
        frames = send(sender, OP_BINARY, [message[:5000], message[5000:]])
        assert receive(receiver, frames) == message


def test_zlib_ng_corrupt_stream_is_protocol_error() -> None:
    """zlib-ng raises its own error class: still a 1002, not an escaped exception."""
    ext = deflate_with(zlib_ng)
    with pytest.raises(RemoteProtocolError) as info:
        ext.decode(Frame(OP_BINARY, b"\xff\xff\xff", True, RSV1))
    assert info.value.code == 1002

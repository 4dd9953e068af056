"""Tests for wskit.core.handshake: the opening handshake (RFC 6455 4) over HTTP/1.1."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit.core.events import Request, Response
from wskit.core.handshake import (
    GUID,
    SERVER,
    USER_AGENT,
    WS_VERSION,
    __all__,
    accept_key,
    accept_response,
    build_request,
    check_request,
    check_response,
    error_response,
    generate_key,
    parse_extensions,
    parse_request,
    parse_response,
    parse_subprotocols,
    parse_token_list,
    reject_response,
    serialize_extensions,
    serialize_request,
    serialize_response,
    serialize_subprotocols,
)
from wskit.core.headers import Headers
from wskit.core.limits import DEFAULT_LIMITS, Limits
from wskit.core.uri import parse_uri
from wskit.exceptions import InvalidHandshake, InvalidStatus, LocalProtocolError

# RFC 6455 1.2 / 4.2.2: the sample handshake.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RFC_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"\r\n"
)
# A masked text frame "Hello" from the client (RFC 6455 5.7) and unmasked from the server.
CLIENT_FRAME = bytes.fromhex("818537fa213d7f9f4d5158")
SERVER_FRAME = bytes.fromhex("810548656c6c6f")


def request_head(*fields: str, line: str = "GET /chat HTTP/1.1") -> bytes:
    return ("\r\n".join((line, *fields)) + "\r\n\r\n").encode("latin-1")


def upgrade_request(**changes: str | None) -> Request:
    """A valid upgrade request, with fields replaced (value) or removed (None)."""
    fields = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    for key, value in changes.items():
        name = key.replace("_", "-")
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    return Request("/chat", Headers(fields))


def feed_in_chunks(
    parse: Callable[[bytearray, Limits], tuple[object, int] | None],
    data: bytes,
    sizes: list[int],
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[object, int]:
    """Append ``data`` in chunks; the result must be None until the last chunk."""
    buf = bytearray()
    pos = 0
    for size in sizes:
        assert parse(buf, limits) is None
        buf += data[pos : pos + size]
        pos += size
    assert pos == len(data)
    result = parse(buf, limits)
    assert result is not None
    return result


# ---------------------------------------------------------------------------------------------
# Keys


def test_accept_key_rfc_sample() -> None:
    # RFC 6455 4.2.2: "the server would [...] return "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=""
    assert accept_key(RFC_KEY) == RFC_ACCEPT
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert WS_VERSION == "13"


def test_generate_key_is_16_random_bytes() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


def test_user_agent_and_server() -> None:
    assert re.fullmatch(r"wskit/\S+ Python/3\.\d+", USER_AGENT)
    assert SERVER == USER_AGENT


def test_all_lists_the_public_names() -> None:
    import wskit.core.handshake as module

    functions = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == module.__name__
    }
    assert set(__all__) == functions | {"GUID", "SERVER", "USER_AGENT", "WS_VERSION"}
    assert all(hasattr(module, name) for name in __all__)


# ---------------------------------------------------------------------------------------------
# The RFC sample handshake, end to end


def test_rfc_sample_request() -> None:
    parsed = parse_request(RFC_REQUEST, DEFAULT_LIMITS)
    assert parsed is not None
    request, consumed = parsed
    assert consumed == len(RFC_REQUEST)
    assert request.method == "GET"
    assert request.target == "/chat"
    assert request.http_version == "HTTP/1.1"
    assert request.headers["host"] == "server.example.com"
    assert request.headers["Origin"] == "http://example.com"
    assert len(request.headers) == 7
    assert check_request(request) == RFC_KEY
    assert parse_subprotocols(request.headers.get_all("Sec-WebSocket-Protocol")) == [
        "chat",
        "superchat",
    ]
    # Serializing what was parsed gives back the same bytes.
    assert serialize_request(request) == RFC_REQUEST


def test_rfc_sample_response() -> None:
    response = accept_response(RFC_KEY, subprotocol="chat", extensions=(), server=None)
    assert serialize_response(response) == RFC_RESPONSE
    parsed = parse_response(RFC_RESPONSE, DEFAULT_LIMITS)
    assert parsed is not None
    received, consumed = parsed
    assert consumed == len(RFC_RESPONSE)
    assert received.status == 101
    assert received.reason == "Switching Protocols"
    assert received.headers == response.headers
    check_response(received, RFC_KEY)


# ---------------------------------------------------------------------------------------------
# Incremental parsing


def test_request_byte_by_byte() -> None:
    data = RFC_REQUEST + CLIENT_FRAME
    request, consumed = feed_in_chunks(parse_request, RFC_REQUEST, [1] * len(RFC_REQUEST))
    assert consumed == len(RFC_REQUEST)
    # Bytes after the head are not consumed, and do not change the result.
    parsed = parse_request(data, DEFAULT_LIMITS)
    assert parsed == (request, len(RFC_REQUEST))
    assert data[parsed[1] :] == CLIENT_FRAME


def test_response_byte_by_byte() -> None:
    response, consumed = feed_in_chunks(parse_response, RFC_RESPONSE, [1] * len(RFC_RESPONSE))
    assert consumed == len(RFC_RESPONSE)
    data = RFC_RESPONSE + SERVER_FRAME
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed == (response, len(RFC_RESPONSE))
    assert data[parsed[1] :] == SERVER_FRAME


def test_response_with_body_byte_by_byte() -> None:
    data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope\n"
    response, consumed = feed_in_chunks(parse_response, data, [1] * len(data))
    assert consumed == len(data)
    assert isinstance(response, Response)
    assert response.body == b"nope\n"


@pytest.mark.parametrize("seed", range(20))
def test_random_splits(seed: int) -> None:
    rng = random.Random(seed)

    def splits(data: bytes) -> list[int]:
        sizes = []
        left = len(data)
        while left:
            size = min(left, rng.randint(1, 40))
            sizes.append(size)
            left -= size
        return sizes

    request, consumed = feed_in_chunks(parse_request, RFC_REQUEST, splits(RFC_REQUEST))
    assert (request, consumed) == parse_request(RFC_REQUEST, DEFAULT_LIMITS)
    response, consumed = feed_in_chunks(parse_response, RFC_RESPONSE, splits(RFC_RESPONSE))
    assert (response, consumed) == parse_response(RFC_RESPONSE, DEFAULT_LIMITS)


# ---------------------------------------------------------------------------------------------
# parse_request: what is accepted


def test_plain_get_parses() -> None:
    # Not a WebSocket request, but parse_request does not care: the server may serve a page.
    parsed = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].target == "/"
    assert parsed[1] == 27


def test_other_methods_and_targets_parse() -> None:
    for line in ("POST /upload?a=1 HTTP/1.1", "OPTIONS * HTTP/1.1", "GET http://h/x HTTP/1.1"):
        parsed = parse_request(request_head("Host: h", line=line), DEFAULT_LIMITS)
        assert parsed is not None
        method, target, _ = line.split(" ")
        assert (parsed[0].method, parsed[0].target) == (method, target)


def test_request_without_fields() -> None:
    parsed = parse_request(b"GET / HTTP/1.1\r\n\r\n", DEFAULT_LIMITS)
    assert parsed is not None
    assert len(parsed[0].headers) == 0


def test_field_values() -> None:
    parsed = parse_request(
        request_head(
            "Host:h",  # no OWS
            "X-Pad: \t padded value \t ",  # OWS stripped, inner spaces kept
            "X-Empty:",
            "X-Empty-Ows:   ",
            "X-Latin1: caf\xe9",  # obs-text, decoded latin-1
            "X-Tab: a\tb",
            "X-Colon: a: b:c",
            "x-repeat: 1",
            "X-Repeat: 2",
        ),
        DEFAULT_LIMITS,
    )
    assert parsed is not None
    headers = parsed[0].headers
    assert headers["Host"] == "h"
    assert headers["X-Pad"] == "padded value"
    assert headers["X-Empty"] == ""
    assert headers["X-Empty-Ows"] == ""
    assert headers["X-Latin1"] == "caf\xe9"
    assert headers["X-Tab"] == "a\tb"
    assert headers["X-Colon"] == "a: b:c"
    assert headers.get_all("X-REPEAT") == ["1", "2"]
    assert headers.items()[-1] == ("X-Repeat", "2")  # names kept as sent


def test_body_is_not_read() -> None:
    data = request_head("Host: h", "Content-Length: 5", line="POST / HTTP/1.1") + b"hello"
    parsed = parse_request(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert data[parsed[1] :] == b"hello"


def test_bytearray_input() -> None:
    assert parse_request(bytearray(RFC_REQUEST), DEFAULT_LIMITS) == parse_request(
        RFC_REQUEST, DEFAULT_LIMITS
    )


# ---------------------------------------------------------------------------------------------
# parse_request: what is refused


@pytest.mark.parametrize(
    ("data", "status"),
    [
        # Request line.
        (b"\r\n\r\n", 400),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /  HTTP/1.1\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b" GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET\t/ HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (b"GET /a\x00b HTTP/1.1\r\n\r\n", 400),
        (b"GET / http/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1.1\r\n\r\n", 400),
        (b"GET / HTTP/11\r\n\r\n", 400),
        (b"GET / HTTP/2\r\n\r\n", 400),
        (b"GET / HTTP/a.b\r\n\r\n", 400),
        (b"GET / FOO/1.1\r\n\r\n", 400),
        # RFC 6455 4.1: "the HTTP version MUST be at least 1.1"; only 1.1 uses this syntax.
        (b"GET / HTTP/1.0\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # the HTTP/2 connection preface
        # Header lines.
        (b"GET / HTTP/1.1\r\nHost h\r\n\r\n", 400),  # no colon
        (b"GET / HTTP/1.1\r\n: h\r\n\r\n", 400),  # empty name
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),  # RFC 9112 5.1: space before colon
        (b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo st: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nH\xc3\xb6st: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),  # whitespace before the first field
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\x1bb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),  # bare CR
        (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),  # bare LF inside the head
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),  # LF line ends are refused early
    ],
)
def test_parse_request_invalid(data: bytes, status: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_request(data, DEFAULT_LIMITS)
    assert info.value.status == status
    # The same verdict when the bytes arrive one at a time: never a different error, and
    # never an error before a prefix is invalid.
    buf = bytearray()
    for byte in data:
        buf.append(byte)
        try:
            parse_request(buf, DEFAULT_LIMITS)
        except InvalidHandshake as exc:
            assert exc.status == status
            break
    else:
        pytest.fail("fed byte by byte, the request was never refused")


def test_start_line_errors_are_detected_before_the_head_is_complete() -> None:
    # A TLS ClientHello sent to a plain ws:// port: refused at the first byte.
    with pytest.raises(InvalidHandshake) as info:
        parse_request(b"\x16\x03\x01\x02\x00\x01", DEFAULT_LIMITS)
    assert info.value.status == 400
    with pytest.raises(InvalidHandshake) as info:
        parse_request(b"GET / HTTP/1.0\r\nHost: x", DEFAULT_LIMITS)
    assert info.value.status == 505
    # An unfinished but plausible start line is not refused.
    assert parse_request(b"GET / HTTP/1.", DEFAULT_LIMITS) is None
    assert parse_request(b"GET / HTTP/1.1\r", DEFAULT_LIMITS) is None


# ---------------------------------------------------------------------------------------------
# Limits (431 on a server)


def head_of_size(size: int) -> bytes:
    """A valid request head of exactly ``size`` bytes."""
    base = request_head("X: ")
    return request_head("X: " + "a" * (size - len(base)))


def test_head_size_limit() -> None:
    limits = Limits(max_head_size=1000, max_line_size=2000)
    head = head_of_size(1000)
    assert len(head) == 1000
    parsed = parse_request(head, limits)
    assert parsed is not None
    assert parsed[1] == 1000
    with pytest.raises(InvalidHandshake) as info:
        parse_request(head_of_size(1001), limits)
    assert info.value.status == 431


def test_head_size_limit_incomplete() -> None:
    limits = Limits(max_head_size=1000, max_line_size=2000)
    head = head_of_size(1001)
    # Incomplete and short of the limit: wait.
    assert parse_request(head[:999], limits) is None
    # Incomplete but already max_head_size bytes long: no valid head can follow.
    for size in (1000, 1001, 5000):
        data = (head * 5)[:size].replace(b"\r\n\r\n", b"\r\nX: \r\n")
        with pytest.raises(InvalidHandshake) as info:
            parse_request(data, limits)
        assert info.value.status == 431


def test_line_size_limit() -> None:
    limits = Limits(max_line_size=100)
    assert parse_request(request_head("X: " + "a" * 97), limits) is not None
    with pytest.raises(InvalidHandshake) as info:
        parse_request(request_head("X: " + "a" * 98), limits)
    assert info.value.status == 431
    # The request line counts too.
    assert parse_request(request_head(line="GET /" + "a" * 86 + " HTTP/1.1"), limits) is not None
    with pytest.raises(InvalidHandshake) as info:
        parse_request(request_head(line="GET /" + "a" * 87 + " HTTP/1.1"), limits)
    assert info.value.status == 431


def test_line_size_limit_incomplete() -> None:
    limits = Limits(max_line_size=100)
    # A header line that is still growing: refused once it is longer than the limit, even
    # though neither the line nor the head is complete.
    prefix = b"GET / HTTP/1.1\r\nX: "
    assert parse_request(prefix + b"a" * 97, limits) is None
    assert parse_request(prefix + b"a" * 97 + b"\r", limits) is None  # CR of the CRLF
    with pytest.raises(InvalidHandshake) as info:
        parse_request(prefix + b"a" * 98, limits)
    assert info.value.status == 431
    # A complete but long line in an incomplete head.
    with pytest.raises(InvalidHandshake) as info:
        parse_request(prefix + b"a" * 98 + b"\r\nY: 1", limits)
    assert info.value.status == 431
    # The request line while it arrives.
    with pytest.raises(InvalidHandshake) as info:
        parse_request(b"GET /" + b"a" * 200, limits)
    assert info.value.status == 431


def test_header_count_limit() -> None:
    limits = Limits(max_headers=10)
    fields = [f"X-{i}: {i}" for i in range(10)]
    parsed = parse_request(request_head(*fields), limits)
    assert parsed is not None
    assert len(parsed[0].headers) == 10
    with pytest.raises(InvalidHandshake) as info:
        parse_request(request_head(*fields, "X-10: 10"), limits)
    assert info.value.status == 431


def test_header_count_limit_incomplete() -> None:
    limits = Limits(max_headers=10)
    head = request_head(*(f"X-{i}: {i}" for i in range(11)))
    # Ten complete field lines and the start of an eleventh: still fine.
    cut = head.index(b"X-10") + 2
    assert parse_request(head[:cut], limits) is None
    # Eleven complete field lines: refused before the blank line arrives.
    with pytest.raises(InvalidHandshake) as info:
        parse_request(head[:-2], limits)
    assert info.value.status == 431


def test_response_limits_raise_plain_invalid_handshake() -> None:
    limits = Limits(max_head_size=100, max_line_size=50, max_headers=2)
    for data in (
        b"HTTP/1.1 101 OK\r\n" + b"X: 1\r\n" * 20,
        b"HTTP/1.1 101 OK\r\nX: " + b"a" * 60,
        b"HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
    ):
        with pytest.raises(InvalidHandshake) as info:
            parse_response(data, limits)
        assert type(info.value) is InvalidHandshake
        assert info.value.status == 400  # the default: a client does not answer in HTTP


# ---------------------------------------------------------------------------------------------
# Linear work: large inputs are handled in one pass (no timing, only completion)


def test_large_inputs_within_limits() -> None:
    size = 100 * 1024
    limits = Limits(max_head_size=4 * size, max_line_size=2 * size, max_headers=10_000)
    # One huge field value full of spaces and colons (strip/find/translate are linear).
    value = b" \t:" * (size // 3)
    parsed = parse_request(b"GET / HTTP/1.1\r\nX: a" + value + b"b\r\n\r\n", limits)
    assert parsed is not None
    assert len(parsed[0].headers["X"]) == len(value) + 2
    # Thousands of short lines.
    junk = b"GET / HTTP/1.1\r\n" + b"X:\r\n" * (size // 4) + b"\r\n"
    with pytest.raises(InvalidHandshake) as info:
        parse_request(junk, limits)
    assert info.value.status == 431  # more than 10,000 fields
    # Almost a terminator, over and over, without ever completing: "\r\n\r" + "x".
    almost = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n\rx" * (size // 8)
    with pytest.raises(InvalidHandshake):
        parse_request(almost, limits)
    # Junk with no line end at all: the incomplete-head checks refuse it from its size.
    with pytest.raises(InvalidHandshake) as info:
        parse_request(b"GET /" + b"a" * (3 * size), limits)
    assert info.value.status == 431
    # An extension header of 100 KB (one left-to-right scan).
    offer = "; ".join(f"p{i}={i}" for i in range(size // 10))
    (name, params), *_ = parse_extensions([f"x-ext; {offer}"])
    assert name == "x-ext"
    assert len(params) == size // 10
    assert parse_extensions([", " * size]) == []
    assert len(parse_token_list(["a, " * size])) == size


# ---------------------------------------------------------------------------------------------
# Fuzzing with a contract: None, a parsed head, or InvalidHandshake; nothing else.

_FRAGMENTS = st.sampled_from(
    [
        b"GET",
        b" ",
        b"/",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"\r\n",
        b"\r",
        b"\n",
        b":",
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"101",
        b"200",
        b"5",
        b"99999999999999999999999",
        b",",
        b"\t",
        b"\x00",
        b"\xff",
        b"a",
    ]
)
_SMALL_LIMITS = Limits(max_head_size=64, max_line_size=24, max_headers=3, max_body_size=16)


def _check_contract(
    parse: Callable[[bytes, Limits], tuple[object, int] | None], data: bytes, limits: Limits
) -> None:
    try:
        result = parse(data, limits)
    except InvalidHandshake:
        return
    if result is not None:
        _, consumed = result
        assert 0 < consumed <= len(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for limits in (DEFAULT_LIMITS, _SMALL_LIMITS):
        _check_contract(parse_request, data, limits)
        _check_contract(parse_response, data, limits)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS, max_size=60).map(b"".join), st.sampled_from([b"GET ", b"HTTP/1.1 "]))
def test_fuzz_http_like_bytes(data: bytes, start: bytes) -> None:
    for limits in (DEFAULT_LIMITS, _SMALL_LIMITS):
        _check_contract(parse_request, start + data, limits)
        _check_contract(parse_response, start + data, limits)


@settings(max_examples=300)
@given(st.lists(st.text(max_size=30), max_size=4))
def test_fuzz_header_grammar(values: list[str]) -> None:
    for parse in (parse_extensions, parse_token_list, parse_subprotocols):
        try:
            parse(values)
        except InvalidHandshake as exc:
            assert exc.status == 400


@given(st.binary(max_size=200))
def test_fuzz_request_then_check(data: bytes) -> None:
    try:
        parsed = parse_request(b"GET / HTTP/1.1\r\n" + data, DEFAULT_LIMITS)
        if parsed is not None:
            check_request(parsed[0])
    except InvalidHandshake as exc:
        assert exc.status in (400, 426, 431)


# ---------------------------------------------------------------------------------------------
# parse_response


def test_response_without_reason() -> None:
    for data in (b"HTTP/1.1 101 \r\n\r\n", b"HTTP/1.1 101\r\n\r\n"):
        parsed = parse_response(data, DEFAULT_LIMITS)
        assert parsed is not None
        assert parsed[0].reason == ""
        assert parsed[1] == len(data)


def test_response_reason_may_hold_spaces_and_obs_text() -> None:
    parsed = parse_response(b"HTTP/1.1 404 Not\tF\xf6und here\r\n\r\n", DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].reason == "Not\tF\xf6und here"


def test_response_body_waits_for_content_length() -> None:
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n"
    assert parse_response(head, DEFAULT_LIMITS) is None
    assert parse_response(head + b"123456789", DEFAULT_LIMITS) is None
    parsed = parse_response(head + b"0123456789extra", DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].body == b"0123456789"
    assert parsed[1] == len(head) + 10


def test_response_body_limit() -> None:
    limits = Limits(max_body_size=10)
    ok = b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\n0123456789"
    assert parse_response(ok, limits) is not None
    # Refused from the declared length, before the body arrives.
    with pytest.raises(InvalidHandshake):
        parse_response(b"HTTP/1.1 500 Oops\r\nContent-Length: 11\r\n\r\n", limits)
    with pytest.raises(InvalidHandshake):
        parse_response(b"HTTP/1.1 500 Oops\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", limits)


def test_response_without_content_length_does_not_wait() -> None:
    data = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nthe rest"
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].body == b""
    assert parsed[1] == data.index(b"the rest")


def test_response_chunked_body_is_not_read() -> None:
    data = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].body == b""
    assert data[parsed[1] :].startswith(b"5\r\n")


@pytest.mark.parametrize("status", [101, 100, 204, 304])
def test_responses_without_body(status: int) -> None:
    data = f"HTTP/1.1 {status} X\r\nContent-Length: 4\r\n\r\n".encode()
    parsed = parse_response(data + b"\x81\x00", DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].body == b""
    assert parsed[1] == len(data)


def test_response_repeated_identical_content_length() -> None:
    data = b"HTTP/1.1 403 F\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc"
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].body == b"abc"


def test_response_http_1_0() -> None:
    parsed = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n", DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0].http_version == "HTTP/1.0"
    with pytest.raises(InvalidStatus):
        check_response(parsed[0], RFC_KEY)


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/2.0 101 OK\r\n\r\n",
        b"HTTP/1.1 1O1 OK\r\n\r\n",
        b"HTTP/1.1 1010 OK\r\n\r\n",
        b"HTTP/1.1 99 OK\r\n\r\n",
        b"HTTP/1.1 600 OK\r\n\r\n",
        b"HTTP/1.1  101 OK\r\n\r\n",
        b"http/1.1 101 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 101 O\x00K\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n continued\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nUpgrade\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nX: \x01\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        b"HTTP/1.1 101 OK\nUpgrade: websocket\n\n",
    ],
)
def test_parse_response_invalid(data: bytes) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_response(data, DEFAULT_LIMITS)
    assert type(info.value) is InvalidHandshake


# ---------------------------------------------------------------------------------------------
# Serialization


def test_serialize_response_default_reason_and_body() -> None:
    response = Response(404, Headers([("Content-Length", "3")]), b"abc")
    assert serialize_response(response) == (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert serialize_response(Response(599, Headers())) == b"HTTP/1.1 599 \r\n\r\n"
    assert serialize_response(Response(200, Headers(), reason="Fine")) == (
        b"HTTP/1.1 200 Fine\r\n\r\n"
    )


def test_serialize_keeps_latin1_octets() -> None:
    data = b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n"
    parsed = parse_request(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert serialize_request(parsed[0]) == data


@pytest.mark.parametrize(
    "request_",
    [
        Request("/ x", Headers()),
        Request("", Headers()),
        Request("/\u00e9", Headers()),
        Request("/", Headers(), method="G T"),
        Request("/", Headers(), method=""),
        Request("/", Headers(), http_version="HTTP/1.1\r\nX: y"),
        Request("/", Headers([("X", "a\r\nInjected: 1")])),
        Request("/", Headers([("X", "a\nb")])),
        Request("/", Headers([("X", "a\x00b")])),
        Request("/", Headers([("X", "\u20ac")])),  # not latin-1
        Request("/", Headers([("X Y", "a")])),
        Request("/", Headers([("X:", "a")])),
        Request("/", Headers([("", "a")])),
    ],
)
def test_serialize_request_refuses_what_cannot_be_sent(request_: Request) -> None:
    with pytest.raises(LocalProtocolError):
        serialize_request(request_)


@pytest.mark.parametrize(
    "response",
    [
        Response(101, Headers(), reason="OK\r\nX: y"),
        Response(101, Headers([("X", "a\r\n")])),
        # A usual (pre-encoded) name or value does not let its partner through unchecked.
        Response(101, Headers([("Upgrade", "websocket\r\nX: y")])),
        Response(101, Headers([("Up grade", "websocket")])),
        Response(101, Headers(), http_version="HTTP/1.1\r\n"),
        Response(42, Headers()),
        Response(1000, Headers()),
    ],
)
def test_serialize_response_refuses_what_cannot_be_sent(response: Response) -> None:
    with pytest.raises(LocalProtocolError):
        serialize_response(response)


# ---------------------------------------------------------------------------------------------
# build_request / check_response (client)


def test_build_request_minimal() -> None:
    request, key = build_request(parse_uri("ws://example.com:8080/chat?room=1"))
    assert request.method == "GET"
    assert request.target == "/chat?room=1"
    assert request.http_version == "HTTP/1.1"
    assert request.headers.items() == [
        ("Host", "example.com:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", USER_AGENT),
    ]
    assert len(base64.b64decode(key)) == 16
    # What wskit builds, wskit's server side accepts.
    parsed = parse_request(serialize_request(request), DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed[0] == request
    assert check_request(parsed[0]) == key


def test_build_request_full() -> None:
    request, key = build_request(
        parse_uri("wss://al%20ice:p%40ss@example.com/"),
        subprotocols=["chat", "superchat"],
        extensions=[
            ("permessage-deflate", [("client_max_window_bits", None)]),
            ("permessage-deflate", []),
        ],
        user_agent=None,
        origin="https://example.com",
        extra_headers=[("X-Trace", "1"), ("X-Trace", "2")],
    )
    assert request.headers.items() == [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        (
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits, permessage-deflate",
        ),
        ("Origin", "https://example.com"),
        ("Authorization", "Basic " + base64.b64encode(b"al ice:p@ss").decode()),
        ("X-Trace", "1"),
        ("X-Trace", "2"),
    ]


def test_build_request_extra_headers_override() -> None:
    request, _ = build_request(
        parse_uri("ws://u:p@10.0.0.1/"),
        origin="http://a",
        extra_headers=Headers(
            {"User-Agent": "mine", "host": "virtual.example", "Authorization": "Bearer t"}
        ),
    )
    headers = request.headers
    assert headers.items()[0] == ("Host", "virtual.example")
    assert headers.get_all("Host") == ["virtual.example"]
    assert headers.get_all("User-Agent") == ["mine"]
    assert headers.get_all("Authorization") == ["Bearer t"]
    assert headers.get_all("Origin") == ["http://a"]


def test_build_request_keys_are_fresh() -> None:
    wsuri = parse_uri("ws://h/")
    assert build_request(wsuri)[1] != build_request(wsuri)[1]


@pytest.mark.parametrize("subprotocols", [["a b"], [""], ["a,b"], ["\u00e9"]])
def test_build_request_refuses_invalid_subprotocols(subprotocols: list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        build_request(parse_uri("ws://h/"), subprotocols=subprotocols)


def response_101(**changes: str | None) -> Response:
    headers = Headers(
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": RFC_ACCEPT}
    )
    for key, value in changes.items():
        name = key.replace("_", "-")
        headers.remove(name)
        if value is not None:
            headers.add(name, value)
    return Response(101, headers)


def test_check_response_accepts_variants() -> None:
    check_response(response_101(), RFC_KEY)
    check_response(response_101(Upgrade="WebSocket", Connection="keep-alive, UPGRADE"), RFC_KEY)
    response = response_101()
    response.headers.add("Connection", "close")
    check_response(response, RFC_KEY)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Upgrade": None}, "Upgrade"),
        ({"Upgrade": "h2c"}, "Upgrade"),
        ({"Upgrade": "websocket, h2c"}, "Upgrade"),
        ({"Connection": None}, "Connection"),
        ({"Connection": "keep-alive"}, "Connection"),
        ({"Connection": "upgrade-not"}, "Connection"),
        ({"Connection": "up grade"}, "token"),
        ({"Sec_WebSocket_Accept": None}, "missing Sec-WebSocket-Accept"),
        ({"Sec_WebSocket_Accept": "x" + RFC_ACCEPT}, "wrong Sec-WebSocket-Accept"),
        ({"Sec_WebSocket_Accept": accept_key("other")}, "wrong Sec-WebSocket-Accept"),
    ],
)
def test_check_response_invalid(changes: dict[str, str | None], message: str) -> None:
    with pytest.raises(InvalidHandshake, match=message) as info:
        check_response(response_101(**changes), RFC_KEY)
    assert not isinstance(info.value, InvalidStatus)


def test_check_response_repeated_accept() -> None:
    response = response_101()
    response.headers.add("Sec-WebSocket-Accept", RFC_ACCEPT)
    with pytest.raises(InvalidHandshake, match="repeated"):
        check_response(response, RFC_KEY)


def test_check_response_101_in_http_1_0() -> None:
    response = Response(101, response_101().headers, http_version="HTTP/1.0")
    with pytest.raises(InvalidHandshake, match=r"HTTP/1\.0"):
        check_response(response, RFC_KEY)


@pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500])
def test_check_response_non_101(status: int) -> None:
    response = Response(status, Headers(), b"body")
    with pytest.raises(InvalidStatus) as info:
        check_response(response, RFC_KEY)
    assert info.value.response is response
    assert info.value.status == status


# ---------------------------------------------------------------------------------------------
# check_request / accept_response / reject_response (server)


def test_check_request_accepts_variants() -> None:
    assert check_request(upgrade_request()) == RFC_KEY
    # Case-insensitive tokens, lists, and several field lines.
    request = upgrade_request(Upgrade="h2c, WebSocket", Connection="keep-alive, , upgrade")
    assert check_request(request) == RFC_KEY
    request = upgrade_request(Connection="keep-alive")
    request.headers.add("connection", "Upgrade")
    assert check_request(request) == RFC_KEY


@pytest.mark.parametrize(
    ("request_", "status", "headers"),
    [
        (Request("/", upgrade_request().headers, method="POST"), 405, (("Allow", "GET"),)),
        (Request("/", upgrade_request().headers, method="get"), 405, (("Allow", "GET"),)),
        (Request("/", upgrade_request().headers, http_version="HTTP/1.0"), 505, ()),
        (upgrade_request(Host=None), 400, ()),
        (upgrade_request(Connection=None), 400, ()),
        (upgrade_request(Connection="keep-alive"), 400, ()),
        (upgrade_request(Connection="Upgrade; x"), 400, ()),
        (upgrade_request(Upgrade=None), 400, ()),
        (upgrade_request(Upgrade="h2c"), 400, ()),
        (upgrade_request(Upgrade="websocket2"), 400, ()),
        # RFC 6455 4.4: 426 and the versions the server supports.
        (upgrade_request(Sec_WebSocket_Version=None), 426, (("Sec-WebSocket-Version", "13"),)),
        (upgrade_request(Sec_WebSocket_Version="8"), 426, (("Sec-WebSocket-Version", "13"),)),
        (upgrade_request(Sec_WebSocket_Version="13, 8"), 426, (("Sec-WebSocket-Version", "13"),)),
        (upgrade_request(Sec_WebSocket_Version="013"), 426, (("Sec-WebSocket-Version", "13"),)),
        (upgrade_request(Sec_WebSocket_Key=None), 400, ()),
        (upgrade_request(Sec_WebSocket_Key=""), 400, ()),
        (upgrade_request(Sec_WebSocket_Key="not base64!"), 400, ()),
        (upgrade_request(Sec_WebSocket_Key=base64.b64encode(b"x" * 15).decode()), 400, ()),
        (upgrade_request(Sec_WebSocket_Key=base64.b64encode(b"x" * 17).decode()), 400, ()),
        (upgrade_request(Sec_WebSocket_Key=RFC_KEY[:-2]), 400, ()),
        (upgrade_request(Sec_WebSocket_Key="\u00e9" * 24), 400, ()),
    ],
)
def test_check_request_invalid(
    request_: Request, status: int, headers: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(request_)
    assert info.value.status == status
    assert info.value.headers == headers


@pytest.mark.parametrize("name", ["Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"])
def test_check_request_repeated_field(name: str) -> None:
    request = upgrade_request()
    request.headers.add(name, request.headers[name])
    with pytest.raises(InvalidHandshake) as info:
        check_request(request)
    assert info.value.status == (426 if name == "Sec-WebSocket-Version" else 400)


def test_accept_response() -> None:
    response = accept_response(
        RFC_KEY,
        subprotocol="chat",
        extensions=[("permessage-deflate", [("server_max_window_bits", "10")])],
        extra_headers={"Set-Cookie": "a=b"},
    )
    assert response.status == 101
    assert response.body == b""
    assert response.headers.items() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", RFC_ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=10"),
        ("Server", SERVER),
        ("Set-Cookie", "a=b"),
    ]
    check_response(response, RFC_KEY)
    overridden = accept_response(RFC_KEY, extra_headers=[("Server", "mine")])
    assert overridden.headers.get_all("Server") == ["mine"]
    assert "Sec-WebSocket-Protocol" not in overridden.headers


def test_reject_response_defaults() -> None:
    response = reject_response(403)
    assert response.status == 403
    assert response.reason == "Forbidden"
    assert response.body == b"Forbidden\n"
    assert response.headers.items() == [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "10"),
        ("Connection", "close"),
    ]
    data = serialize_response(response)
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    assert parsed == (response, len(data))


def test_reject_response_custom() -> None:
    response = reject_response(
        404,
        "caf\u00e9",
        [("Content-Type", "text/html"), ("Content-Length", "999"), ("X", "y")],
    )
    assert response.body == "caf\u00e9".encode()
    assert response.headers.items() == [
        ("Content-Length", "5"),
        ("Connection", "close"),
        ("Content-Type", "text/html"),
        ("X", "y"),
    ]
    assert reject_response(499).body == b"499\n"  # no standard phrase


def test_reject_response_426_names_the_upgrade() -> None:
    # RFC 9110 15.5.22: "The server MUST send an Upgrade header field in a 426 response".
    response = reject_response(426, headers=[("Sec-WebSocket-Version", "13")])
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Connection"] == "Upgrade, close"
    assert response.headers["Sec-WebSocket-Version"] == "13"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (request_head("Host: h", "X: " + "a" * 9000), 431),
    ],
)
def test_error_response_for_parse_errors(data: bytes, status: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_request(data, DEFAULT_LIMITS)
    response = error_response(info.value)
    assert response.status == status
    assert response.body == (info.value.reason + "\n").encode()
    assert serialize_response(response).startswith(f"HTTP/1.1 {status} ".encode())


def test_error_response_for_check_errors() -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(Request("/", upgrade_request().headers, method="POST"))
    response = error_response(info.value)
    assert response.status == 405
    assert response.reason == "Method Not Allowed"
    assert response.headers["Allow"] == "GET"
    assert response.headers["Connection"] == "close"
    with pytest.raises(InvalidHandshake) as info:
        check_request(upgrade_request(Sec_WebSocket_Version="8"))
    response = error_response(info.value)
    assert response.status == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"


# ---------------------------------------------------------------------------------------------
# Header grammar


def test_parse_token_list() -> None:
    assert parse_token_list([]) == []
    assert parse_token_list([""]) == []
    assert parse_token_list(["a"]) == ["a"]
    assert parse_token_list([" a ,\tb,, ,c ", "d", ",e,"]) == ["a", "b", "c", "d", "e"]
    assert parse_token_list(["!#$%&'*+-.^_`|~09azAZ"]) == ["!#$%&'*+-.^_`|~09azAZ"]


@pytest.mark.parametrize("value", ["a b", "a;b", "a/b", '"a"', "a=b", "\u00e9", "a\x00"])
def test_parse_token_list_invalid(value: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_token_list([value])
    assert info.value.status == 400


def test_subprotocols() -> None:
    assert parse_subprotocols(["chat, superchat", "v2.json"]) == ["chat", "superchat", "v2.json"]
    assert serialize_subprotocols(["chat", "superchat"]) == "chat, superchat"
    with pytest.raises(InvalidHandshake):
        parse_subprotocols(["chat super"])
    with pytest.raises(LocalProtocolError):
        serialize_subprotocols(["a b"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (
            [
                "permessage-deflate; client_max_window_bits, permessage-deflate; "
                'server_max_window_bits="10"'
            ],
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("permessage-deflate", [("server_max_window_bits", "10")]),
            ],
        ),
        (
            ['foo;a=1;b; c = 2 ;d="x\\-y"', "bar", " , ,baz ;\tq"],
            [
                ("foo", [("a", "1"), ("b", None), ("c", "2"), ("d", "x-y")]),
                ("bar", []),
                ("baz", [("q", None)]),
            ],
        ),
        # RFC 6455 9.1 examples.
        (["foo, bar; baz=2"], [("foo", []), ("bar", [("baz", "2")])]),
        (
            [
                "deflate-stream",
                "mux; max-channels=4; flow-control, deflate-stream",
                "private-extension",
            ],
            [
                ("deflate-stream", []),
                ("mux", [("max-channels", "4"), ("flow-control", None)]),
                ("deflate-stream", []),
                ("private-extension", []),
            ],
        ),
        (['x; p="1"'], [("x", [("p", "1")])]),
    ],
)
def test_parse_extensions(
    values: list[str], expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    "value",
    [
        "a b",
        ";a",
        "a;",
        "a;;b",
        "a; =1",
        "a; b=",
        "a; b=1 2",
        "a; b==1",
        'a; b="1',  # unterminated
        'a; b="1 2"',  # RFC 6455 9.1: not a token after unquoting
        'a; b=""',
        'a; b="x,y"',
        'a; b="x\\"',
        'a; b="\x00"',
        'a; b="x" y',
        "a=1",
        "\u00e9",
        "a; \u00e9",
        "a; b=\u00e9",
        "a, b c",
        '"a"',
    ],
)
def test_parse_extensions_invalid(value: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_extensions([value])
    assert info.value.status == 400


def test_serialize_extensions_round_trip() -> None:
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-other", []),
    ]
    value = serialize_extensions(extensions)
    assert value == (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-other"
    )
    assert parse_extensions([value]) == extensions
    assert serialize_extensions([]) == ""


@pytest.mark.parametrize(
    "extensions",
    [
        [("a b", [])],
        [("", [])],
        [("a", [("b c", None)])],
        [("a", [("b", "1 2")])],
        [("a", [("b", "")])],
        [("a", [("b", "x\r\nY: z")])],
    ],
)
def test_serialize_extensions_invalid(
    extensions: list[tuple[str, list[tuple[str, str | None]]]],
) -> None:
    with pytest.raises(LocalProtocolError):
        serialize_extensions(extensions)


# ---------------------------------------------------------------------------------------------
# Interoperability with real peers (websockets and wsproto sans-I/O implementations)


def test_websockets_client_request_is_accepted() -> None:
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri as ws_parse_uri

    client = ClientProtocol(ws_parse_uri("ws://example.com:8080/chat?x=1"), subprotocols=["chat"])  # type: ignore[list-item]
    client.send_request(client.connect())
    data = b"".join(client.data_to_send())
    parsed = parse_request(data, DEFAULT_LIMITS)
    assert parsed is not None
    request, consumed = parsed
    assert consumed == len(data)
    assert request.target == "/chat?x=1"
    key = check_request(request)
    response = accept_response(key, subprotocol="chat")
    client.receive_data(serialize_response(response) + SERVER_FRAME)
    events = client.events_received()
    assert client.state.name == "OPEN"
    assert client.subprotocol == "chat"
    assert [type(event).__name__ for event in events] == ["Response", "Frame"]


def test_websockets_server_accepts_our_request() -> None:
    from websockets.server import ServerProtocol

    server = ServerProtocol()
    request, key = build_request(parse_uri("ws://example.com/path"), origin="http://example.com")
    server.receive_data(serialize_request(request))
    (ws_request,) = server.events_received()
    server.send_response(server.accept(ws_request))  # type: ignore[arg-type]
    data = b"".join(server.data_to_send())
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    response, consumed = parsed
    assert consumed == len(data)
    check_response(response, key)


def test_websockets_server_rejection_is_parsed() -> None:
    from websockets.server import ServerProtocol

    server = ServerProtocol()
    request, key = build_request(parse_uri("ws://example.com/path"))
    server.receive_data(serialize_request(request))
    server.events_received()
    server.send_response(server.reject(403, "go away\n"))
    data = b"".join(server.data_to_send())
    parsed = parse_response(data, DEFAULT_LIMITS)
    assert parsed is not None
    response, _ = parsed
    assert response.status == 403
    assert response.body == b"go away\n"
    with pytest.raises(InvalidStatus):
        check_response(response, key)


def test_wsproto_client_request_and_extension_offer() -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection
    from wsproto.events import Request as WsprotoRequest
    from wsproto.extensions import PerMessageDeflate

    client = WSConnection(ConnectionType.CLIENT)
    data = client.send(
        WsprotoRequest(
            host="example.com",
            target="/ws",
            subprotocols=["a", "b"],
            extensions=[PerMessageDeflate()],
        )
    )
    parsed = parse_request(data, DEFAULT_LIMITS)
    assert parsed is not None
    request = parsed[0]
    key = check_request(request)
    assert parse_subprotocols(request.headers.get_all("Sec-WebSocket-Protocol")) == ["a", "b"]
    ((name, params),) = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
    assert name == "permessage-deflate"
    assert dict(params)["client_max_window_bits"] == "15"
    response = accept_response(key, subprotocol="b")
    client.receive_data(serialize_response(response))
    (event,) = client.events()
    assert isinstance(event, AcceptConnection)
    assert event.subprotocol == "b"


def test_common_header_names_and_values_share_one_string_across_requests() -> None:
    """Handshakes are kept for a connection's life: the usual names and values are not
    allocated again for every connection (and lookups still see exactly what was sent)."""
    first = parse_request(RFC_REQUEST, DEFAULT_LIMITS)
    second = parse_request(bytes(RFC_REQUEST), DEFAULT_LIMITS)
    assert first is not None and second is not None
    pairs = zip(first[0].headers.items(), second[0].headers.items(), strict=True)
    shared = [a for a, b in pairs if a[0] is b[0]]
    assert [name for name, _ in shared][:3] == ["Host", "Upgrade", "Connection"]
    upgrade = [v for n, v in first[0].headers.items() if n == "Upgrade"]
    assert upgrade == ["websocket"]
    # A value that is not one of the shared ones is still checked.
    bad = RFC_REQUEST.replace(b"Upgrade: websocket", b"Upgrade: web\x7fsocket")
    with pytest.raises(InvalidHandshake, match="invalid character"):
        parse_request(bad, DEFAULT_LIMITS)

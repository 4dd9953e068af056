"""Tests for wskit.core.uri: ws:// and wss:// URIs (RFC 6455 section 3)."""

from __future__ import annotations

import pytest

from wskit.core.uri import WSURI, parse_uri
from wskit.exceptions import InvalidURI


@pytest.mark.parametrize(
    ("uri", "secure", "host", "port", "resource_name"),
    [
        ("ws://example.com", False, "example.com", 80, "/"),
        ("ws://example.com/", False, "example.com", 80, "/"),
        ("wss://example.com", True, "example.com", 443, "/"),
        ("ws://example.com:8080/chat", False, "example.com", 8080, "/chat"),
        ("wss://example.com:8443/a/b?x=1&y=2", True, "example.com", 8443, "/a/b?x=1&y=2"),
        ("ws://example.com?q", False, "example.com", 80, "/?q"),
        ("WS://EXAMPLE.com/Path", False, "example.com", 80, "/Path"),
        ("WsS://example.com", True, "example.com", 443, "/"),
        ("ws://127.0.0.1:9000", False, "127.0.0.1", 9000, "/"),
        ("ws://[::1]/", False, "::1", 80, "/"),
        ("wss://[2001:DB8::1]:4443/x", True, "2001:db8::1", 4443, "/x"),
        ("ws://example.com:/", False, "example.com", 80, "/"),  # RFC 3986: empty port
        ("ws://example.com:65535", False, "example.com", 65535, "/"),
        ("  ws://example.com/  ", False, "example.com", 80, "/"),
        # Already percent-encoded text is kept as it is.
        ("ws://example.com/a%20b?c=%2F", False, "example.com", 80, "/a%20b?c=%2F"),
        # Reserved characters keep their meaning.
        ("ws://example.com/p;x=1/@:!$&'()*+,=?a=[b]", False, "example.com", 80, None),
    ],
)
def test_parse_valid(
    uri: str, secure: bool, host: str, port: int, resource_name: str | None
) -> None:
    wsuri = parse_uri(uri)
    assert wsuri.secure is secure
    assert wsuri.host == host
    assert wsuri.port == port
    assert wsuri.resource_name == (resource_name or uri.strip().partition("example.com")[2])
    assert wsuri.user_info is None


def test_iri_is_percent_encoded_as_utf8() -> None:
    wsuri = parse_uri("ws://example.com/caf\u00e9/\u03bb?q=\u00fc ber")
    assert wsuri.resource_name == "/caf%C3%A9/%CE%BB?q=%C3%BC%20ber"
    assert wsuri.resource_name.isascii()


def test_unsafe_ascii_in_path_is_percent_encoded() -> None:
    wsuri = parse_uri('ws://example.com/a b"<>\\^`{|}')
    assert wsuri.resource_name == "/a%20b%22%3C%3E%5C%5E%60%7B%7C%7D"


def test_internationalized_host_uses_idna() -> None:
    wsuri = parse_uri("ws://b\u00fccher.example/")
    assert wsuri.host == "xn--bcher-kva.example"
    assert wsuri.host_header == "xn--bcher-kva.example"


def test_user_info() -> None:
    wsuri = parse_uri("wss://alice:s%40cret:x@example.com/")
    assert wsuri.user_info == ("alice", "s@cret:x")
    assert wsuri.host == "example.com"
    assert "s@cret" not in repr(wsuri)  # credentials stay out of logs
    assert parse_uri("ws://bob@example.com/").user_info == ("bob", "")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://example.com/", "example.com"),
        ("ws://example.com:80/", "example.com"),
        ("ws://example.com:443/", "example.com:443"),
        ("wss://example.com:443/", "example.com"),
        ("wss://example.com:80/", "example.com:80"),
        ("ws://example.com:8080/", "example.com:8080"),
        ("ws://[::1]/", "[::1]"),
        ("wss://[::1]:9443/", "[::1]:9443"),
    ],
)
def test_host_header(uri: str, expected: str) -> None:
    assert parse_uri(uri).host_header == expected


def test_wsuri_is_frozen() -> None:
    wsuri = WSURI(secure=False, host="h", port=80, resource_name="/", user_info=None)
    with pytest.raises(AttributeError):
        wsuri.port = 81  # type: ignore[misc]


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://example.com/", "scheme"),
        ("https://example.com/", "scheme"),
        ("example.com", "scheme"),
        ("", "scheme"),
        ("ws:/path", "host"),
        ("ws:path", "host"),
        ("ws://", "host"),
        ("ws:///path", "host"),
        ("ws://user@/path", "host"),
        ("ws://:80/", "host"),
        # RFC 6455 3: fragments "MUST NOT be used on these URIs".
        ("ws://example.com/#frag", "fragment"),
        ("ws://example.com/#", "fragment"),
        ("ws://example.com/?a=b#c", "fragment"),
        ("ws://example.com:abc/", "port"),
        ("ws://example.com:0/", "port"),
        ("ws://example.com:65536/", "port"),
        ("ws://example.com:123456/", "port"),
        ("ws://example.com:+80/", "port"),
        ("ws://example.com:-1/", "port"),
        ("ws://example.com:\uff18\uff10/", "port"),  # fullwidth digits
        ("ws://example.com:80:81/", "port"),
        ("ws://[::1/", ""),
        ("ws://[not-ipv6]/", "IPv6"),
        ("ws://[::1]x/", ""),
        ("ws://exa mple.com/", "host"),
        ("ws://exa<mple.com/", "host"),
        ("ws://example.com/\r\nX-Injected: 1", "control"),
        ("ws://example.com/\x00", "control"),
        ("ws://exa\tmple.com/", "control"),
    ],
)
def test_parse_invalid(uri: str, why: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert info.value.uri == uri
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)

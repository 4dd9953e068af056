"""The opening handshake (RFC 6455 section 4) over HTTP/1.1 (RFC 9110, RFC 9112), sans I/O.

Parsing: :func:`parse_request` (server) and :func:`parse_response` (client) read one HTTP head
from the start of a buffer and return ``None`` until it is complete. They are bounded and
linear: the end of the head is found with one ``bytes.find`` limited to ``max_head_size``, and
every check is a plain ``bytes`` method (``split``, ``strip``, ``translate``); there is no
regular expression, so nothing can backtrack. Limits are enforced before the head is complete,
so a peer that never sends the blank line cannot make the caller buffer more than
``max_head_size`` bytes.

Checking: :func:`check_request` and :func:`check_response` apply RFC 6455 4.2.1 and 4.1 to a
parsed head. Building: :func:`build_request`, :func:`accept_response`, :func:`reject_response`
and the ``serialize_*`` functions, which refuse (with
:class:`~wskit.exceptions.LocalProtocolError`) anything that is not valid on the wire, such as a
CR or LF in a header value. Header grammar: :func:`parse_token_list`, :func:`parse_extensions`
and :func:`parse_subprotocols` with their ``serialize_*`` counterparts.

Errors caused by the peer raise :class:`~wskit.exceptions.InvalidHandshake`; on a server its
``status`` (400, 405, 426, 431, 505) and ``headers`` make the answer, see :func:`error_response`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import sys
from collections.abc import Sequence
from http import HTTPStatus
from importlib import metadata

from wskit.core.events import Request, Response
from wskit.core.extensions.base import ExtensionParameter
from wskit.core.headers import Headers, HeadersLike
from wskit.core.limits import Limits
from wskit.core.uri import WSURI
from wskit.exceptions import InvalidHandshake, InvalidStatus, LocalProtocolError

__all__ = [
    "GUID",
    "SERVER",
    "USER_AGENT",
    "WS_VERSION",
    "accept_key",
    "accept_response",
    "build_request",
    "check_request",
    "check_response",
    "error_response",
    "generate_key",
    "parse_extensions",
    "parse_request",
    "parse_response",
    "parse_subprotocols",
    "parse_token_list",
    "reject_response",
    "serialize_extensions",
    "serialize_request",
    "serialize_response",
    "serialize_subprotocols",
]

#: RFC 6455 1.3: the server concatenates the key "with the Globally Unique Identifier (GUID,
#: [RFC4122]) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" in string form".
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: RFC 6455 4.1: "The request MUST include a header field with the name
#: |Sec-WebSocket-Version|. The value of this header field MUST be 13."
WS_VERSION = "13"


def _package_version() -> str:
    try:
        return metadata.version("wskit")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


_PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
#: Default ``User-Agent`` of the client (RFC 9110 10.1.5).
USER_AGENT = f"wskit/{_package_version()} Python/{_PYTHON_VERSION}"
#: Default ``Server`` header of the server (RFC 9110 10.2.4).
SERVER = USER_AGENT

# RFC 6455 4.1: the key is "a randomly selected 16-byte value that has been base64-encoded".
_KEY_SIZE = 16
# Longest Content-Length worth converting: 19 digits is over 2**62, far above any body limit,
# and bounding the digits keeps int() from doing unbounded work.
_MAX_CONTENT_LENGTH_DIGITS = 19
# Peer text quoted in error messages is cut to this many characters.
_QUOTE_LIMIT = 40

# Byte classes (RFC 9110 5.6.2, 5.5; RFC 5234 B.1). A value is valid when
# ``value.translate(None, allowed)`` deletes every byte: one linear pass, no regex.
_DIGIT = b"0123456789"
_ALPHA = bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B))
# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
# "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TCHAR = b"!#$%&'*+-.^_`|~" + _DIGIT + _ALPHA
_VCHAR = bytes(range(0x21, 0x7F))
_OBS_TEXT = bytes(range(0x80, 0x100))
# RFC 9110 5.5: field-value = *field-content, field-vchar = VCHAR / obs-text, with SP and HTAB
# inside. "Field values containing CR, LF, or NUL characters are invalid and dangerous"; the
# other CTLs are refused too (the RFC lets a recipient keep them, nothing needs them).
_FIELD_VALUE_CHAR = b"\t " + _VCHAR + _OBS_TEXT
# RFC 9112 3: request-line = method SP request-target SP HTTP-version: tokens and VCHARs.
_REQUEST_LINE_CHAR = b" " + _VCHAR
# RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ), i.e. a field value.
_STATUS_LINE_CHAR = _FIELD_VALUE_CHAR
_OWS = " \t"
_OWS_BYTES = b" \t"

_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"

# Strings (str) for the extension grammar scanner.
_TCHAR_STR = frozenset(_TCHAR.decode("ascii"))
# RFC 9110 5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
_QDTEXT_STR = frozenset(
    "\t "
    + "".join(chr(c) for c in range(0x21, 0x7F) if c not in (0x22, 0x5C))
    + _OBS_TEXT.decode("latin-1")
)
# RFC 9110 5.6.4: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
_QUOTED_PAIR_STR = frozenset(_FIELD_VALUE_CHAR.decode("latin-1"))

# Statuses whose responses never have a body (RFC 9110 6.4.1: "All 1xx (Informational), 204
# (No Content), and 304 (Not Modified) responses do not include content").
_NO_BODY_STATUSES = frozenset((204, 304))


# ---------------------------------------------------------------------------------------------
# Keys


def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes.

    RFC 6455 4.1: "The nonce MUST be selected randomly for each connection."
    """
    return base64.b64encode(secrets.token_bytes(_KEY_SIZE)).decode("ascii")


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value that answers ``key``.

    RFC 6455 4.2.2: "concatenate this with the Globally Unique Identifier [...] A SHA-1 hash
    (160 bits) [FIPS.180-3], base64-encoded (see Section 4 of [RFC4648]), of this
    concatenation is then returned in the server's handshake."
    """
    digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Parsing HTTP heads


def parse_request(buf: bytes | bytearray, limits: Limits) -> tuple[Request, int] | None:
    """Parse the request head at the start of ``buf`` (server side).

    Return ``None`` while the head is incomplete, else the :class:`Request` and the number of
    bytes the head took, final blank line included (what follows stays for the caller; a
    WebSocket request has no body, so none is read). Raise
    :class:`~wskit.exceptions.InvalidHandshake` with status 431 when the head, a line or the
    field count exceeds ``limits`` (detected as soon as possible, before the head is
    complete), 505 for an HTTP version other than 1.1, and 400 for anything malformed.
    The method and the WebSocket fields are not checked here (see :func:`check_request`): a
    plain ``GET /`` parses, so that the server may answer it with a page.
    """
    split = _split_head(buf, limits, 431)
    if split is None:
        # Fail early on a start line that cannot become valid (a TLS ClientHello sent to a
        # plain port, an HTTP/1.0 request), rather than waiting for max_head_size bytes.
        first, complete = _first_line(buf)
        if complete:
            _parse_request_line(first)
        elif not _only(first, _REQUEST_LINE_CHAR):
            raise InvalidHandshake("invalid character in the request line")
        return None
    start, lines, consumed = split
    method, target, version = _parse_request_line(start)
    headers = _parse_fields(lines, limits, 431)
    return Request(target=target, headers=headers, method=method, http_version=version), consumed


def parse_response(buf: bytes | bytearray, limits: Limits) -> tuple[Response, int] | None:
    """Parse the response at the start of ``buf`` (client side).

    Return ``None`` while it is incomplete, else the :class:`Response` and the number of bytes
    it took. A 101 response ends with its head: the bytes after it are WebSocket frames and
    stay for the caller. Another response reads ``Content-Length`` bytes of body (at most
    ``limits.max_body_size``), or none when it has no ``Content-Length`` (the end of the
    connection is not awaited) or uses ``Transfer-Encoding``. Every violation raises a plain
    :class:`~wskit.exceptions.InvalidHandshake` (a client does not answer in HTTP).
    """
    split = _split_head(buf, limits, 400)
    if split is None:
        first, complete = _first_line(buf)
        if complete:
            _parse_status_line(first)
        elif not _only(first, _STATUS_LINE_CHAR):
            raise InvalidHandshake("invalid character in the status line")
        return None
    start, lines, head_size = split
    version, status, reason = _parse_status_line(start)
    headers = _parse_fields(lines, limits, 400)

    if status < 200 or status in _NO_BODY_STATUSES:
        # 101 included: RFC 6455 4.1 "the server [...] switches to the WebSocket protocol
        # immediately" -- what follows the blank line is already frames.
        return Response(status, headers, b"", reason, version), head_size
    if "Transfer-Encoding" in headers:
        # RFC 9112 6.3: "If a message is received with both a Transfer-Encoding and a
        # Content-Length header field, the Transfer-Encoding overrides the Content-Length."
        # A rejection body is only informative: it is not decoded.
        return Response(status, headers, b"", reason, version), head_size
    values = headers.get_all("Content-Length")
    if not values:
        return Response(status, headers, b"", reason, version), head_size
    length = _content_length(values)
    if length > limits.max_body_size:
        raise InvalidHandshake(
            f"response body of {length} bytes exceeds the limit of {limits.max_body_size}"
        )
    end = head_size + length
    if len(buf) < end:
        return None
    return Response(status, headers, bytes(buf[head_size:end]), reason, version), end


def _only(data: bytes | bytearray, allowed: bytes) -> bool:
    """True if every byte of ``data`` is in ``allowed`` (one linear pass)."""
    return not data.translate(None, allowed)


def _quote(data: bytes | bytearray | str) -> str:
    """A short printable rendering of peer data for an error message."""
    text = data if isinstance(data, str) else bytes(data).decode("latin-1")
    return repr(text[:_QUOTE_LIMIT] + ("..." if len(text) > _QUOTE_LIMIT else ""))


def _split_head(
    buf: bytes | bytearray, limits: Limits, too_large: int
) -> tuple[bytes, list[bytes], int] | None:
    """Find a complete head: its start line, field lines and size; ``None`` if incomplete.

    Raises ``InvalidHandshake(..., too_large)`` for a head, line or field count over
    ``limits``, checked on what has arrived so far when the head is incomplete.
    """
    # The search stops at max_head_size: a match must end within it.
    end = buf.find(_END_OF_HEAD, 0, limits.max_head_size)
    if end == -1:
        if len(buf) >= limits.max_head_size:
            raise InvalidHandshake(f"HTTP head exceeds {limits.max_head_size} bytes", too_large)
        _check_partial_head(buf, limits, too_large)
        return None
    head = bytes(buf[:end])
    # A head of N fields has N + 1 lines; count before splitting anything.
    if head.count(_CRLF) > limits.max_headers:
        raise InvalidHandshake(f"more than {limits.max_headers} header fields", too_large)
    lines = head.split(_CRLF)
    for line in lines:
        if len(line) > limits.max_line_size:
            raise InvalidHandshake(f"HTTP line exceeds {limits.max_line_size} bytes", too_large)
    return lines[0], lines[1:], end + len(_END_OF_HEAD)


def _check_partial_head(buf: bytes | bytearray, limits: Limits, too_large: int) -> None:
    """Enforce line size, field count and CRLF line ends on an incomplete head.

    At most ``max_headers + 2`` iterations, each a C-level ``find``: linear in ``len(buf)``.
    """
    pos = 0
    count = 0
    while True:
        newline = buf.find(b"\n", pos)
        if newline == -1:
            length = len(buf) - pos
            if buf.endswith(b"\r"):  # the CR of a CRLF whose LF has not arrived yet
                length -= 1
            if length > limits.max_line_size:
                raise InvalidHandshake(f"HTTP line exceeds {limits.max_line_size} bytes", too_large)
            return
        # RFC 9112 2.2: "the line terminator for the start-line and fields is the sequence
        # CRLF". The lenient bare-LF reading is declined: it is how request smuggling starts.
        if newline == 0 or buf[newline - 1] != 0x0D:
            raise InvalidHandshake("HTTP line ends with a bare LF instead of CRLF")
        if newline - 1 - pos > limits.max_line_size:
            raise InvalidHandshake(f"HTTP line exceeds {limits.max_line_size} bytes", too_large)
        count += 1
        if count > limits.max_headers + 1:  # the start line and max_headers fields
            raise InvalidHandshake(f"more than {limits.max_headers} header fields", too_large)
        pos = newline + 1


def _first_line(buf: bytes | bytearray) -> tuple[bytes, bool]:
    """The start line received so far, and whether its CRLF has arrived."""
    end = buf.find(_CRLF)
    if end != -1:
        return bytes(buf[:end]), True
    first = bytes(buf)
    return (first[:-1] if first.endswith(b"\r") else first), False


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    """Split and check ``method SP request-target SP HTTP-version`` (RFC 9112 3)."""
    if not line:
        raise InvalidHandshake("empty request line")
    if not _only(line, _REQUEST_LINE_CHAR):
        raise InvalidHandshake("invalid character in the request line")
    parts = line.split(b" ")
    if len(parts) != 3:
        # RFC 9112 3: "A recipient [...] SHOULD respond with a 400 (Bad Request)" for a
        # request-line that does not match the grammar (extra or missing spaces included).
        raise InvalidHandshake(f"malformed request line {_quote(line)}")
    method, target, version = parts
    if not method or not _only(method, _TCHAR):
        raise InvalidHandshake(f"invalid method {_quote(method)}")
    if not target:
        raise InvalidHandshake("empty request target")
    _check_version(version, request=True)
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


def _check_version(version: bytes, *, request: bool) -> None:
    """Refuse a malformed HTTP-version (400) and, in a request, any version but 1.1 (505)."""
    # RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name = %s"HTTP"
    # (case-sensitive).
    well_formed = (
        len(version) == 8
        and version.startswith(b"HTTP/")
        and version[5] in _DIGIT
        and version[6] == 0x2E
        and version[7] in _DIGIT
    )
    if not well_formed:
        raise InvalidHandshake(f"malformed HTTP version {_quote(version)}")
    if version == b"HTTP/1.1":
        return
    if request:
        # RFC 6455 4.1: "The method of the request MUST be GET, and the HTTP version MUST be
        # at least 1.1." HTTP/2 and later do not use this syntax; 505 is RFC 9110 15.6.6.
        raise InvalidHandshake(f"unsupported HTTP version {_quote(version)}", 505)
    if version != b"HTTP/1.0":
        # A server may answer a rejection in HTTP/1.0; check_response refuses it for a 101.
        raise InvalidHandshake(f"unsupported HTTP version {_quote(version)}")


def _parse_status_line(line: bytes) -> tuple[str, int, str]:
    """Split and check ``HTTP-version SP status-code SP [ reason-phrase ]`` (RFC 9112 4)."""
    if not _only(line, _STATUS_LINE_CHAR):
        raise InvalidHandshake("invalid character in the status line")
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        raise InvalidHandshake(f"malformed status line {_quote(line)}")
    _check_version(parts[0], request=False)
    code = parts[1]
    # RFC 9110 15: "All valid status codes are within the range of 100 to 599, inclusive."
    if len(code) != 3 or not _only(code, _DIGIT) or not 100 <= int(code) <= 599:
        raise InvalidHandshake(f"invalid status code {_quote(code)}")
    # The SP before an empty reason-phrase is sometimes left out; RFC 9112 4 lets a client
    # ignore the reason-phrase, so both forms are accepted.
    reason = parts[2] if len(parts) == 3 else b""
    return parts[0].decode("ascii"), int(code), reason.decode("latin-1")


#: Header names and values that nearly every handshake carries, spelled as browsers and the
#: common libraries send them. A parsed field equal to one of them shares this string instead
#: of allocating its own: a connection keeps its handshake for life, so that is ~0.5 KiB less
#: per idle connection (and they are known to be valid, so the check is skipped).
_SHARED_TOKENS = {
    token.encode(): token
    for token in (
        "Host",
        "host",
        "Upgrade",
        "upgrade",
        "Connection",
        "connection",
        "Origin",
        "origin",
        "User-Agent",
        "user-agent",
        "Pragma",
        "Cache-Control",
        "Accept-Encoding",
        "Accept-Language",
        "Sec-WebSocket-Key",
        "sec-websocket-key",
        "Sec-WebSocket-Version",
        "sec-websocket-version",
        "Sec-WebSocket-Extensions",
        "sec-websocket-extensions",
        "Sec-WebSocket-Protocol",
        "sec-websocket-protocol",
        "Sec-WebSocket-Accept",
        "sec-websocket-accept",
        "websocket",
        "keep-alive, Upgrade",
        "13",
        "no-cache",
        "gzip, deflate, br, zstd",
        "gzip, deflate, br",
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
    )
}


#: The same tokens as str -> bytes, plus the default Server/User-Agent value, for serializing.
_ENCODED_TOKENS = {token: data for data, token in _SHARED_TOKENS.items()} | {
    token: token.encode("latin-1") for token in (USER_AGENT, "HTTP/1.1", "Switching Protocols")
}


def _parse_fields(lines: list[bytes], limits: Limits, too_large: int) -> Headers:
    """Parse ``field-name ":" OWS field-value OWS`` lines (RFC 9112 5) into :class:`Headers`."""
    if len(lines) > limits.max_headers:
        raise InvalidHandshake(f"more than {limits.max_headers} header fields", too_large)
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 5.2: "A server that receives an obs-fold in a request message [...]
            # MUST either reject the message by sending a 400 (Bad Request) [...] or replace
            # each received obs-fold with one or more SP octets". Rejected.
            raise InvalidHandshake("obsolete line folding in header fields")
        colon = line.find(b":")
        if colon == -1:
            raise InvalidHandshake(f"header line without a colon {_quote(line)}")
        name = line[:colon]
        if not name:
            raise InvalidHandshake("empty header field name")
        shared_name = _SHARED_TOKENS.get(name)
        if shared_name is None and not _only(name, _TCHAR):
            if name[-1:] in (b" ", b"\t"):
                # RFC 9112 5.1: "A server MUST reject, with a response status code of 400
                # (Bad Request), any received request message that contains whitespace
                # between a header field name and colon."
                raise InvalidHandshake(f"whitespace before the colon after {_quote(name)}")
            raise InvalidHandshake(f"invalid header field name {_quote(name)}")
        # RFC 9112 5.1: field-line = field-name ":" OWS field-value OWS
        value = line[colon + 1 :].strip(_OWS_BYTES)
        shared_value = _SHARED_TOKENS.get(value)
        if shared_value is None:
            if not _only(value, _FIELD_VALUE_CHAR):
                raise InvalidHandshake(f"invalid character in the value of {_quote(name)}")
            # RFC 9110 5.5: obs-text is kept as octets; latin-1 maps each one to a character.
            shared_value = value.decode("latin-1")
        fields.append((shared_name or name.decode("ascii"), shared_value))
    return Headers.adopt(fields)


def _content_length(values: Sequence[str]) -> int:
    """The body length from ``Content-Length`` field values (RFC 9110 8.6)."""
    items = [item.strip(_OWS) for value in values for item in value.split(",")]
    for item in items:
        if not (item.isascii() and item.isdigit()):
            raise InvalidHandshake(f"invalid Content-Length {_quote(item)}")
        if len(item) > _MAX_CONTENT_LENGTH_DIGITS:
            raise InvalidHandshake("Content-Length is too large")
    # RFC 9110 8.6: a recipient may accept a list of identical values "(e.g., "Content-Length:
    # 42, 42")", as one value; differing values are an unrecoverable error.
    lengths = {int(item) for item in items}
    if len(lengths) != 1:
        raise InvalidHandshake("conflicting Content-Length values")
    return lengths.pop()


# ---------------------------------------------------------------------------------------------
# Serializing HTTP messages


def serialize_request(request: Request) -> bytes:
    """The bytes of a request head: request line, fields, blank line.

    Raise :class:`~wskit.exceptions.LocalProtocolError` for anything that cannot be sent as
    is (a space in the target, a CR or LF in a field value, a non-latin-1 character, ...).
    """
    method = _encode(request.method, _TCHAR, "method")
    target = _encode(request.target, _VCHAR, "request target")
    version = _encode(request.http_version, _VCHAR, "HTTP version")
    return b"%s %s %s\r\n%s\r\n" % (method, target, version, _serialize_fields(request.headers))


def serialize_response(response: Response) -> bytes:
    """The bytes of a response: status line, fields, blank line, body.

    An empty ``reason`` is replaced by the standard phrase of the status. The body is
    appended as is: :func:`reject_response` sets the matching ``Content-Length``.
    """
    if not 100 <= response.status <= 999:
        raise LocalProtocolError(f"invalid status code {response.status}")
    version = _ENCODED_TOKENS.get(response.http_version) or _encode(
        response.http_version, _VCHAR, "HTTP version"
    )
    reason = response.reason or _phrase(response.status)
    reason_bytes = _ENCODED_TOKENS.get(reason) or _encode(
        reason, _STATUS_LINE_CHAR, "reason phrase", allow_empty=True
    )
    head = b"%s %d %s\r\n%s\r\n" % (
        version,
        response.status,
        reason_bytes,
        _serialize_fields(response.headers),
    )
    return head + response.body


def _serialize_fields(headers: Headers) -> bytes:
    lines = []
    for name, value in headers.items():
        # The fields every 101 carries are known to be valid: encoded once, not checked again.
        encoded_name = _ENCODED_TOKENS.get(name)
        if encoded_name is None:
            encoded_name = _encode(name, _TCHAR, "header field name")
        encoded_value = _ENCODED_TOKENS.get(value)
        if encoded_value is None:
            encoded_value = _encode(
                value, _FIELD_VALUE_CHAR, f"value of header {name!r}", allow_empty=True
            )
        lines.append(b"%s: %s\r\n" % (encoded_name, encoded_value))
    return b"".join(lines)


def _encode(text: str, allowed: bytes, what: str, *, allow_empty: bool = False) -> bytes:
    """``text`` as latin-1 bytes, refusing characters outside ``allowed``."""
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text!r} is not latin-1") from None
    if (not data and not allow_empty) or not _only(data, allowed):
        raise LocalProtocolError(f"invalid {what} {text!r}")
    return data


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------------
# Client side


def build_request(
    wsuri: WSURI,
    *,
    extra_headers: HeadersLike | None = None,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]] = (),
    user_agent: str | None = USER_AGENT,
    origin: str | None = None,
) -> tuple[Request, str]:
    """The client's upgrade request for ``wsuri``, and the key it carries.

    Fields, in order: ``Host``, ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key``,
    ``Sec-WebSocket-Version``, then ``Sec-WebSocket-Protocol``, ``Sec-WebSocket-Extensions``,
    ``User-Agent``, ``Origin`` and ``Authorization`` (Basic, from the URI's user info) when
    there is something to send, then ``extra_headers``. A ``Host``, ``User-Agent``,
    ``Origin`` or ``Authorization`` field in ``extra_headers`` replaces the generated one
    (``Host`` stays first, RFC 9112 3.2: "a user agent SHOULD generate Host as the first
    header field following the request-line"); any other extra field is appended.
    """
    extra = Headers(extra_headers) if extra_headers is not None else Headers()
    key = generate_key()
    headers = Headers()
    # RFC 6455 4.1: "The request MUST contain a |Host| header field whose value contains
    # /host/ plus optionally ":" followed by /port/ (when not using the default port)."
    for host in extra.get_all("Host") or [wsuri.host_header]:
        headers.add("Host", host)
    # RFC 6455 4.1: "The request MUST contain an |Upgrade| header field whose value MUST
    # include the "websocket" keyword." and "a |Connection| header field whose value MUST
    # include the "Upgrade" token."
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Key", key)
    headers.add("Sec-WebSocket-Version", WS_VERSION)
    if subprotocols:
        headers.add("Sec-WebSocket-Protocol", serialize_subprotocols(subprotocols))
    if extensions:
        headers.add("Sec-WebSocket-Extensions", serialize_extensions(extensions))
    if user_agent is not None and "User-Agent" not in extra:
        headers.add("User-Agent", user_agent)
    # RFC 6455 4.1: "The request MUST include a header field with the name |Origin| if the
    # request is coming from a browser client." Other clients may send it.
    if origin is not None and "Origin" not in extra:
        headers.add("Origin", origin)
    if wsuri.user_info is not None and "Authorization" not in extra:
        # RFC 7617 2: user-pass = user-id ":" password, base64-encoded; UTF-8 (RFC 7617 2.1).
        credentials = ":".join(wsuri.user_info).encode()
        headers.add("Authorization", "Basic " + base64.b64encode(credentials).decode("ascii"))
    for name, value in extra.items():
        if name.lower() != "host":
            headers.add(name, value)
    return Request(target=wsuri.resource_name, headers=headers), key


def check_response(response: Response, key: str) -> None:
    """Check the server's answer to the request that carried ``key`` (RFC 6455 4.1).

    Raise :class:`~wskit.exceptions.InvalidStatus` for a status other than 101 and
    :class:`~wskit.exceptions.InvalidHandshake` for a 101 that does not complete the
    handshake. Subprotocol and extension negotiation are checked by the connection.
    """
    # RFC 6455 4.1: "If the status code received from the server is not 101, the client
    # handles the response per HTTP [RFC2616] procedures."
    if response.status != 101:
        raise InvalidStatus(response)
    if response.http_version != "HTTP/1.1":
        raise InvalidHandshake(f"101 response in {response.http_version}")
    headers = response.headers
    # RFC 6455 4.1: "If the response lacks an |Upgrade| header field or the |Upgrade| header
    # field contains a value that is not an ASCII case-insensitive match for the value
    # "websocket", the client MUST _Fail the WebSocket Connection_."
    upgrade = [protocol.lower() for protocol in _list_elements(headers.get_all("Upgrade"))]
    if upgrade != ["websocket"]:
        raise InvalidHandshake(f"invalid Upgrade header in the response: {upgrade!r}")
    # RFC 6455 4.1: "If the response lacks a |Connection| header field or the |Connection|
    # header field doesn't contain a token that is an ASCII case-insensitive match for the
    # value "Upgrade", the client MUST _Fail the WebSocket Connection_."
    connection = [token.lower() for token in parse_token_list(headers.get_all("Connection"))]
    if "upgrade" not in connection:
        raise InvalidHandshake("the response's Connection header lacks the upgrade token")
    # RFC 6455 4.1: "If the response lacks a |Sec-WebSocket-Accept| header field or the
    # |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of the
    # concatenation of the |Sec-WebSocket-Key| (as a string, not base64-decoded) with the
    # string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" [...] the client MUST _Fail the WebSocket
    # Connection_."
    accept = headers.get_all("Sec-WebSocket-Accept")
    if len(accept) != 1:
        raise InvalidHandshake(
            "missing Sec-WebSocket-Accept header"
            if not accept
            else "repeated Sec-WebSocket-Accept header"
        )
    if accept[0] != accept_key(key):
        raise InvalidHandshake(f"wrong Sec-WebSocket-Accept {_quote(accept[0])}")


# ---------------------------------------------------------------------------------------------
# Server side


def check_request(request: Request) -> str:
    """Check a client's upgrade request (RFC 6455 4.2.1) and return its ``Sec-WebSocket-Key``.

    Raise :class:`~wskit.exceptions.InvalidHandshake` whose ``status`` and ``headers`` make
    the answer: 405 for another method, 505 for another HTTP version, 426 for a missing or
    unsupported ``Sec-WebSocket-Version``, 400 for anything else.
    """
    # RFC 6455 4.2.1: "An HTTP/1.1 or higher GET request". RFC 9110 15.5.6: "The origin server
    # MUST generate an Allow header field in a 405 response".
    if request.method != "GET":
        raise InvalidHandshake(
            f"method {_quote(request.method)} is not allowed", 405, (("Allow", "GET"),)
        )
    if request.http_version != "HTTP/1.1":
        raise InvalidHandshake(f"unsupported HTTP version {_quote(request.http_version)}", 505)
    headers = request.headers
    # RFC 6455 4.2.1: "A |Host| header field containing the server's authority." RFC 9112 3.2:
    # "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request
    # message that lacks a Host header field and to any request message that contains more
    # than one Host header field line".
    hosts = headers.get_all("Host")
    if len(hosts) != 1:
        raise InvalidHandshake("missing Host header" if not hosts else "repeated Host header")
    # RFC 6455 4.2.1: "A |Connection| header field that includes the token "Upgrade", treated
    # as an ASCII case-insensitive value."
    connection_values = headers.get_all("Connection")
    if connection_values != ["Upgrade"]:  # (the usual value needs no parsing)
        connection = [token.lower() for token in parse_token_list(connection_values)]
        if "upgrade" not in connection:
            raise InvalidHandshake("the Connection header lacks the upgrade token")
    # RFC 6455 4.2.1: "An |Upgrade| header field containing the value "websocket", treated as
    # an ASCII case-insensitive value." Upgrade is a list of protocol[/version] (RFC 9110 7.8).
    upgrade_values = headers.get_all("Upgrade")
    if upgrade_values != ["websocket"]:  # (the usual value needs no parsing)
        upgrade = [protocol.lower() for protocol in _list_elements(upgrade_values)]
        if "websocket" not in upgrade:
            raise InvalidHandshake("the Upgrade header lacks websocket")
    # RFC 6455 4.4: "If this version does not match a version understood by the server, the
    # server MUST abort the WebSocket handshake described in this section and instead send an
    # appropriate HTTP error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version|
    # header field indicating the version(s) the server is capable of understanding."
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != [WS_VERSION]:
        reason = (
            "missing Sec-WebSocket-Version header"
            if not versions
            else f"unsupported Sec-WebSocket-Version {_quote(', '.join(versions))}"
        )
        raise InvalidHandshake(reason, 426, (("Sec-WebSocket-Version", WS_VERSION),))
    # RFC 6455 4.2.1: "A |Sec-WebSocket-Key| header field with a base64-encoded (see Section 4
    # of [RFC4648]) value that, when decoded, is 16 bytes in length."
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise InvalidHandshake(
            "missing Sec-WebSocket-Key header" if not keys else "repeated Sec-WebSocket-Key header"
        )
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True) if key.isascii() else b""
    except binascii.Error:
        raw = b""
    if len(raw) != _KEY_SIZE:
        raise InvalidHandshake(f"invalid Sec-WebSocket-Key {_quote(key)}")
    return key


def accept_response(
    key: str,
    *,
    subprotocol: str | None = None,
    extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]] = (),
    extra_headers: HeadersLike | None = None,
    server: str | None = SERVER,
) -> Response:
    """The 101 response that accepts the request that carried ``key`` (RFC 6455 4.2.2).

    ``subprotocol`` and ``extensions`` are what the server selected; a ``Server`` field in
    ``extra_headers`` replaces the generated one, other extra fields are appended.
    """
    extra = Headers(extra_headers) if extra_headers is not None else Headers()
    headers = Headers()
    # RFC 6455 4.2.2: "An |Upgrade| header field with value "websocket" as per RFC 2616",
    # "A |Connection| header field with value "Upgrade"", "A |Sec-WebSocket-Accept| header
    # field."
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Accept", accept_key(key))
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", serialize_subprotocols([subprotocol]))
    if extensions:
        headers.add("Sec-WebSocket-Extensions", serialize_extensions(extensions))
    if server is not None and "Server" not in extra:
        headers.add("Server", server)
    for name, value in extra.items():
        headers.add(name, value)
    return Response(101, headers, b"", "Switching Protocols")


def reject_response(
    status: int, body: str | bytes = b"", headers: HeadersLike | None = None
) -> Response:
    """A complete response that refuses a request; the connection is closed after it.

    ``body`` (UTF-8 if ``str``) defaults to the status phrase and a newline. Generated
    fields: ``Content-Type: text/plain; charset=utf-8`` (unless ``headers`` has one),
    ``Content-Length``, ``Connection: close`` and, for 426, ``Upgrade: websocket``.
    ``headers`` are appended, except ``Content-Length`` and ``Connection`` which must
    describe this body and this connection.
    """
    phrase = _phrase(status)
    data = body.encode() if isinstance(body, str) else bytes(body)
    if not data:
        data = f"{phrase or status}\n".encode()
    extra = Headers(headers) if headers is not None else Headers()
    fields = Headers()
    if "Content-Type" not in extra:
        fields.add("Content-Type", "text/plain; charset=utf-8")
    fields.add("Content-Length", str(len(data)))
    # RFC 9110 15.5.22: "The server MUST send an Upgrade header field in a 426 response to
    # indicate the required protocol(s)".
    if status == 426 and "Upgrade" not in extra:
        fields.add("Upgrade", "websocket")
    # RFC 9110 7.8: "A server that sends an Upgrade header field MUST also send a Connection
    # header field [...] that contains an "upgrade" connection option".
    upgrading = "Upgrade" in fields or "Upgrade" in extra
    fields.add("Connection", "Upgrade, close" if upgrading else "close")
    for name, value in extra.items():
        if name.lower() not in ("content-length", "connection"):
            fields.add(name, value)
    return Response(status, fields, data, phrase)


def error_response(exc: InvalidHandshake) -> Response:
    """The response that reports a failed handshake to the client: status, reason, headers."""
    return reject_response(exc.status, exc.reason + "\n", exc.headers)


# ---------------------------------------------------------------------------------------------
# Header grammar


def _is_token(text: str) -> bool:
    """RFC 9110 5.6.2: token = 1*tchar."""
    return bool(text) and text.isascii() and _only(text.encode("ascii"), _TCHAR)


def _list_elements(values: Sequence[str]) -> list[str]:
    """The non-empty elements of comma-separated field values, OWS stripped (RFC 9110 5.6.1)."""
    return [item for value in values for item in (i.strip(_OWS) for i in value.split(",")) if item]


def parse_token_list(values: Sequence[str]) -> list[str]:
    """The tokens of ``#token`` field values, possibly over several field lines.

    RFC 9110 5.6.1: "a recipient MUST accept empty list elements"; they are skipped. Raise
    ``InvalidHandshake`` (400) for an element that is not a token.
    """
    tokens = _list_elements(values)
    for token in tokens:
        if not _is_token(token):
            raise InvalidHandshake(f"invalid token {_quote(token)} in a header list")
    return tokens


def parse_subprotocols(values: Sequence[str]) -> list[str]:
    """The subprotocols of ``Sec-WebSocket-Protocol`` field values, in order.

    RFC 6455 4.1: the elements "MUST be non-empty strings with characters in the range U+0021
    to U+007E not including separator characters as defined in [RFC2616] and MUST all be
    unique strings", i.e. tokens.
    """
    return parse_token_list(values)


def serialize_subprotocols(subprotocols: Sequence[str]) -> str:
    """The ``Sec-WebSocket-Protocol`` value for ``subprotocols`` (tokens, comma-separated)."""
    for subprotocol in subprotocols:
        if not _is_token(subprotocol):
            raise LocalProtocolError(f"invalid subprotocol {subprotocol!r}: must be a token")
    return ", ".join(subprotocols)


def parse_extensions(values: Sequence[str]) -> list[tuple[str, list[ExtensionParameter]]]:
    """The offers or answers of ``Sec-WebSocket-Extensions`` field values, in order.

    RFC 6455 9.1::

        extension-list = 1#extension
        extension = extension-token *( ";" extension-param )
        extension-param = token [ "=" (token | quoted-string) ]

    with OWS around the separators and empty list elements skipped (RFC 9110 5.6.1). A
    single left-to-right scan, so linear in the input. Raise ``InvalidHandshake`` (400) on
    any syntax error.
    """
    result: list[tuple[str, list[ExtensionParameter]]] = []
    for value in values:
        result.extend(_ExtensionScanner(value).parse())
    return result


class _ExtensionScanner:
    """Parses one ``Sec-WebSocket-Extensions`` field value."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> InvalidHandshake:
        return InvalidHandshake(
            f"invalid Sec-WebSocket-Extensions {_quote(self.text)}: {what} at {self.pos}"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def token(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR_STR:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected {what}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        # RFC 9110 5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
        self.pos += 1  # opening DQUOTE
        chars: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                self.pos += 1
                if self.pos == len(text) or text[self.pos] not in _QUOTED_PAIR_STR:
                    raise self.error("invalid quoted-pair")
                chars.append(text[self.pos])
            elif char in _QDTEXT_STR:
                chars.append(char)
            else:
                raise self.error("invalid character in a quoted string")
            self.pos += 1
        raise self.error("unterminated quoted string")

    def parse(self) -> list[tuple[str, list[ExtensionParameter]]]:
        extensions: list[tuple[str, list[ExtensionParameter]]] = []
        text = self.text
        while True:
            # Empty elements and the commas between elements.
            while self.pos < len(text) and text[self.pos] in " \t,":
                self.pos += 1
            if self.pos == len(text):
                return extensions
            name = self.token("an extension name")
            params: list[ExtensionParameter] = []
            self.skip_ows()
            while self.peek() == ";":
                self.pos += 1
                self.skip_ows()
                param = self.token("a parameter name")
                self.skip_ows()
                param_value: str | None = None
                if self.peek() == "=":
                    self.pos += 1
                    self.skip_ows()
                    if self.peek() == '"':
                        param_value = self.quoted_string()
                        # RFC 6455 9.1: "When using the quoted-string syntax variant, the
                        # value after quoted-string unescaping MUST conform to the 'token'
                        # ABNF."
                        if not _is_token(param_value):
                            raise self.error("a quoted value that is not a token")
                    else:
                        param_value = self.token("a parameter value")
                    self.skip_ows()
                params.append((param, param_value))
            extensions.append((name, params))
            if self.pos < len(text) and text[self.pos] != ",":
                raise self.error("expected ',' or ';'")


def serialize_extensions(extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]]) -> str:
    """The ``Sec-WebSocket-Extensions`` value for ``extensions``: ``name; p; p=v, name2``.

    Names and values must be tokens (RFC 6455 9.1), so values are never quoted.
    """
    parts: list[str] = []
    for name, params in extensions:
        if not _is_token(name):
            raise LocalProtocolError(f"invalid extension name {name!r}: must be a token")
        items = [name]
        for param, value in params:
            if not _is_token(param):
                raise LocalProtocolError(f"invalid extension parameter {param!r}")
            if value is None:
                items.append(param)
            elif _is_token(value):
                items.append(f"{param}={value}")
            else:
                raise LocalProtocolError(f"invalid value {value!r} of extension parameter {param}")
        parts.append("; ".join(items))
    return ", ".join(parts)

"""Frames on the wire (RFC 6455 section 5): opcodes, close codes, encoding, masking.

Parsing lives in :mod:`wskit.core.connection`'s receive loop, which reads headers straight
from its buffer; this module holds what both directions share.
"""

from __future__ import annotations

import contextlib
import operator
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from wskit.exceptions import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_CONTROL_PAYLOAD",
    "CloseCode",
    "Frame",
    "MessageBuffer",
    "MessageBufferLike",
    "MessageBufferPy",
    "Opcode",
    "apply_mask",
    "apply_mask_py",
    "build_frame",
    "build_frame_py",
    "encode_frame",
    "encode_header",
    "is_valid_close_code",
    "parse_close",
    "serialize_close",
]


class Opcode(IntEnum):
    """RFC 6455 5.2 opcodes."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY))
CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))

FIN = 0x80
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
RSV_BITS = RSV1 | RSV2 | RSV3
MASK_BIT = 0x80

# RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less".
MAX_CONTROL_PAYLOAD = 125
# 125 minus the two bytes of the close code.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2


class CloseCode(IntEnum):
    """RFC 6455 7.4.1 status codes, and those IANA registered since."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never sent on the wire
    ABNORMAL_CLOSURE = 1006  # never sent on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never sent on the wire


# Codes a Close frame may carry: RFC 6455 7.4.1 / 7.4.2 and the IANA registry. 1004 is
# reserved, 1005/1006/1015 "MUST NOT be set as a status code in a Close control frame",
# 1016-2999 are unassigned, 3000-3999 registered for libraries, 4000-4999 private use.
_WIRE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame on the wire."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


# Compiled, Frame is an extension type (frames.pxd); Cython's dataclass support does not take
# ``slots=True``, so it goes without (frames are short-lived).
@dataclass(frozen=True)
class Frame:
    """One frame: opcode, payload, FIN and the RSV bits (``rsv`` holds 0x40/0x20/0x10)."""

    opcode: int
    data: bytes
    fin: bool = True
    rsv: int = 0

    @property
    def rsv1(self) -> bool:
        return bool(self.rsv & RSV1)


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def encode_header(
    opcode: int, length: int, fin: bool = True, rsv: int = 0, mask: bytes = b""
) -> bytes:
    """The frame header for a payload of ``length`` bytes (RFC 6455 5.2).

    The length uses the shortest form: RFC 6455 5.2 "the minimal number of bytes MUST be used
    to encode the length". A 4-byte ``mask`` sets the MASK bit and follows the length.
    """
    b0 = (FIN if fin else 0) | rsv | opcode
    mbit = MASK_BIT if mask else 0
    if length < 126:
        return bytes((b0, mbit | length)) + mask
    if length < 65536:
        return _pack_short(b0, mbit | 126, length) + mask
    return _pack_long(b0, mbit | 127, length) + mask


_mask_pool = bytearray()


def new_mask() -> bytes:
    """Four random bytes for a client frame's masking key (RFC 6455 5.3).

    RFC 6455 10.3: the key must come from "a strong source of entropy"; ``secrets`` is that
    source. Keys are drawn 1 KiB at a time to spare a system call per frame.
    """
    global _mask_pool
    if not _mask_pool:
        _mask_pool = bytearray(secrets.token_bytes(1024))
    key = bytes(_mask_pool[-4:])
    del _mask_pool[-4:]
    return key


def apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (RFC 6455 5.3); masking is its own inverse.

    The pure-Python implementation; :func:`apply_mask` is the compiled one when it is built.
    """
    n = len(data)
    if n == 0:
        return b""
    if n >= TRANSLATE_MASK_MIN:
        # Every fourth byte shares a key byte: four strided translate() calls, in C.
        out = bytearray(data)
        for offset in range(4):
            out[offset::4] = out[offset::4].translate(_xor_table(mask[offset]))
        return bytes(out)
    # One big-integer XOR runs in C and is linear in n.
    repeated = mask * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated[:n], "little")).to_bytes(
        n, "little"
    )


#: From this many bytes, pure-Python masking goes through ``bytes.translate`` with a table per
#: key byte (64 KiB: 77 -> 48 us); below, one big-integer XOR is faster (1 KiB: 1.8 us).
TRANSLATE_MASK_MIN = 2048

#: ``bytes.translate`` tables XORing every byte with one key byte, made when first needed
#: (at most 256 of 256 bytes).
_xor_tables: dict[int, bytes] = {}


def _xor_table(key_byte: int) -> bytes:
    table = _xor_tables.get(key_byte)
    if table is None:
        table = _xor_tables[key_byte] = bytes([byte ^ key_byte for byte in range(256)])
    return table


def build_frame_py(first_byte: int, payload: bytes | bytearray | memoryview, mask: bool) -> bytes:
    """One frame as bytes: ``first_byte`` (FIN, RSV bits, opcode), the length and the payload,
    masked with a fresh key when ``mask`` is true (RFC 6455 5.2, 5.3).

    The pure-Python implementation; :func:`build_frame` is the compiled one when it is built,
    which makes the frame in one allocation.
    """
    if not 0 <= first_byte <= 255:
        raise ValueError("first_byte must be in 0..255")
    n = len(payload)
    if mask:
        key = new_mask()
        masked = apply_mask(payload, key)
        if n < 126:
            return bytes((first_byte, MASK_BIT | n)) + key + masked
        if n < 65536:
            return _pack_short(first_byte, MASK_BIT | 126, n) + key + masked
        return _pack_long(first_byte, MASK_BIT | 127, n) + key + masked
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return _pack_short(first_byte, 126, n) + payload
    return _pack_long(first_byte, 127, n) + payload


class MessageBufferLike(Protocol):
    """What the connection needs from a message buffer (either implementation)."""

    @property
    def size(self) -> int: ...

    @property
    def written(self) -> int: ...

    def write(
        self, src: bytes | bytearray | memoryview, key: bytes = b"", key_offset: int = 0, /
    ) -> None: ...

    def finish(self) -> bytes: ...


class MessageBufferPy:
    """One received message of ``size`` bytes assembled from pieces, unmasked on the way in.

    The connection creates it from the length a frame header declared, once the limits allow
    that length, then writes every piece of payload as it arrives; :meth:`finish` returns the
    message once all ``size`` bytes were written. The compiled twin
    (``wskit.core._speedups.MessageBuffer``) unmasks each piece straight into the bytes object
    it returns, so a large message is copied once; this pure-Python one keeps the unmasked
    pieces and joins them, as cheap as Python gets. Both raise the same errors for the same
    calls.
    """

    __slots__ = ("_finished", "_parts", "_size", "_written")

    def __init__(self, size: int) -> None:
        size = operator.index(size)
        if size < 0:
            raise ValueError("size must not be negative")
        self._parts: list[bytes] = []
        self._size = size
        self._written = 0
        self._finished = False

    @property
    def size(self) -> int:
        """The message's length."""
        return self._size

    @property
    def written(self) -> int:
        """Bytes written so far."""
        return self._written

    def write(
        self, src: bytes | bytearray | memoryview, key: bytes = b"", key_offset: int = 0, /
    ) -> None:
        """Append ``src``, unmasked with the 4-byte ``key`` (RFC 6455 5.3) or as is when
        ``key`` is empty; ``key_offset`` payload bytes of the frame came before ``src``.

        Raises :class:`ValueError` if ``src`` does not fit in the bytes left.
        """
        key_offset = operator.index(key_offset)
        if key_offset < 0:
            raise ValueError("key_offset must not be negative")
        with memoryview(src) as view:
            key = bytes(memoryview(key))
            if len(key) not in (0, 4):
                raise ValueError("key must be empty or 4 bytes")
            self._check_usable()
            n = view.nbytes
            left = self._size - self._written
            if n > left:
                raise ValueError(f"{n} bytes do not fit: {left} of {self._size} bytes are left")
            if not n:
                return
            if key:
                offset = key_offset & 3
                if offset:
                    key = key[offset:] + key[:offset]
                self._parts.append(apply_mask_py(view, key))
            else:
                self._parts.append(bytes(view))
            self._written += n

    def finish(self) -> bytes:
        """The assembled message; once, and only when all ``size`` bytes were written."""
        self._check_usable()
        if self._written != self._size:
            raise ValueError(f"{self._written} of {self._size} bytes were written")
        self._finished = True
        parts = self._parts
        self._parts = []
        # One part is returned as it is: join does not copy a single bytes object.
        return b"".join(parts)

    def _check_usable(self) -> None:
        if self._finished:
            raise ValueError("MessageBuffer is finished")


# The C module's masking and message buffer when it was built (``WSKIT_NO_EXTENSIONS=1`` in
# the environment forces the pure-Python twins); ``wskit.core.IMPLEMENTATION`` reports it.
apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes] = apply_mask_py
build_frame: Callable[[int, bytes | bytearray | memoryview, bool], bytes] = build_frame_py
MessageBuffer: Callable[[int], MessageBufferLike] = MessageBufferPy
if not os.environ.get("WSKIT_NO_EXTENSIONS"):
    # Not built: no compiler at install time, or an unusual platform.
    with contextlib.suppress(ImportError):
        # (The C module refills its own key pool in a forked child.)
        from wskit.core._speedups import MessageBuffer, apply_mask, build_frame


def _reset_mask_pool() -> None:
    """RFC 6455 5.3: keys must be unpredictable; a forked child must not hand out the keys
    its parent draws next."""
    global _mask_pool
    _mask_pool = bytearray()


os.register_at_fork(after_in_child=_reset_mask_pool)


def encode_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes:
    """A whole frame as one bytes object; ``mask=True`` masks it with a fresh key (clients)."""
    return build_frame((FIN if fin else 0) | rsv | opcode, payload, mask)


def serialize_close(code: int | None, reason: str = "") -> bytes:
    """The payload of a Close frame. Raises :class:`LocalProtocolError` for what may not be sent."""
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent")
    data = reason.encode()
    if len(data) > MAX_CLOSE_REASON:
        raise LocalProtocolError(f"close reason is {len(data)} bytes; at most {MAX_CLOSE_REASON}")
    return code.to_bytes(2, "big") + data


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received Close frame; 1005 and ``""`` for an empty one.

    Raises :class:`RemoteProtocolError` (1002) for a one-byte payload, a code that may not be
    sent, or a reason that is not UTF-8 (RFC 6455 5.5.1, 7.4).
    """
    if not payload:
        # RFC 6455 7.1.5: "If this Close control frame contains no status code, _The WebSocket
        # Connection Close Code_ is considered to be 1005."
        return 1005, ""
    if len(payload) == 1:
        raise RemoteProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise RemoteProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise RemoteProtocolError("close reason is not valid UTF-8") from None
    return code, reason


def truncate_reason(reason: str) -> str:
    """``reason`` cut to fit a Close frame (123 bytes of UTF-8), never mid-character."""
    data = reason.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return reason
    return data[:MAX_CLOSE_REASON].decode(errors="ignore")

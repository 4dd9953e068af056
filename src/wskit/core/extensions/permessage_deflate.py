"""permessage-deflate (RFC 7692): DEFLATE compression of whole messages, every parameter.

Three pieces:

* :class:`PerMessageDeflate` is the negotiated extension. It compresses outgoing messages and
  inflates incoming ones, one frame at a time, with a bounded inflate: zlib is never asked for
  more than the caller's remaining message budget, so a small "deflate bomb" cannot make the
  core allocate more than that budget.
* :class:`ClientPerMessageDeflateFactory` offers the extension and checks the server's answer.
* :class:`ServerPerMessageDeflateFactory` reads the client's offers and answers one.

Parameter names in this module follow the RFC's point of view: ``server_*`` and ``client_*``
in the factories, and ``local_*`` (what this side compresses with) / ``remote_*`` (what the peer
compresses with, hence what this side inflates) in :class:`PerMessageDeflate`.

zlib state is created on first use and, where a ``*_no_context_takeover`` parameter applies,
dropped after each message, so an idle connection holds no zlib memory in that direction.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Protocol

from wskit.core.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from wskit.core.frames import OP_BINARY, OP_CONT, OP_TEXT, RSV1, Frame
from wskit.exceptions import NegotiationError, PayloadTooBig, RemoteProtocolError

__all__ = [
    "DEFAULT_COMPRESS_LEVEL",
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_MEM_LEVEL",
    "DEFAULT_SERVER_MAX_WINDOW_BITS",
    "EXTENSION_NAME",
    "ClientPerMessageDeflateFactory",
    "DeflateModule",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
    "enable_client_permessage_deflate",
    "enable_server_permessage_deflate",
]

#: The registered extension token (RFC 7692 section 7).
EXTENSION_NAME = "permessage-deflate"


class DeflateModule(Protocol):
    """What permessage-deflate uses of a zlib module: the standard library's ``zlib`` by
    default, or a drop-in replacement with the same API and the same DEFLATE format, such as
    zlib-ng's (``from zlib_ng import zlib_ng``), which compresses two to three times faster.
    The front ends pick zlib-ng when it is installed (``pip install "wskit[speed]"``)."""

    @property
    def DEFLATED(self) -> int: ...

    @property
    def Z_SYNC_FLUSH(self) -> int: ...

    @property
    def error(self) -> type[Exception]: ...

    def compressobj(self, level: int, method: int, wbits: int, memLevel: int, /) -> Any: ...

    def decompressobj(self, wbits: int, /) -> Any: ...


#: zlib's own default level (``Z_DEFAULT_COMPRESSION`` is level 6): the usual speed/size balance.
DEFAULT_COMPRESS_LEVEL = 6
#: Memory-conscious defaults, as websockets does (its ``enable_*_permessage_deflate`` helpers
#: configure ``memLevel=5`` and a 12-bit server window): memLevel 5 makes the compressor's
#: hash tables 16 KiB instead of zlib's 128 KiB default (memLevel 8 -> 9) for a slightly worse
#: ratio, which matters on a server holding thousands of connections.
DEFAULT_MEM_LEVEL = 5
#: A 4 KiB window instead of 32 KiB for what the server compresses (see DEFAULT_MEM_LEVEL).
DEFAULT_SERVER_MAX_WINDOW_BITS = 12
#: Messages shorter than this many bytes (sent in one frame) go uncompressed: below it, the
#: DEFLATE block header, Huffman codes and byte alignment outweigh what compression saves,
#: and zlib's per-message work costs more than sending the bytes. RFC 7692 section 6 lets a
#: sender choose per message (RSV1 clear on the first frame = not compressed).
DEFAULT_COMPRESS_THRESHOLD = 64

# RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15,
# inclusive, indicating the base-2 logarithm of the LZ77 sliding window size".
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(MIN_WINDOW_BITS, MAX_WINDOW_BITS + 1)}

# RFC 7692 7.2.1 step 2: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
# and 7.2.2 step 1: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload".
_TAIL = b"\x00\x00\xff\xff"
# RFC 7692 7.2.3.6 (Generating an Empty Fragment): a single 0x00 octet is an empty DEFLATE
# block with no compression (BFINAL 0, BTYPE 00, padding) once the receiver appends _TAIL;
# it is what a compressed final frame carries when there is nothing left to send.
_EMPTY_FRAGMENT = b"\x00"

_SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"
_PARAMETER_NAMES = (
    _SERVER_NO_CONTEXT_TAKEOVER,
    _CLIENT_NO_CONTEXT_TAKEOVER,
    _SERVER_MAX_WINDOW_BITS,
    _CLIENT_MAX_WINDOW_BITS,
)


def _compressor_wbits(window_bits: int) -> int:
    """The ``wbits`` for a raw-deflate compressor honouring a window of ``window_bits``.

    zlib (since 1.2.9) refuses a raw deflate window of 8 bits ("Invalid initialization
    option"); for the zlib format it silently uses 9 instead, and so do we. That still honours
    a negotiated 256-byte window: zlib's deflate never emits a distance above its window size
    minus MIN_LOOKAHEAD (262 bytes), i.e. 250 with a 512-byte window, so every stream it makes
    with ``wbits=9`` inflates with a 256-byte window (a test checks this against
    ``decompressobj(-8)``). The cost is 256 bytes of window memory.
    """
    return -max(window_bits, 9)


def _decompressor_wbits(window_bits: int) -> int:
    """The ``wbits`` for a raw-deflate decompressor accepting a window of ``window_bits``.

    zlib accepts ``-8`` for raw inflate today, but a raw 8-bit window is exactly what it
    stopped accepting for deflate in 1.2.9, and zlib-compatible builds (zlib-ng, system
    forks) need not agree; a 9-bit window inflates everything a peer may send under an 8-bit
    limit, so 8 becomes 9 and nothing depends on that corner. The only loss is that a peer
    exceeding a negotiated 256-byte window by up to 256 bytes goes unnoticed: harmless.
    """
    return -max(window_bits, 9)


def _check_window_bits(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not MIN_WINDOW_BITS <= value <= MAX_WINDOW_BITS:
        raise ValueError(f"{name} must be between {MIN_WINDOW_BITS} and {MAX_WINDOW_BITS}")


def _check_settings(compress_level: int, mem_level: int, threshold: int) -> None:
    # zlib's ranges: level -1 (default) or 0..9, memLevel 1..9.
    if not -1 <= compress_level <= 9:
        raise ValueError("compress_level must be between -1 and 9")
    if not 1 <= mem_level <= 9:
        raise ValueError("mem_level must be between 1 and 9")
    if threshold < 0:
        raise ValueError("threshold must be >= 0")


class PerMessageDeflate(Extension):
    """The negotiated permessage-deflate extension for one connection.

    ``remote_*`` parameters describe what the peer compresses with (so how this side
    inflates), ``local_*`` what this side compresses with. ``threshold`` is the size below
    which a single-frame message is sent uncompressed.
    """

    name = EXTENSION_NAME
    rsv_bits = RSV1

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        zlib_module: DeflateModule = zlib,
    ) -> None:
        _check_window_bits("remote_max_window_bits", remote_max_window_bits)
        _check_window_bits("local_max_window_bits", local_max_window_bits)
        _check_settings(compress_level, mem_level, threshold)
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold
        self.zlib_module = zlib_module
        # Created on first use; None while idle (or always between messages when the
        # matching *_no_context_takeover applies).
        self._decompressor: Any = None
        self._compressor: Any = None
        # Whether the message being received / sent is compressed (set by its first frame).
        self._decoding = False
        self._encoding = False

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    # -- receiving ---------------------------------------------------------------------------

    def decode(self, frame: Frame, max_size: int | None = None) -> Frame:
        """Inflate one received data frame; at most ``max_size`` bytes are ever produced.

        A message is compressed when its first frame has RSV1; its continuation frames are
        then inflated too. Raises :class:`PayloadTooBig` when the output would exceed
        ``max_size`` (before inflating the rest) and :class:`RemoteProtocolError` (1002) for
        RSV1 on a continuation frame or a corrupt DEFLATE stream.
        """
        if frame.opcode == OP_CONT:
            # RFC 7692 6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of
            # control frames and non-first fragments of a data message. An endpoint receiving
            # such a frame MUST _Fail the WebSocket Connection_."
            if frame.rsv & RSV1:
                raise RemoteProtocolError("RSV1 set on a continuation frame", 1002)
            if not self._decoding:
                return frame
        elif frame.opcode in (OP_TEXT, OP_BINARY):
            # RFC 7692 6: RSV1 on the first frame marks a compressed message; a sender may
            # leave any message uncompressed, and that one passes through untouched.
            if not frame.rsv & RSV1:
                self._decoding = False
                return frame
            self._decoding = True
        else:  # control frames are never passed in (base.Extension.decode)
            return frame

        budget = None if max_size is None else max(max_size, 0)
        try:
            data = self._inflate(frame.data, budget)
            if frame.fin:
                # RFC 7692 7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of
                # the payload of the message." Fed separately to spare a copy of the payload.
                rest = None if budget is None else budget - len(data)
                data += self._inflate(_TAIL, rest)
        except PayloadTooBig:
            self._end_decoding(drop=True)
            raise
        except self.zlib_module.error as exc:
            self._end_decoding(drop=True)
            # A corrupt DEFLATE stream breaks the extension's framing, not the message's
            # content, so it is a protocol error: 1002, as most peers send (1007 is for
            # payload data that is inconsistent with the message type, such as bad UTF-8).
            raise RemoteProtocolError(f"invalid DEFLATE data: {exc}", 1002) from None
        if frame.fin:
            # RFC 7692 7.1.1.1 / 7.1.1.2: under "*_no_context_takeover" the peer starts every
            # message with an empty window, so this side need not keep one between messages.
            self._end_decoding(drop=self.remote_no_context_takeover)
        return Frame(frame.opcode, data, frame.fin, frame.rsv & ~RSV1)

    def _inflate(self, data: bytes, budget: int | None) -> bytes:
        """Inflate ``data`` into at most ``budget`` bytes (``None``: unbounded)."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = self.zlib_module.decompressobj(
                _decompressor_wbits(self.remote_max_window_bits)
            )
        chunks: list[bytes] = []
        while True:
            if budget is None:
                chunk = decompressor.decompress(data)
            else:
                # Ask zlib for one byte more than the budget: if it fills that, the output is
                # too big, and the rest (in unconsumed_tail or zlib's pending output) is never
                # inflated. If it returns less, zlib stopped because the input ran out, so
                # nothing is pending. (max_length=0 would mean "no limit": hence the + 1.)
                chunk = decompressor.decompress(data, budget + 1)
                if len(chunk) > budget:
                    raise PayloadTooBig("decompressed message is over the size limit")
                budget -= len(chunk)
            chunks.append(chunk)
            if not decompressor.eof:
                break
            # The peer ended its DEFLATE stream with a BFINAL block (RFC 7692 7.2.3.4). What
            # follows, if anything, starts a new stream: inflate it with a fresh decompressor.
            # A peer that then refers back across the end of its stream (context takeover
            # over BFINAL) cannot be followed by zlib and fails with "invalid distance".
            data = decompressor.unused_data
            decompressor = self._decompressor = self.zlib_module.decompressobj(
                _decompressor_wbits(self.remote_max_window_bits)
            )
            if not data:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _end_decoding(self, *, drop: bool) -> None:
        self._decoding = False
        if drop:
            self._decompressor = None

    # -- sending -----------------------------------------------------------------------------

    def encode(self, frame: Frame) -> Frame:
        """Compress one data frame this side is about to send.

        The first frame of a message decides: a single-frame message shorter than
        ``threshold`` goes uncompressed; anything else is compressed, with RSV1 on its first
        frame only, and its continuation frames follow.
        """
        if frame.opcode in (OP_TEXT, OP_BINARY):
            if frame.fin and len(frame.data) < self.threshold:
                self._encoding = False
                return frame
            self._encoding = True
            rsv = frame.rsv | RSV1
        elif frame.opcode == OP_CONT:
            if not self._encoding:
                return frame
            # RFC 7692 6.1: no RSV1 on "non-first fragments of a data message".
            rsv = frame.rsv & ~RSV1
        else:
            return frame

        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self.zlib_module.compressobj(
                self.compress_level,
                self.zlib_module.DEFLATED,
                _compressor_wbits(self.local_max_window_bits),
                self.mem_level,
            )
        # Z_SYNC_FLUSH after every frame: the frame carries all its data, byte-aligned, and
        # ends with an empty stored block (0x00 0x00 0xff 0xff) - RFC 7692 7.2.1 step 1.
        data = compressor.compress(frame.data) + compressor.flush(self.zlib_module.Z_SYNC_FLUSH)
        if frame.fin:
            # RFC 7692 7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail
            # end." Only at the end of the message: earlier frames keep their flush marker.
            if data.endswith(_TAIL):
                data = data[:-4]
            if not data:
                # RFC 7692 7.2.3.6: an empty final fragment must be the single octet 0x00, or
                # the receiver's appended tail would not form a valid block. With nothing new
                # to flush, CPython's zlib emits an empty stored block whose removal leaves
                # exactly that 0x00; this guard keeps the rule should a zlib build emit nothing.
                data = _EMPTY_FRAGMENT
            self._encoding = False
            # RFC 7692 7.1.1.1 / 7.1.1.2: under "*_no_context_takeover" this side starts the
            # next message with an empty window: a fresh compressor, created when next needed.
            if self.local_no_context_takeover:
                self._compressor = None
        return Frame(frame.opcode, data, frame.fin, rsv)

    def close(self) -> None:
        """Drop the zlib state (a connection that closed sends and receives no more)."""
        self._compressor = None
        self._decompressor = None
        self._decoding = self._encoding = False


# -- negotiation -----------------------------------------------------------------------------


class _Params:
    """The four parameters of one offer or response, parsed and checked."""

    __slots__ = (
        "client_max_window_bits",
        "client_no_context_takeover",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits: int | None = None
        # True when offered without a value (only legal in an offer).
        self.client_max_window_bits: int | bool | None = None


def _parse_params(params: Sequence[ExtensionParameter], *, is_offer: bool) -> _Params:
    """Parse ``params``; :class:`NegotiationError` for what RFC 7692 7.1 says to reject.

    RFC 7692 7.1 lists the same reasons for a server to decline an offer and for a client to
    fail on a response: "an extension parameter not defined for use in an offer" (response),
    "an extension parameter with an invalid value", "multiple extension parameters with the
    same name".
    """
    parsed = _Params()
    seen: set[str] = set()
    for name, value in params:
        if name not in _PARAMETER_NAMES:
            raise NegotiationError(f"unknown permessage-deflate parameter: {name}")
        if name in seen:
            raise NegotiationError(f"duplicate permessage-deflate parameter: {name}")
        seen.add(name)
        if name in (_SERVER_NO_CONTEXT_TAKEOVER, _CLIENT_NO_CONTEXT_TAKEOVER):
            # RFC 7692 7.1.1.1 / 7.1.1.2: "This extension parameter has no value."
            if value is not None:
                raise NegotiationError(f"{name} takes no value, got {value!r}")
            if name == _SERVER_NO_CONTEXT_TAKEOVER:
                parsed.server_no_context_takeover = True
            else:
                parsed.client_no_context_takeover = True
        elif name == _SERVER_MAX_WINDOW_BITS:
            parsed.server_max_window_bits = _parse_window_bits(name, value)
        elif value is None and is_offer:
            # RFC 7692 7.1.2.2: in an offer, "This parameter has no value or a decimal
            # integer value"; in a response it "has a decimal integer value".
            parsed.client_max_window_bits = True
        else:
            parsed.client_max_window_bits = _parse_window_bits(name, value)
    return parsed


def _parse_window_bits(name: str, value: str | None) -> int:
    # RFC 7692 7.1.2.1: "server-max-window-bits = 1*DIGIT" with "a decimal integer value
    # without leading zeroes between 8 to 15, inclusive"; the same for client_max_window_bits.
    bits = _WINDOW_BITS_VALUES.get(value) if value is not None else None
    if bits is None:
        raise NegotiationError(f"invalid value for {name}: {value!r}")
    return bits


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """Client side of permessage-deflate: builds the offer, checks the server's answer.

    ``server_no_context_takeover`` / ``server_max_window_bits`` ask the server to limit what
    this client must keep to inflate; ``client_no_context_takeover`` promises that this
    client will not use context takeover. ``client_max_window_bits=True`` offers the
    parameter without a value, letting the server choose this client's window (RFC 7692
    7.1.2.2); an int also caps it; ``None``/``False`` leaves the parameter out.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        zlib_module: DeflateModule = zlib,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is False:
            client_max_window_bits = None
        if client_max_window_bits is not None and client_max_window_bits is not True:
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_settings(compress_level, mem_level, threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold
        self.zlib_module = zlib_module

    def __repr__(self) -> str:
        return f"ClientPerMessageDeflateFactory({self.get_request_params()!r})"

    def get_request_params(self) -> list[ExtensionParameter]:
        """The parameters of the offer, in the order RFC 7692 7.1 lists them."""
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
        if self.client_no_context_takeover:
            params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
        if self.server_max_window_bits is not None:
            params.append((_SERVER_MAX_WINDOW_BITS, str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append((_CLIENT_MAX_WINDOW_BITS, None))
        elif self.client_max_window_bits is not None:
            params.append((_CLIENT_MAX_WINDOW_BITS, str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> PerMessageDeflate:
        """Check the server's answer against the offer; build the extension.

        RFC 7692 7.1: "A client MUST _Fail the WebSocket Connection_ if the peer server
        accepted an extension negotiation offer for this extension with an extension
        negotiation response meeting any of the following conditions": an unknown, duplicate
        or invalid parameter, or a configuration this client does not support.
        """
        if any(extension.name == self.name for extension in accepted):
            raise NegotiationError("permessage-deflate accepted twice")
        response = _parse_params(params, is_offer=False)

        # RFC 7692 7.1.1.1: "A server accepts an extension negotiation offer that includes
        # the "server_no_context_takeover" extension parameter by including the
        # "server_no_context_takeover" extension parameter in the corresponding extension
        # negotiation response". The server may also add it unasked.
        if self.server_no_context_takeover and not response.server_no_context_takeover:
            raise NegotiationError("the server did not accept server_no_context_takeover")

        # RFC 7692 7.1.2.1: "A server accepts an extension negotiation offer with this
        # parameter by including the "server_max_window_bits" extension parameter in the
        # extension negotiation response to send back to the client with the same or smaller
        # value as the offer." Unasked, the server may still send any valid value.
        server_bits = response.server_max_window_bits
        if self.server_max_window_bits is not None:
            if server_bits is None:
                raise NegotiationError("the server did not accept server_max_window_bits")
            if server_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"server_max_window_bits={server_bits} is larger than the "
                    f"{self.server_max_window_bits} requested"
                )

        # RFC 7692 7.1.2.2: "If a received extension negotiation offer doesn't have the
        # "client_max_window_bits" extension parameter, the corresponding extension
        # negotiation response to the offer MUST NOT include the "client_max_window_bits"
        # extension parameter."
        client_bits = response.client_max_window_bits
        assert client_bits is not True  # a response value is always an int (_parse_params)
        if self.client_max_window_bits is None:
            if client_bits is not None:
                raise NegotiationError("client_max_window_bits in the response but not offered")
        elif self.client_max_window_bits is not True:
            # RFC 7692 7.1.2.2: an offered value tells the server "that even if the server
            # doesn't include the "client_max_window_bits" extension parameter in the
            # corresponding extension negotiation response with a value greater than the one
            # in the extension negotiation offer or if the server doesn't include the
            # extension parameter at all, the client is not going to use an LZ77 sliding
            # window size greater than the size specified by the value in the extension
            # negotiation offer". So a larger answer is tolerated and the offer holds.
            offered = self.client_max_window_bits
            client_bits = offered if client_bits is None else min(client_bits, offered)

        return PerMessageDeflate(
            remote_no_context_takeover=response.server_no_context_takeover,
            # RFC 7692 7.1.1.2: offering client_no_context_takeover is a promise not to use
            # context takeover, whether or not the server repeats it.
            local_no_context_takeover=(
                self.client_no_context_takeover or response.client_no_context_takeover
            ),
            remote_max_window_bits=MAX_WINDOW_BITS if server_bits is None else server_bits,
            local_max_window_bits=MAX_WINDOW_BITS if client_bits is None else client_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            threshold=self.threshold,
            zlib_module=self.zlib_module,
        )


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """Server side of permessage-deflate: accepts an offer and answers it.

    ``server_no_context_takeover`` / ``server_max_window_bits`` limit what this server
    compresses with (the client can ask for tighter limits, which are honoured).
    ``client_no_context_takeover`` / ``client_max_window_bits`` limit what the client
    compresses with, hence what this server keeps to inflate. The client can only be given a
    window limit when its offer has ``client_max_window_bits``; with
    ``require_client_max_window_bits`` an offer without it is declined, otherwise it is
    accepted with the client using a full 15-bit window.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = DEFAULT_SERVER_MAX_WINDOW_BITS,
        client_max_window_bits: int | None = None,
        require_client_max_window_bits: bool = False,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        zlib_module: DeflateModule = zlib,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is not None:
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        if require_client_max_window_bits and client_max_window_bits is None:
            raise ValueError("require_client_max_window_bits needs client_max_window_bits")
        _check_settings(compress_level, mem_level, threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold
        self.zlib_module = zlib_module

    def __repr__(self) -> str:
        return (
            "ServerPerMessageDeflateFactory("
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits})"
        )

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        """Accept the offer ``params``: the response parameters and the extension.

        RFC 7692 7.1: "A server MUST decline an extension negotiation offer for this
        extension if any of the following conditions are met": an unknown, duplicate or
        invalid parameter, or a configuration this server does not support. Declining is
        raising :class:`NegotiationError`; the caller then tries the next offer.
        """
        if any(extension.name == self.name for extension in accepted):
            raise NegotiationError("permessage-deflate already accepted")
        offer = _parse_params(params, is_offer=True)
        response: list[ExtensionParameter] = []

        # RFC 7692 7.1.1.1: a client offering server_no_context_takeover "prevents the peer
        # server from using context takeover"; the server accepts it by echoing it, and may
        # send it unasked.
        server_no_context_takeover = (
            self.server_no_context_takeover or offer.server_no_context_takeover
        )
        if server_no_context_takeover:
            response.append((_SERVER_NO_CONTEXT_TAKEOVER, None))

        # RFC 7692 7.1.1.2: the server may send client_no_context_takeover to stop the client
        # using context takeover. When the client offered it (a promise), echoing it lets this
        # server drop its inflate state between messages.
        client_no_context_takeover = (
            self.client_no_context_takeover or offer.client_no_context_takeover
        )
        if client_no_context_takeover:
            response.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))

        # RFC 7692 7.1.2.1: an offered server_max_window_bits is accepted by answering "the
        # same or smaller value"; the server may also send one unasked.
        server_bits = self.server_max_window_bits
        if offer.server_max_window_bits is not None:
            ours = MAX_WINDOW_BITS if server_bits is None else server_bits
            server_bits = min(ours, offer.server_max_window_bits)
        if server_bits is not None:
            response.append((_SERVER_MAX_WINDOW_BITS, str(server_bits)))

        # RFC 7692 7.1.2.2: "If a received extension negotiation offer doesn't have the
        # "client_max_window_bits" extension parameter, the corresponding extension
        # negotiation response to the offer MUST NOT include the "client_max_window_bits"
        # extension parameter." With a value, the server "may either ignore this value or use
        # this value ... with a value equal to or smaller than the received value".
        client_bits: int | None
        if offer.client_max_window_bits is None:
            if self.require_client_max_window_bits:
                raise NegotiationError("the offer lacks the required client_max_window_bits")
            client_bits = None
        elif offer.client_max_window_bits is True:
            client_bits = self.client_max_window_bits
        elif self.client_max_window_bits is None:
            # Echo the client's own limit: this server then inflates with that window.
            client_bits = offer.client_max_window_bits
        else:
            client_bits = min(self.client_max_window_bits, offer.client_max_window_bits)
        if client_bits is not None:
            response.append((_CLIENT_MAX_WINDOW_BITS, str(client_bits)))

        extension = PerMessageDeflate(
            remote_no_context_takeover=client_no_context_takeover,
            local_no_context_takeover=server_no_context_takeover,
            remote_max_window_bits=MAX_WINDOW_BITS if client_bits is None else client_bits,
            local_max_window_bits=MAX_WINDOW_BITS if server_bits is None else server_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            threshold=self.threshold,
            zlib_module=self.zlib_module,
        )
        return response, extension


def enable_client_permessage_deflate(
    factories: Sequence[ClientExtensionFactory] | None,
) -> list[ClientExtensionFactory]:
    """``factories`` plus a default :class:`ClientPerMessageDeflateFactory` if none is there."""
    result = list(factories or ())
    if not any(factory.name == EXTENSION_NAME for factory in result):
        result.append(ClientPerMessageDeflateFactory())
    return result


def enable_server_permessage_deflate(
    factories: Sequence[ServerExtensionFactory] | None,
) -> list[ServerExtensionFactory]:
    """``factories`` plus a default :class:`ServerPerMessageDeflateFactory` if none is there."""
    result = list(factories or ())
    if not any(factory.name == EXTENSION_NAME for factory in result):
        result.append(ServerPerMessageDeflateFactory())
    return result

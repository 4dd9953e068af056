"""The WebSocket connection state machine, both roles, with no I/O.

The I/O contract, written as the loop every front end runs::

    conn.receive_data(data)            # bytes from the socket (receive_eof() at EOF)
    transport.writelines(conn.data_to_send())
    for event in conn.events():        # Request / Response / Text / Binary / Ping / Pong / Closed
        ...                            # a server answers a Request with accept() and
                                       # send_response(); frames that came right behind the
                                       # request then become events too: drain events() again
    if conn.should_close():            # close (or finish closing) the TCP connection
        transport.close()
    elif conn.close_expected():        # the peer should close TCP soon: arm a timer
        ...
    if <the application answered the messages it was given>:
        conn.release_held()            # a bad frame waited behind them: fail now

``receive_data`` and ``receive_eof`` never raise because of what the peer sent: a peer error
*fails* the connection (RFC 6455 7.1.7): the right Close frame is queued, input is ignored from
then on, and the :class:`~wskit.core.events.Closed` event carries the cause. Calls that the
protocol forbids in the current state raise :class:`~wskit.exceptions.LocalProtocolError`.

States (the table ``TRANSITIONS`` below is the single source of truth; the docs draw it)::

    CONNECTING --101 sent/received--> OPEN --Close sent--> CLOSING --Close received--> CLOSED
         |                              |                                               ^
         +--rejected / failed / EOF-----+------Close received (echoed) / failure / EOF--+
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from enum import IntEnum

from wskit.core.events import (
    Binary,
    Closed,
    Event,
    Ping,
    Pong,
    Request,
    Response,
    Text,
)
from wskit.core.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from wskit.core.frames import (
    FIN,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    Frame,
    MessageBuffer,
    MessageBufferLike,
    apply_mask,
    build_frame,
    encode_header,
    new_mask,
    parse_close,
    serialize_close,
    truncate_reason,
)
from wskit.core.handshake import (
    accept_response,
    build_request,
    check_request,
    check_response,
    error_response,
    parse_extensions,
    parse_request,
    parse_response,
    parse_subprotocols,
    reject_response,
    serialize_request,
    serialize_response,
)
from wskit.core.headers import Headers, HeadersLike
from wskit.core.limits import DEFAULT_LIMITS, Limits
from wskit.core.uri import WSURI, parse_uri
from wskit.exceptions import (
    InvalidHandshake,
    LocalProtocolError,
    NegotiationError,
    PayloadTooBig,
    RemoteProtocolError,
)

__all__ = [
    "MAX_PENDING_PONGS",
    "TRANSITIONS",
    "ClientConnection",
    "Connection",
    "ServerConnection",
    "State",
    "as_bytes",
    "encode_message",
]


def as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` as bytes; :class:`TypeError` for anything that is not bytes-like.

    Not ``bytes(data)``: given an int, that makes so many zero bytes, which would go out as a
    payload nobody meant to send.
    """
    if type(data) is bytes:
        return data
    return bytes(memoryview(data))


def encode_message(message: str | bytes) -> bytes:
    """A whole unmasked, uncompressed frame for ``message``: what a server broadcasts once and
    hands to many connections with :meth:`Connection.send_encoded`."""
    if isinstance(message, str):
        payload, opcode = message.encode(), OP_TEXT
    else:
        payload, opcode = as_bytes(message), OP_BINARY
    return encode_header(opcode, len(payload)) + payload


class State(IntEnum):
    """Where a connection stands (RFC 6455 4.1 and 7: CONNECTING, OPEN, CLOSING, CLOSED)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


#: (state, what happens) -> next state. ``Connection`` moves only along these edges.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.CONNECTING, "handshake done"): State.OPEN,
    (State.CONNECTING, "handshake failed"): State.CLOSED,
    (State.CONNECTING, "failed"): State.CLOSED,
    (State.CONNECTING, "eof"): State.CLOSED,
    (State.OPEN, "close sent"): State.CLOSING,
    (State.OPEN, "close received"): State.CLOSED,
    (State.OPEN, "failed"): State.CLOSED,
    (State.OPEN, "eof"): State.CLOSED,
    (State.CLOSING, "close received"): State.CLOSED,
    (State.CLOSING, "failed"): State.CLOSED,
    (State.CLOSING, "eof"): State.CLOSED,
}

# The states as module constants: the hot path compares with ``is`` (an enum member lookup
# costs more; compiled, these are C-level globals, see connection.pxd).
_CONNECTING = State.CONNECTING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

#: RFC 6455 5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s) in
#: response to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for only the
#: most recently processed Ping frame." Pongs not yet handed to the I/O layer are kept up to
#: this many (the oldest dropped first), so a ping flood cannot grow our output without bound.
MAX_PENDING_PONGS = 16

#: A bad frame is held back (see ``Connection.input_held``) only while the bytes behind it
#: stay under this bound, so holding never costs unbounded memory.
MAX_HELD_BYTES = 64 * 1024

#: Payloads up to this size are copied behind their header into one buffer; larger ones are
#: handed out as a separate buffer, so the I/O layer writes them without a copy. A client's
#: frames up to MASK_CHUNK are built as one buffer too: masking copies the payload anyway, so
#: masking it straight behind its header costs no copy more (and saves the I/O layer joining
#: header and payload for one write).
COPY_THRESHOLD = 4096
#: A client masks a larger payload into pieces of this many bytes (a multiple of 4, so every
#: piece starts at key offset 0) rather than into one new object as large as the message: the
#: allocator reuses memory of this size, while a fresh megabyte costs its page faults on every
#: message (measured: a 1 MiB echo client spent more time in the kernel's fault handler than
#: in masking). The pieces are written one after another.
MASK_CHUNK = 64 * 1024


def deflate_growth(size: int) -> int:
    """The most deflate can add to ``size`` bytes of input: stored blocks cost 5 bytes per
    64 KiB, and zlib's ``deflateBound`` allows about 0.03% plus a few bytes; this allows more
    (1/256 plus 1 KiB) to cover other encoders' block choices."""
    return (size >> 8) + 1024


_OPCODE_NAMES = {OP_CONT: "continuation", OP_TEXT: "text", OP_BINARY: "binary"}
_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: Picks a subprotocol: gets the request and the client's offers, returns one or None.
SubprotocolSelector = Callable[[Request, Sequence[str]], "str | None"]


class Connection:
    """What both roles share: framing, message assembly, ping/pong, the closing handshake.

    ``limits`` bounds what the peer may send. With ``stream=True`` data frames are handed out
    as they arrive (``Text``/``Binary`` with ``final=False`` until the last fragment) instead of
    assembled messages. ``fragment_size`` splits outgoing messages into frames of at most that
    many payload bytes (``None``: one frame per ``send_*`` call).
    """

    is_client = False

    # Slots: an idle connection costs memory per attribute, not a dict's worth (issue #3).
    __slots__ = (
        "_buf",
        "_close_now",
        "_discard",
        "_events",
        "_mask",
        "_out",
        "_partial_fin",
        "_partial_key",
        "_partial_left",
        "_partial_offset",
        "_pongs",
        "_rsv_allowed",
        "_rx_buffer",
        "_rx_compressed",
        "_rx_decoder",
        "_rx_frames",
        "_rx_opcode",
        "_rx_parts",
        "_rx_size",
        "_rx_text",
        "_tx_compress",
        "_tx_opcode",
        "bytes_received",
        "bytes_sent",
        "cause",
        "close_rcvd",
        "close_sent",
        "extensions",
        "fragment_size",
        "hold_errors",
        "input_held",
        "limits",
        "messages_received",
        "messages_sent",
        "state",
        "stream",
        "subprotocol",
    )

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        stream: bool = False,
        fragment_size: int | None = None,
    ) -> None:
        if fragment_size is not None and fragment_size < 1:
            raise ValueError("fragment_size must be positive or None")
        self.limits = limits
        self.stream = stream
        self.fragment_size = fragment_size
        self.state = _CONNECTING
        #: The subprotocol agreed during the handshake, or None.
        self.subprotocol: str | None = None
        #: Extensions agreed during the handshake, in the order they apply on send.
        self.extensions: list[Extension] = []
        #: Why the connection failed, once it has (also on the Closed event).
        self.cause: BaseException | None = None
        self._events: list[Event] = []
        self._out: list[bytes] = []
        # Lists made on first use (None until then): an idle connection holds none of them.
        self._pongs: list[bytes] | None = None
        self._buf = bytearray()
        self._mask = self.is_client
        self._rsv_allowed = 0
        self._discard = False  # input is ignored after a failure or the peer's Close
        self._close_now = False
        # The message being received.
        self._rx_opcode = 0
        self._rx_parts: list[bytes] | None = None
        # A binary message of one frame whose payload arrives in pieces, assembled in place.
        self._rx_buffer: MessageBufferLike | None = None
        self._rx_text: list[str] | None = None
        self._rx_size = 0
        self._rx_frames = 0
        self._rx_compressed = False
        self._rx_decoder: codecs.IncrementalDecoder | None = None
        # The frame whose payload is still arriving (uncompressed data frames only).
        self._partial_left = 0
        self._partial_key = b""
        self._partial_offset = 0
        self._partial_fin = 0
        #: Set by the I/O layer while the application has messages it has not yet had the
        #: chance to answer: a violation found in a frame header is then held back.
        self.hold_errors = False
        #: True when a bad frame is held back (behind messages from the same receive_data()
        #: call, or while ``hold_errors`` is set): once the application has handled those
        #: messages, :meth:`release_held` fails the connection on it.
        self.input_held = False
        # The message being sent.
        self._tx_opcode = 0
        self._tx_compress = True
        # The closing handshake.
        self.close_rcvd: tuple[int, str] | None = None
        self.close_sent: tuple[int, str] | None = None
        # Counters for statistics().
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0

    # ------------------------------------------------------------------ I/O contract

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer. Never raises because of their content."""
        self.bytes_received += len(data)
        if self._discard:
            return
        buf = self._buf
        if not buf and self.state is not _CONNECTING:
            # Nothing buffered: parse straight from ``data``, keep only an incomplete tail.
            pos = self._receive_frames(data)
            if pos < len(data) and not self._discard:
                buf += data[pos:]
            return
        buf += data
        if self.state is _CONNECTING:
            self._receive_handshake()
            if self.state is _CONNECTING or self._discard:
                return
        self._receive_buffered()

    def release_held(self) -> bool:
        """End the hold: clear :attr:`hold_errors` and fail on a bad frame held back, if any.

        Front ends call it once the application has handled the messages it was given (or
        did not within ``HELD_ERROR_TIMEOUT``). Returns True when a frame was held: the Close
        frame and the :class:`~wskit.core.events.Closed` event are then ready to collect.
        False when nothing was held, also once the connection is closed (EOF, a failure:
        the held frame is then dropped with the rest of the input).
        """
        self.hold_errors = False
        if not self.input_held:
            return False
        self.receive_data(b"")
        return True

    def receive_eof(self) -> None:
        """The peer closed its side of TCP (or the connection was lost)."""
        self._close_now = True
        if self.state is _CLOSED:
            return
        if self.state is _CONNECTING:
            cause: BaseException | None = InvalidHandshake(
                "connection closed during the opening handshake"
            )
        else:
            cause = None
        self._finish("eof", cause)

    def events(self) -> list[Event]:
        """The events parsed since the last call, oldest first."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes]:
        """The bytes to write, as a list of buffers for ``writelines`` (may be empty)."""
        if self._pongs:
            self._flush_pongs()
        out = self._out
        self._out = []
        return out

    def should_close(self) -> bool:
        """True when the I/O layer should close TCP once it has written ``data_to_send()``.

        RFC 6455 7.1.1: "the underlying TCP connection, in most normal cases, SHOULD be closed
        first by the server"; so a client turns this on only after a failure or the peer's EOF.
        """
        return self._close_now

    def close_expected(self) -> bool:
        """True once the closing handshake started: arm a timer, and close TCP if it expires."""
        state = self.state
        return state is _CLOSING or state is _CLOSED or self.close_sent is not None

    # ------------------------------------------------------------------ sending

    def send_text(self, data: str, fin: bool = True, compress: bool = True) -> None:
        """Queue a text message, or its first fragment when ``fin`` is False.

        ``compress=False`` sends this message uncompressed even if permessage-deflate is on.
        """
        self._send_data(OP_TEXT, data.encode(), fin, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview, fin: bool = True, compress: bool = True
    ) -> None:
        """Queue a binary message, or its first fragment when ``fin`` is False."""
        self._send_data(OP_BINARY, as_bytes(data), fin, compress)

    def send_continuation(self, data: str | bytes | bytearray | memoryview, fin: bool) -> None:
        """Queue the next fragment of the message started with ``send_text/binary(fin=False)``."""
        if not self._tx_opcode:
            raise LocalProtocolError("no fragmented message in progress")
        if isinstance(data, str):
            if self._tx_opcode != OP_TEXT:
                raise LocalProtocolError("str fragment in a binary message")
            payload = data.encode()
        else:
            if self._tx_opcode != OP_BINARY:
                raise LocalProtocolError("bytes fragment in a text message")
            payload = as_bytes(data)
        self._send_data(OP_CONT, payload, fin, self._tx_compress)

    def send_encoded(self, frame: bytes) -> None:
        """Queue one whole message already encoded by :func:`encode_message` (broadcasts).

        Server side only (a client masks each frame with a fresh key); the frame is sent
        as is, uncompressed, which permessage-deflate allows per message (RFC 7692 6).
        """
        if self.is_client:
            raise LocalProtocolError("a client must mask every frame itself")
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send: connection is {self.state.name}")
        if self._tx_opcode:
            # RFC 6455 5.4: "the fragments of one message MUST NOT be interleaved".
            raise LocalProtocolError("a fragmented message is in progress")
        self.messages_sent += 1
        self.bytes_sent += len(frame)
        self._out.append(frame)

    def finish_message(self) -> None:
        """End the fragmented message in progress with an empty final frame."""
        if not self._tx_opcode:
            raise LocalProtocolError("no fragmented message in progress")
        self._send_data(OP_CONT, b"", True, self._tx_compress)

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a Ping frame (at most 125 bytes of payload, RFC 6455 5.5)."""
        self._send_control(OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        """Queue an unsolicited Pong frame (a heartbeat, RFC 6455 5.5.3)."""
        self._send_control(OP_PONG, payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 7.1.2).

        ``code=None`` sends a Close frame with no body. Codes 1005, 1006, 1015 and codes outside
        the registered ranges raise :class:`LocalProtocolError`.
        """
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot close: connection is {self.state.name}")
        payload = serialize_close(code, reason)
        self._queue_close(payload, code, reason)
        self._transition("close sent")

    def fail(self, code: int = 1011, reason: str = "", cause: BaseException | None = None) -> None:
        """Fail the connection (RFC 6455 7.1.7): send Close with ``code`` if none was sent yet,
        ignore further input and ask the I/O layer to close TCP. No-op once closed."""
        if self.state is _CLOSED:
            return
        if self.state is not _CONNECTING and self.close_sent is None:
            reason = truncate_reason(reason)
            self._queue_close(serialize_close(code, reason), code, reason)
        self._close_now = True
        self._finish("failed", cause)

    # ------------------------------------------------------------------ internals: send

    def _send_data(self, opcode: int, payload: bytes, fin: bool, compress: bool) -> None:
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send: connection is {self.state.name}")
        if opcode != OP_CONT:
            if self._tx_opcode:
                raise LocalProtocolError(
                    "a fragmented message is in progress; finish it with send_continuation()"
                )
            self._tx_compress = compress
            self.messages_sent += 1
        rsv = 0
        if self.extensions and self._tx_compress:
            frame = Frame(opcode, payload, fin, 0)
            for extension in self.extensions:
                frame = extension.encode(frame)
            payload, rsv = frame.data, frame.rsv
        self._tx_opcode = 0 if fin else (opcode or self._tx_opcode)
        limit = self.fragment_size
        if limit is None or len(payload) <= limit:
            self._queue_frame(opcode, payload, fin, rsv)
            return
        # Split one logical frame into several: RSV bits belong to the first frame only
        # (RFC 7692 6.1: "the RSV1 bit is set only on the first frame").
        last = len(payload) - limit
        start = 0
        while start < last:
            self._queue_frame(opcode, payload[start : start + limit], False, rsv)
            opcode, rsv = OP_CONT, 0
            start += limit
        self._queue_frame(opcode, payload[start:], fin, rsv)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send: connection is {self.state.name}")
        payload = as_bytes(payload)
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError(
                f"control frame payload is {len(payload)} bytes; at most {MAX_CONTROL_PAYLOAD}"
            )
        self._queue_frame(opcode, payload, True, 0)

    def _queue_frame(self, opcode: int, payload: bytes, fin: bool, rsv: int) -> None:
        n = len(payload)
        if n <= COPY_THRESHOLD or (self._mask and n <= MASK_CHUNK):
            # Header, key and payload in one bytes object (one allocation when compiled).
            # RFC 6455 5.1: "a client MUST mask all frames that it sends to the server".
            frame = build_frame((FIN if fin else 0) | rsv | opcode, payload, self._mask)
            self.bytes_sent += len(frame)
            self._out.append(frame)
            return
        if self._mask:
            # RFC 6455 5.3: "The masking key needs to be unpredictable"; 5.1: "a client MUST
            # mask all frames that it sends to the server".
            key = new_mask()
            self._queue_masked_chunks(encode_header(opcode, n, fin, rsv, key), payload, key)
            return
        # Large: header and payload as two buffers (copying the payload would cost more than
        # the front end's write of two).
        header = encode_header(opcode, n, fin, rsv)
        self.bytes_sent += len(header) + n
        self._out.append(header)
        self._out.append(payload)

    def _queue_masked_chunks(self, header: bytes, payload: bytes, key: bytes) -> None:
        """Queue a large client frame masked piece by piece (see :data:`MASK_CHUNK`)."""
        out = self._out
        out.append(header)
        self.bytes_sent += len(header) + len(payload)
        view = memoryview(payload)
        # MASK_CHUNK is a multiple of 4: every piece starts at key offset 0.
        for start in range(0, len(payload), MASK_CHUNK):
            out.append(apply_mask(view[start : start + MASK_CHUNK], key))
        view.release()

    def _queue_close(self, payload: bytes, code: int | None, reason: str) -> None:
        # Pongs still pending go out before the Close frame; nothing goes out after it.
        self._flush_pongs()
        self._queue_frame(OP_CLOSE, payload, True, 0)
        self.close_sent = (1005 if code is None else code, reason)

    def _flush_pongs(self) -> None:
        pongs = self._pongs
        self._pongs = None
        if pongs is None or self.close_sent is not None:
            return
        for payload in pongs:
            self._queue_frame(OP_PONG, payload, True, 0)

    # ------------------------------------------------------------------ internals: receive

    def _receive_handshake(self) -> None:
        raise NotImplementedError

    def _receive_buffered(self) -> None:
        """Parse the frames in the connection's own buffer and drop what was consumed."""
        buf = self._buf
        pos = self._receive_frames(buf)
        if self._discard:
            buf.clear()
        elif pos:
            del buf[:pos]

    def _receive_frames(self, buf: bytes | bytearray | memoryview) -> int:
        """Parse every frame in ``buf`` (RFC 6455 5.2); return how many bytes were consumed.

        Uncompressed data frames are consumed as their payload arrives, so UTF-8 is checked
        and memory is released piece by piece. A violation found in a frame's header may be
        held back (see :attr:`input_held`): its bytes are then left unconsumed.
        """
        end = len(buf)
        pos = 0
        # Counted before the rest of a partial frame is consumed: a message it completes is
        # one of this call's.
        messages_before = self.messages_received
        self.input_held = False
        if self._partial_left:
            pos = self._receive_partial(buf, 0, end)
        limits = self.limits
        max_frame = limits.max_frame_size
        max_message = limits.max_message_size
        expect_mask = 0 if self._mask else 0x80
        error: RemoteProtocolError | None = None
        while end - pos >= 2 and not self._discard and not self._partial_left:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = (buf[head] << 8) | buf[head + 1]
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                # RFC 6455 5.2: "the most significant bit MUST be 0". Checked on the first
                # byte, before the conversion: the length then fits a signed 64-bit integer.
                if buf[head] & 0x80:
                    error = RemoteProtocolError("64-bit frame length with the high bit set")
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            opcode = b0 & 0x0F
            fin = b0 & FIN
            rsv = b0 & 0x70
            # RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that is
            # not masked" and "A client MUST close a connection if it detects a masked frame".
            if (b1 & 0x80) != expect_mask:
                error = RemoteProtocolError("frame masking is wrong for this role")
                break
            if opcode >= 8:
                error = self._check_control_header(opcode, fin, rsv, length)
                if error is not None:
                    break
            else:
                error = self._check_data_header(opcode, rsv, length, max_frame, max_message)
                if error is not None:
                    break
            if expect_mask:
                key = bytes(buf[head : head + 4])
                head += 4
            else:
                key = b""
            stop = head + length
            if stop > end:
                # Incomplete: an uncompressed data frame is consumed as it arrives.
                if opcode < 8 and end > head and not self._rx_compressed_frame(opcode, rsv):
                    self._start_data_frame(opcode, rsv)
                    self._partial_left = length
                    self._partial_key = key
                    self._partial_offset = 0
                    self._partial_fin = fin
                    if fin and opcode == OP_BINARY and not self.stream:
                        # A whole message in this one frame, and its header gave the exact
                        # length: its payload is unmasked into place as it arrives, copied
                        # once. ``length`` passed _check_data_header: the allocation is
                        # within max_frame_size and max_message_size. (A message of several
                        # frames keeps a list of parts: growing one buffer frame by frame
                        # cost more than the join it saves.)
                        self._rx_buffer = MessageBuffer(length)
                    pos = self._receive_partial(buf, head, end)
                break
            payload = apply_mask(buf[head:stop], key) if key else bytes(buf[head:stop])
            pos = stop
            if opcode < 8:
                self._receive_data_frame(opcode, fin, rsv, payload)
            else:
                self._receive_control_frame(opcode, payload)
        if error is not None and not self._discard:
            if (
                self.hold_errors or self.messages_received > messages_before
            ) and end - pos <= MAX_HELD_BYTES:
                # Let the application handle the messages before the bad frame (and send its
                # answers) first: the frame is parsed again, and fails, on a later
                # receive_data() call. A peer that keeps sending meanwhile fails at once.
                self.input_held = True
            else:
                pos = end
                self._fail_exc(error)
        return pos

    def _check_control_header(
        self, opcode: int, fin: int, rsv: int, length: int
    ) -> RemoteProtocolError | None:
        if opcode > OP_PONG:
            return RemoteProtocolError(f"reserved opcode {opcode:#x}")
        # RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less
        # and MUST NOT be fragmented."
        if length > MAX_CONTROL_PAYLOAD:
            return RemoteProtocolError("control frame payload over 125 bytes")
        if not fin:
            return RemoteProtocolError("fragmented control frame")
        if rsv:
            return RemoteProtocolError("RSV bit set on a control frame")
        return None

    def _check_data_header(
        self, opcode: int, rsv: int, length: int, max_frame: int | None, max_message: int | None
    ) -> RemoteProtocolError | None:
        """Everything a data frame's header alone can break, checked before its payload."""
        if opcode > OP_BINARY:
            return RemoteProtocolError(f"reserved opcode {opcode:#x}")
        # RFC 6455 5.2: RSV bits "MUST be 0 unless an extension is negotiated that defines
        # meanings for non-zero values".
        if rsv & ~self._rsv_allowed:
            return RemoteProtocolError("RSV bit set without a negotiated extension")
        if opcode == OP_CONT:
            if not self._rx_opcode:
                return RemoteProtocolError("continuation frame without a message to continue")
            max_fragments = self.limits.max_fragments
            if max_fragments is not None and self._rx_frames >= max_fragments:
                return PayloadTooBig(f"message has over {max_fragments} fragments")
        elif self._rx_opcode:
            # RFC 6455 5.4: fragments of one message are never interleaved with another.
            return RemoteProtocolError(f"{_OPCODE_NAMES[opcode]} frame inside a fragmented message")
        # Limits are checked from the header, before a byte of payload is buffered.
        compressed = self._rx_compressed_frame(opcode, rsv)
        # Incompressible data grows a little under deflate: allow for that growth, so a
        # message that fits max_size still fits when the peer compressed it.
        if (
            max_frame is not None
            and length > max_frame
            and (not compressed or length > max_frame + deflate_growth(max_frame))
        ):
            return PayloadTooBig(f"frame of {length} bytes exceeds {max_frame}")
        # An uncompressed frame adds its declared length to the message as is; a compressed
        # one is bounded during decompression.
        if max_message is not None and not compressed:
            so_far = self._rx_size if opcode == OP_CONT else 0
            if so_far + length > max_message:
                return PayloadTooBig(f"message exceeds {max_message} bytes")
        return None

    def _rx_compressed_frame(self, opcode: int, rsv: int) -> bool:
        return bool(rsv & RSV1) or (opcode == OP_CONT and self._rx_compressed)

    def _start_data_frame(self, opcode: int, rsv: int) -> None:
        """Account for a data frame whose header passed the checks."""
        if opcode == OP_CONT:
            self._rx_frames += 1
        else:
            self._rx_opcode = opcode
            self._rx_size = 0
            self._rx_frames = 1
            self._rx_compressed = bool(rsv & RSV1)

    def _receive_partial(self, buf: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        """Consume what has arrived of the current frame's payload; return the new position."""
        n = min(self._partial_left, end - pos)
        rx_buffer = self._rx_buffer
        if rx_buffer is not None:
            # One copy: from the receive buffer to the payload's place in the message. A view,
            # not a slice, so ``buf`` is not copied first; released at once, so the
            # connection's own buffer can be resized afterwards.
            with memoryview(buf)[pos : pos + n] as view:
                rx_buffer.write(view, self._partial_key, self._partial_offset)
            self._partial_offset += n
            self._partial_left -= n
            self._rx_size += n
            if not self._partial_left and self._partial_fin:
                self._rx_buffer = None
                self._events.append(Binary(rx_buffer.finish()))
                self._end_message()
            return pos + n
        chunk = buf[pos : pos + n]
        key = self._partial_key
        if key:
            offset = self._partial_offset & 3
            if offset:
                key = key[offset:] + key[:offset]
            payload = apply_mask(chunk, key)
            self._partial_offset += n
        else:
            payload = bytes(chunk)
        self._partial_left -= n
        frame_done = not self._partial_left
        self._receive_payload(payload, self._partial_fin if frame_done else 0)
        return pos + n

    def _receive_data_frame(self, opcode: int, fin: int, rsv: int, payload: bytes) -> None:
        """A whole data frame whose header passed the checks."""
        if opcode != OP_CONT and fin and not rsv and not self.extensions and not self.stream:
            # Fast path: a whole message in one plain frame.
            self.messages_received += 1
            if opcode == OP_TEXT:
                try:
                    self._events.append(Text(payload.decode()))
                except UnicodeDecodeError:
                    self._fail_exc(RemoteProtocolError("invalid UTF-8 in text message", 1007))
            else:
                self._events.append(Binary(payload))
            return
        self._start_data_frame(opcode, rsv)
        if self.extensions:
            max_message = self.limits.max_message_size
            budget = None if max_message is None else max_message - self._rx_size
            frame = Frame(opcode, payload, bool(fin), rsv)
            try:
                for extension in reversed(self.extensions):
                    frame = extension.decode(frame, budget)
            except RemoteProtocolError as exc:
                self._fail_exc(exc)
                return
            payload = frame.data
        self._receive_payload(payload, fin)

    def _receive_payload(self, payload: bytes, fin: int) -> None:
        """Add payload to the message being received; ``fin`` ends the message."""
        size = self._rx_size + len(payload)
        max_message = self.limits.max_message_size
        if max_message is not None and size > max_message:
            self._fail_exc(PayloadTooBig(f"message exceeds {max_message} bytes"))
            return
        self._rx_size = size
        if self._rx_opcode == OP_TEXT:
            decoder = self._rx_decoder
            if decoder is None:
                decoder = self._rx_decoder = _new_utf8_decoder()
            try:
                # The incremental decoder fails at the first invalid byte, even mid-frame
                # (RFC 6455 8.1: "MUST _Fail the WebSocket Connection_" on invalid UTF-8).
                text = decoder.decode(payload, bool(fin))
            except UnicodeDecodeError:
                self._fail_exc(RemoteProtocolError("invalid UTF-8 in text message", 1007))
                return
            if self.stream:
                if text or fin:
                    self._events.append(Text(text, bool(fin)))
            else:
                texts = self._rx_text
                if texts is None:
                    texts = self._rx_text = []
                texts.append(text)
                if fin:
                    self._events.append(Text("".join(texts)))
        elif self.stream:
            if payload or fin:
                self._events.append(Binary(payload, bool(fin)))
        else:
            parts = self._rx_parts
            if parts is None:
                parts = self._rx_parts = []
            parts.append(payload)
            if fin:
                self._events.append(Binary(b"".join(parts)))
        if fin:
            self._end_message()

    def _end_message(self) -> None:
        """The message being received is complete (its event is queued)."""
        self.messages_received += 1
        self._rx_opcode = 0
        self._rx_parts = None
        self._rx_text = None
        self._rx_decoder = None

    def _receive_control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._events.append(Ping(payload))
            # RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame
            # in response ... with identical Application data".
            if self.state is _OPEN and self.close_sent is None:
                pongs = self._pongs
                if pongs is None:
                    pongs = self._pongs = []
                elif len(pongs) >= MAX_PENDING_PONGS:
                    del pongs[0]
                pongs.append(payload)
        elif opcode == OP_PONG:
            self._events.append(Pong(payload))
        else:
            try:
                code, reason = parse_close(payload)
            except RemoteProtocolError as exc:
                self._fail_exc(exc)
                return
            self.close_rcvd = (code, reason)
            if self.close_sent is None:
                # RFC 6455 5.5.1: "When sending a Close frame in response, the endpoint
                # typically echos the status code it received."
                echo = None if code == 1005 else code
                self._queue_close(serialize_close(echo), echo, "")
            if not self.is_client:
                self._close_now = True
            self._finish("close received", None)

    def _fail_exc(self, exc: RemoteProtocolError) -> None:
        self.fail(exc.code, exc.reason, exc)

    def _transition(self, what: str) -> None:
        self.state = TRANSITIONS[self.state, what]

    def _finish(self, what: str, cause: BaseException | None) -> None:
        """Enter CLOSED and emit the one ``Closed`` event."""
        self._transition(what)
        self._discard = True
        # Input is ignored from now on: a bad frame held back will never be parsed, so
        # nothing is held any more (release_held() has nothing to do).
        self.input_held = False
        self.cause = cause
        for extension in self.extensions:
            extension.close()
        rcvd_code, rcvd_reason = self.close_rcvd or (1006, "")
        sent_code, sent_reason = self.close_sent or (None, "")
        self._events.append(Closed(rcvd_code, rcvd_reason, sent_code, sent_reason, cause))

    def _set_extensions(self, extensions: list[Extension]) -> None:
        self.extensions = extensions
        rsv = 0
        for extension in extensions:
            rsv |= extension.rsv_bits
        self._rsv_allowed = rsv


def _compact_headers(request: Request | None, response: Response) -> None:
    """The handshake is done: its headers stay for the connection's life (``request``,
    ``response``), but their lookup index need not (about 2 KiB an idle connection)."""
    if request is not None:
        request.headers.compact()
    response.headers.compact()


class _Default:
    """Marker for "not given": the connection decides (subprotocol, user agent)."""


class ServerConnection(Connection):
    """The server role: parses the request, then frames; answer the request with
    :meth:`accept` or :meth:`reject` followed by :meth:`send_response`.

    ``subprotocols`` lists what the server supports, in its order of preference; by default
    the first of the client's offers that the server supports is chosen (pass
    ``select_subprotocol`` to choose otherwise). ``extensions`` holds the server extension
    factories, tried against the client's offers in the client's order.
    """

    is_client = False

    __slots__ = (
        "_accepted",
        "available_subprotocols",
        "extension_factories",
        "request",
        "response",
        "select_subprotocol",
    )

    def __init__(
        self,
        *,
        extensions: Sequence[ServerExtensionFactory] = (),
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SubprotocolSelector | None = None,
        limits: Limits = DEFAULT_LIMITS,
        stream: bool = False,
        fragment_size: int | None = None,
    ) -> None:
        super().__init__(limits=limits, stream=stream, fragment_size=fragment_size)
        self.extension_factories = list(extensions)
        self.available_subprotocols = list(subprotocols or ())
        self.select_subprotocol = select_subprotocol
        #: The request once received.
        self.request: Request | None = None
        #: The response once sent.
        self.response: Response | None = None
        self._accepted: tuple[Response, list[Extension], str | None] | None = None

    def _receive_handshake(self) -> None:
        if self.request is not None:
            # Waiting for accept()/reject(); later bytes stay buffered, within bounds. RFC 6455
            # 4.1: the client "MUST wait for a response from the server before sending any
            # further data", so a client that sends a lot before the 101 is refused.
            if len(self._buf) > self.limits.max_head_size:
                self._reject_now(InvalidHandshake("data sent before the handshake completed"))
            return
        try:
            parsed = parse_request(self._buf, self.limits)
        except InvalidHandshake as exc:
            self._reject_now(exc)
            return
        if parsed is None:
            return
        request, consumed = parsed
        del self._buf[:consumed]
        self.request = request
        self._events.append(request)

    def _reject_now(self, exc: InvalidHandshake) -> None:
        """Answer a head that cannot be parsed and close; the client gets an HTTP error."""
        self._buf.clear()
        self.send_response(error_response(exc), cause=exc)

    def accept(
        self,
        request: Request | None = None,
        *,
        subprotocol: str | type[_Default] | None = _Default,
        extra_headers: HeadersLike | None = None,
    ) -> Response:
        """Validate the upgrade request and build the response: 101, or an HTTP error
        (400, 405, 426, 505) if the request is not a valid WebSocket upgrade.

        Nothing is sent until :meth:`send_response`. ``subprotocol`` overrides the choice made
        from ``subprotocols``/``select_subprotocol``; ``extra_headers`` are added to a 101.
        """
        request = request or self.request
        if request is None:
            raise LocalProtocolError("no request received yet")
        try:
            key = check_request(request)
            offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
            offered_protocols = parse_subprotocols(
                request.headers.get_all("Sec-WebSocket-Protocol")
            )
        except InvalidHandshake as exc:
            response = error_response(exc)
            self._accepted = None
            self.cause = exc
            return response
        accepted: list[Extension] = []
        answers: list[tuple[str, Sequence[ExtensionParameter]]] = []
        done: set[str] = set()
        for name, params in offers:
            if name in done:
                continue
            for factory in self.extension_factories:
                if factory.name != name:
                    continue
                try:
                    response_params, extension = factory.process_request_params(params, accepted)
                except NegotiationError:
                    continue
                accepted.append(extension)
                answers.append((name, response_params))
                done.add(name)
                break
        if subprotocol is _Default:
            chosen = self._choose_subprotocol(request, offered_protocols)
        else:
            chosen = subprotocol  # type: ignore[assignment]
        response = accept_response(
            key, subprotocol=chosen, extensions=answers, extra_headers=extra_headers
        )
        self._accepted = (response, accepted, chosen)
        return response

    def _choose_subprotocol(self, request: Request, offered: Sequence[str]) -> str | None:
        if self.select_subprotocol is not None:
            return self.select_subprotocol(request, offered)
        for protocol in offered:
            if protocol in self.available_subprotocols:
                return protocol
        return None

    def reject(
        self, status: int, body: str | bytes = b"", headers: HeadersLike | None = None
    ) -> Response:
        """Build an HTTP response that refuses the upgrade (send it with :meth:`send_response`)."""
        return reject_response(status, body, headers)

    def send_response(self, response: Response, cause: BaseException | None = None) -> None:
        """Send the handshake response. A 101 from :meth:`accept` opens the connection; any
        other response closes it after it is written."""
        if self.state is not _CONNECTING or self.response is not None:
            raise LocalProtocolError("the handshake response was already sent")
        accepted = self._accepted
        if response.status == 101 and (accepted is None or accepted[0] is not response):
            # Checked before anything is queued: the caller may still send another answer.
            raise LocalProtocolError("send the 101 response that accept() returned")
        data = serialize_response(response)
        self.response = response
        self.bytes_sent += len(data)
        self._out.append(data)
        if accepted is not None and response.status == 101:
            self._set_extensions(accepted[1])
            self.subprotocol = accepted[2]
            self._accepted = None
            self._transition("handshake done")
            _compact_headers(self.request, response)
            if self._buf:  # frames that arrived right behind the request
                self._receive_buffered()
            return
        self._close_now = True
        self._finish("handshake failed", cause or self.cause)


class ClientConnection(Connection):
    """The client role: call :meth:`send_request`, then feed what the server sends.

    The opening handshake succeeds with a :class:`~wskit.core.events.Response` event (status
    101); otherwise a :class:`~wskit.core.events.Closed` event carries the reason
    (:class:`~wskit.exceptions.InvalidStatus` when the server refused).
    """

    is_client = True

    __slots__ = (
        "_key",
        "_request_sent",
        "extension_factories",
        "offered_subprotocols",
        "request",
        "response",
        "wsuri",
    )

    def __init__(
        self,
        uri: str | WSURI,
        *,
        extensions: Sequence[ClientExtensionFactory] = (),
        subprotocols: Sequence[str] = (),
        extra_headers: HeadersLike | None = None,
        user_agent: str | type[_Default] | None = _Default,
        origin: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        stream: bool = False,
        fragment_size: int | None = None,
    ) -> None:
        super().__init__(limits=limits, stream=stream, fragment_size=fragment_size)
        self.wsuri = parse_uri(uri) if isinstance(uri, str) else uri
        self.extension_factories = list(extensions)
        self.offered_subprotocols = list(subprotocols)
        offers = [(f.name, f.get_request_params()) for f in self.extension_factories]
        kwargs = {} if user_agent is _Default else {"user_agent": user_agent}
        self.request, self._key = build_request(
            self.wsuri,
            extra_headers=Headers(extra_headers) if extra_headers is not None else None,
            subprotocols=self.offered_subprotocols,
            extensions=offers,
            origin=origin,
            **kwargs,  # type: ignore[arg-type]
        )
        self.response: Response | None = None
        self._request_sent = False

    def send_request(self) -> None:
        """Queue the upgrade request (see :attr:`request`)."""
        if self._request_sent:
            raise LocalProtocolError("the request was already sent")
        self._request_sent = True
        data = serialize_request(self.request)
        self.bytes_sent += len(data)
        self._out.append(data)

    def _receive_handshake(self) -> None:
        try:
            parsed = parse_response(self._buf, self.limits)
            if parsed is None:
                return
            response, consumed = parsed
            del self._buf[:consumed]
            self.response = response
            check_response(response, self._key)
            self._set_extensions(self._negotiate_extensions(response))
            self.subprotocol = self._negotiate_subprotocol(response)
        except InvalidHandshake as exc:
            self._buf.clear()
            self._close_now = True
            self._finish("handshake failed", exc)
            return
        self._transition("handshake done")
        _compact_headers(self.request, response)
        self._events.append(response)

    def _negotiate_extensions(self, response: Response) -> list[Extension]:
        accepted: list[Extension] = []
        for name, params in parse_extensions(response.headers.get_all("Sec-WebSocket-Extensions")):
            for factory in self.extension_factories:
                if factory.name == name:
                    accepted.append(factory.process_response_params(params, accepted))
                    break
            else:
                # RFC 6455 4.1: the client fails the connection if "the response includes a
                # Sec-WebSocket-Extensions header field ... not present in the client's handshake".
                raise NegotiationError(f"server accepted an extension not offered: {name}")
        return accepted

    def _negotiate_subprotocol(self, response: Response) -> str | None:
        protocols = parse_subprotocols(response.headers.get_all("Sec-WebSocket-Protocol"))
        if not protocols:
            return None
        if len(protocols) > 1:
            raise NegotiationError("server chose more than one subprotocol")
        if protocols[0] not in self.offered_subprotocols:
            # RFC 6455 4.1: the server's subprotocol must be one the client offered.
            raise NegotiationError(f"server chose a subprotocol not offered: {protocols[0]}")
        return protocols[0]

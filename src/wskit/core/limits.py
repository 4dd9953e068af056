"""Every limit the core enforces, with its default and the precedent for it.

Limits are checked before anything is buffered: a frame whose declared length exceeds the
budget is refused from its header alone, and decompression asks zlib for at most the bytes that
remain in the message budget. ``None`` disables a limit (do that only for trusted peers).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEAD_SIZE",
    "DEFAULT_MAX_LINE_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HELD_ERROR_TIMEOUT",
    "LINGER_TIMEOUT",
    "Limits",
]

#: 1 MiB after decompression: websockets' ``max_size`` default, aiohttp's 4 MiB is looser.
#: RFC 6455 10.4: "implementations SHOULD impose a limit on frame sizes and the total message
#: size after reassembly from multiple frames".
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
#: A single frame may carry at most a whole message.
DEFAULT_MAX_FRAME_SIZE = DEFAULT_MAX_MESSAGE_SIZE
#: Fragments in one message: websockets' 4096. Empty continuation frames cost CPU without
#: growing the message, so the count needs its own bound (RFC 6455 10.4).
DEFAULT_MAX_FRAGMENTS = 4096
#: Opening-handshake head: 16 KiB, as h11's ``max_incomplete_event_size`` and nginx's
#: ``large_client_header_buffers`` (4 x 8k, a little less here).
DEFAULT_MAX_HEAD_SIZE = 16 * 1024
#: Header fields in one head: websockets' ``MAX_NUM_HEADERS`` is 128.
DEFAULT_MAX_HEADERS = 128
#: One header line: 8 KiB, as websockets' MAX_LINE_LENGTH and Apache's LimitRequestFieldSize.
DEFAULT_MAX_LINE_SIZE = 8 * 1024
#: Body of a non-101 response a client reads to report it: websockets reads at most 1 MiB;
#: a rejection page has no reason to be larger than 64 KiB.
DEFAULT_MAX_BODY_SIZE = 64 * 1024
#: A server that refused the opening handshake half-closes TCP, then reads and discards what
#: the client still sends for at most this many seconds before it closes: closing with unread
#: bytes would reset the connection and could destroy the answer before the client read it
#: (RFC 9112 9.6, "Tear-down"; Apache's lingering close waits 2 s).
LINGER_TIMEOUT = 2.0
#: Seconds a front end holds a bad frame back behind messages the application has not taken
#: yet (so that its answers to them go out before the Close frame); past it the connection
#: fails anyway, for an application that never calls ``recv()`` (a send-only feed).
HELD_ERROR_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds one connection enforces on what its peer sends.

    ``max_message_size`` counts bytes after decompression (1009 when exceeded);
    ``max_frame_size`` bounds one frame's payload as declared on the wire (1009);
    ``max_fragments`` bounds the frames of one message (1009); ``max_head_size``,
    ``max_headers`` and ``max_line_size`` bound the HTTP head of the opening handshake (431);
    ``max_body_size`` bounds the body a client reads from a rejected handshake.
    """

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_line_size: int = DEFAULT_MAX_LINE_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_frame_size", "max_fragments"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value}")
        for name in ("max_head_size", "max_headers", "max_line_size", "max_body_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def for_size(cls, max_size: int | None, **overrides: int | None) -> Limits:
        """Limits where one frame and one message may both reach ``max_size``."""
        values: dict[str, int | None] = {"max_message_size": max_size, "max_frame_size": max_size}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


DEFAULT_LIMITS = Limits()

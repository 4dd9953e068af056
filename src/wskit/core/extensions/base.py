"""The extension API (RFC 6455 section 9): negotiation factories and per-frame transforms.

A client holds :class:`ClientExtensionFactory` objects: each offers parameters in the request
and, if the server accepts, builds an :class:`Extension` from the response's parameters. A
server holds :class:`ServerExtensionFactory` objects: each reads the client's offers and, if it
accepts one, returns the response parameters and an :class:`Extension`.

Negotiated extensions transform frames in order: ``encode`` on the way out (in the order
negotiated), ``decode`` on the way in (in reverse order). An extension declares the RSV bits it
uses; a frame with any other RSV bit set fails the connection with 1002.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from wskit.core.frames import Frame

__all__ = [
    "ClientExtensionFactory",
    "Extension",
    "ExtensionParameter",
    "ServerExtensionFactory",
]

#: One ``name`` or ``name=value`` parameter of an extension offer (value ``None`` when absent).
ExtensionParameter = tuple[str, str | None]


class Extension(ABC):
    """A negotiated extension: transforms frames, keeps per-connection state."""

    #: The registered extension token, e.g. ``"permessage-deflate"``.
    name: str
    #: RSV bits (0x40, 0x20, 0x10) this extension may set on frames.
    rsv_bits: int = 0

    @abstractmethod
    def decode(self, frame: Frame, max_size: int | None = None) -> Frame:
        """Undo the transform on a received data frame.

        ``max_size`` is what remains of the message budget: the result's payload must not
        exceed it, or :class:`~wskit.exceptions.PayloadTooBig` is raised before the excess is
        produced. Raise :class:`~wskit.exceptions.RemoteProtocolError` for an invalid frame.
        Control frames are never passed in.
        """

    @abstractmethod
    def encode(self, frame: Frame) -> Frame:
        """Apply the transform to a data frame this side is about to send."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (compression state) once the connection is over."""


class ClientExtensionFactory(ABC):
    """Client side of one extension's negotiation."""

    name: str

    @abstractmethod
    def get_request_params(self) -> list[ExtensionParameter]:
        """The parameters to offer in ``Sec-WebSocket-Extensions``."""

    @abstractmethod
    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        """Build the extension the server accepted with ``params``.

        ``accepted`` lists the extensions already accepted before this one. Raise
        :class:`~wskit.exceptions.NegotiationError` if the answer is not acceptable: the
        client then fails the connection.
        """


class ServerExtensionFactory(ABC):
    """Server side of one extension's negotiation."""

    name: str

    @abstractmethod
    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Accept one offer: return the response parameters and the extension.

        Raise :class:`~wskit.exceptions.NegotiationError` to decline this offer (the server
        then tries the client's next offer of the same extension, or goes on without it).
        """

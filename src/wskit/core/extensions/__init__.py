"""WebSocket extensions: the negotiation API (RFC 6455 section 9) and permessage-deflate.

:mod:`wskit.core.extensions.base` defines what an extension and its factories do;
:mod:`wskit.core.extensions.permessage_deflate` implements RFC 7692 on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from wskit.core.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from wskit.core.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflateFactory",
    "Compression",
    "Extension",
    "ExtensionParameter",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
    "enable_client_permessage_deflate",
    "enable_server_permessage_deflate",
    "extension_factories",
]

_Factory = TypeVar("_Factory", ClientExtensionFactory, ServerExtensionFactory)

#: What a front end's ``compression=`` option takes: "deflate" (permessage-deflate with its
#: defaults), ``None`` (no extension), or a list of extension factories.
Compression = str | None | Sequence[ClientExtensionFactory] | Sequence[ServerExtensionFactory]


def extension_factories(
    compression: str | Sequence[_Factory] | None, deflate: Callable[[], _Factory]
) -> list[_Factory]:
    """The factories a ``compression=`` option stands for; ``deflate`` makes the default one
    (``ClientPerMessageDeflateFactory`` or ``ServerPerMessageDeflateFactory``)."""
    if compression is None:
        return []
    if compression == "deflate":
        return [deflate()]
    if isinstance(compression, str):
        raise ValueError(f"unsupported compression: {compression!r}")
    return list(compression)

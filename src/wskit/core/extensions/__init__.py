"""WebSocket extensions: the negotiation API (RFC 6455 section 9) and permessage-deflate.

:mod:`wskit.core.extensions.base` defines what an extension and its factories do;
:mod:`wskit.core.extensions.permessage_deflate` implements RFC 7692 on top of it.
"""

from __future__ import annotations

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
    "Extension",
    "ExtensionParameter",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
    "enable_client_permessage_deflate",
    "enable_server_permessage_deflate",
]

"""The DEFLATE implementation permessage-deflate runs on: the fastest one installed.

zlib-ng's drop-in module (``pip install "wskit[speed]"`` installs it) when it is there: the same
API and the same DEFLATE format as the standard library's ``zlib``, two to three times faster
at compressing. Otherwise, and always with ``WSKIT_NO_EXTENSIONS=1`` (which keeps wskit to the
standard library and its own pure Python), ``zlib``. The front ends hand it to the factories
that ``compression="deflate"`` stands for; the core imports only ``zlib`` itself and takes any
such module as a parameter (``wskit.core.extensions.permessage_deflate.DeflateModule``).
"""

from __future__ import annotations

import os
import zlib
from typing import Any

__all__ = ["NAME", "module"]

module: Any = zlib
#: "zlib-ng" or "zlib": which one :data:`module` is.
NAME = "zlib"
if not os.environ.get("WSKIT_NO_EXTENSIONS"):
    try:
        from zlib_ng import zlib_ng
    except ImportError:  # the "speed" extra is not installed
        pass
    else:
        module = zlib_ng
        NAME = "zlib-ng"

"""Choose, at import, between the compiled modules and their ``.py`` sources.

Cython builds ``wskit.core.connection`` (and friends, and the asyncio front end's
``wskit.asyncio._hotpath``) as extension modules under their own names, beside their ``.py``
sources; the import system prefers the extension. This finder hands out the ``.py`` source
instead:

- for every one of them when ``WSKIT_NO_EXTENSIONS=1`` is set, so one build runs both ways;
- for a compiled module that uses another's C types (a Cython ``cimport``) when that other
  one runs from source (a build that half failed): compiled, it could not be imported.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: Modules that may exist compiled (kept in step with setup.py).
COMPILED_MODULES = frozenset(
    (
        "wskit.core.connection",
        "wskit.core.events",
        "wskit.core.frames",
        "wskit.asyncio._hotpath",
    )
)

#: Compiled modules and the compiled modules whose C types they use (their .pxd cimports).
CIMPORTS = {
    "wskit.core.connection": ("wskit.core.frames",),
    "wskit.asyncio._hotpath": ("wskit.core.connection",),
}


def _from_source(name: str) -> bool:
    module = sys.modules.get(name) or importlib.import_module(name)
    return (module.__file__ or "").endswith(".py")


class _PureFinder:
    def __init__(self, everything: bool) -> None:
        #: True with ``WSKIT_NO_EXTENSIONS`` set: every module in COMPILED_MODULES from source.
        self.everything = everything

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in COMPILED_MODULES or not path:
            return None
        if not self.everything and not any(map(_from_source, CIMPORTS.get(name, ()))):
            return None  # the usual import: compiled if built
        source = os.path.join(path[0], name.rpartition(".")[2] + ".py")
        if not os.path.exists(source):
            return None
        loader = importlib.machinery.SourceFileLoader(name, source)
        return importlib.util.spec_from_file_location(name, source, loader=loader)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once), reading ``WSKIT_NO_EXTENSIONS``."""
    if not any(isinstance(f, _PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder(bool(os.environ.get("WSKIT_NO_EXTENSIONS"))))


install()

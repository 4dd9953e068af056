"""Honour ``WSKIT_NO_EXTENSIONS=1`` at run time for the modules Cython may have compiled.

Cython builds ``wskit.core.connection`` (and friends) as extension modules under their own
names, beside their ``.py`` sources; the import system prefers the extension. With the switch
set, this finder hands out the ``.py`` source instead, so one build runs both ways.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: Modules that may exist compiled (kept in step with setup.py).
COMPILED_MODULES = frozenset(("wskit.core.connection", "wskit.core.events", "wskit.core.frames"))


class _PureFinder:
    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in COMPILED_MODULES or not path:
            return None
        source = os.path.join(path[0], name.rpartition(".")[2] + ".py")
        if not os.path.exists(source):
            return None
        loader = importlib.machinery.SourceFileLoader(name, source)
        return importlib.util.spec_from_file_location(name, source, loader=loader)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` when ``WSKIT_NO_EXTENSIONS`` is set."""
    if os.environ.get("WSKIT_NO_EXTENSIONS") and not any(
        isinstance(f, _PureFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _PureFinder())


install()

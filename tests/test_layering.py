"""The layering rules of DESIGN.md, checked by reading every import in ``src/wskit``.

Every layer only looks down. What is enforced here, per module:

1. ``wskit.core`` (and everything under it) imports only the standard library, ``wskit.core``
   and ``wskit.exceptions``; and of the standard library, nothing that does I/O, runs an event
   loop, starts threads or reads the clock (DESIGN rule 1: "no sockets, no event loop, no
   threads, no clock").
2. The front ends (``wskit.asyncio``, ``wskit.trio``, ``wskit.sync``) never import each other.
   Only front ends that exist are affected; a missing one simply has no modules to check.
3. A module outside the standard library is imported only where :data:`THIRD_PARTY_ALLOWED`
   says, because ``pip install wskit`` installs no dependencies (``dependencies = []``): each
   integration imports its own framework, and the asyncio front end may use uvloop when the
   "speed" extra installed it. Imports named in :data:`OPTIONAL_IMPORTS` must sit in a
   ``try:`` block that catches ``ImportError``, so the module still imports without them.

Imports under ``if TYPE_CHECKING:`` count too: a type-only dependency on a higher layer is
still a dependency of the design, and mypy follows it.

The checker is plain ``ast`` (nothing is imported or executed), so it also checks modules
whose third-party imports are not installed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CORE = "wskit.core"
# The core may import these wskit modules besides itself (DESIGN rule 1).
CORE_MAY_IMPORT = ("wskit.exceptions",)
# Standard-library modules the core must not use (DESIGN rule 1): sockets and I/O multiplexing,
# event loops, threads and processes, the clock. Time is passed in by the caller when it matters.
CORE_FORBIDDEN_STDLIB = frozenset(
    {
        "asyncio",
        "socket",
        "socketserver",
        "ssl",
        "select",
        "selectors",
        "signal",
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "time",
    }
)

FRONT_ENDS = ("wskit.asyncio", "wskit.trio", "wskit.sync")

# Where third-party imports are allowed: module-name prefix -> the top-level import names
# allowed there, or None for "whatever it adapts". Everything not listed imports only the
# standard library and wskit. Growing this dict is a design decision, made in review: a
# front end built on a third-party library (trio) or a pub/sub backend (redis) gets its own
# entry when it is written, next to the extra in pyproject.toml that installs the library.
THIRD_PARTY_ALLOWED: dict[str, frozenset[str] | None] = {
    # DESIGN rule 3: a framework is imported only inside its own integration module.
    "wskit.integrations": None,
    # The faster event loop of the "speed" extra; optional, see OPTIONAL_IMPORTS.
    "wskit.asyncio": frozenset({"uvloop"}),
    # The faster DEFLATE of the "speed" extra, chosen once for every front end; optional.
    "wskit._zlib": frozenset({"zlib_ng"}),
    # The trio front end and trio-websocket's API on it (the "trio" extra).
    "wskit.trio": frozenset({"trio"}),
    "wskit.trio_websocket": frozenset({"trio"}),
    # ``serve --front-end trio``, imported inside the function that runs it.
    "wskit.cli": frozenset({"trio"}),
}
# Third-party modules that no extra is needed for the importing module to work without: they
# must be imported inside ``try: ... except ImportError:``.
OPTIONAL_IMPORTS = frozenset({"uvloop", "zlib_ng"})

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


@dataclass(frozen=True)
class Import:
    """One imported module, as written in a file of the tree."""

    module: str  # the importing module, e.g. "wskit.core.frames"
    target: str  # the imported module, e.g. "wskit.exceptions"
    path: Path
    line: int
    guarded: bool  # inside a try block that catches ImportError


def _in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    """Dotted name of the module at ``path`` (below ``root``) and whether it is a package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names)


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree``, with whether a try/except ImportError guards it."""

    def walk(node: ast.AST, guarded: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, guarded
            return
        if isinstance(node, ast.Try):
            body_guarded = guarded or any(_catches_import_error(h) for h in node.handlers)
            for statement in node.body:
                yield from walk(statement, body_guarded)
            unguarded: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
            for other in unguarded:
                yield from walk(other, guarded)
            return
        for child in ast.iter_child_nodes(node):
            yield from walk(child, guarded)

    yield from walk(tree, False)


def collect_imports(root: Path) -> list[Import]:
    """Every import of every ``.py`` file under ``root/wskit``; relative imports resolved."""
    files = sorted((root / "wskit").rglob("*.py"))
    known = {_module_name(root, f)[0] for f in files}
    found = []
    for path in files:
        module, is_package = _module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, guarded in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    # "from . import x" in package p means p; in module p.m it also means p.
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    base_parts = package[: len(package) - (node.level - 1)]
                    base = ".".join([*base_parts, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                # "from wskit import asyncio" imports the module wskit.asyncio, not just wskit.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for target in dict.fromkeys(targets):
                found.append(Import(module, target, path, node.lineno, guarded))
    return found


def _violation(imp: Import, root: Path, why: str) -> str:
    where = imp.path.relative_to(root)
    return f"{where}:{imp.line}: {imp.module} imports {imp.target}: {why}"


def check_tree(root: Path) -> list[str]:
    """Every breach of the layering rules in the package ``root/wskit``, as readable lines."""
    problems = []
    for imp in collect_imports(root):
        top = imp.target.split(".")[0]
        is_stdlib = top in sys.stdlib_module_names
        is_wskit = top == "wskit"

        if _in_layer(imp.module, CORE):
            if is_wskit and not (
                _in_layer(imp.target, CORE)
                or any(_in_layer(imp.target, m) for m in CORE_MAY_IMPORT)
            ):
                problems.append(
                    _violation(
                        imp, root, "the core imports only itself and wskit.exceptions (rule 1)"
                    )
                )
            if is_stdlib and top in CORE_FORBIDDEN_STDLIB:
                problems.append(
                    _violation(imp, root, "the core does no I/O, threads or clock (rule 1)")
                )

        own = next((fe for fe in FRONT_ENDS if _in_layer(imp.module, fe)), None)
        other = next((fe for fe in FRONT_ENDS if _in_layer(imp.target, fe)), None)
        if own and other and own != other:
            problems.append(_violation(imp, root, "front ends never import each other (rule 2)"))

        if not (is_stdlib or is_wskit):
            allowed = [
                names
                for prefix, names in THIRD_PARTY_ALLOWED.items()
                if _in_layer(imp.module, prefix)
            ]
            if not any(names is None or top in names for names in allowed):
                problems.append(
                    _violation(imp, root, "third-party import outside THIRD_PARTY_ALLOWED (rule 3)")
                )
            elif top in OPTIONAL_IMPORTS and not imp.guarded:
                problems.append(
                    _violation(imp, root, "optional import needs try/except ImportError (rule 3)")
                )
    return problems


def test_source_tree_follows_the_layering_rules() -> None:
    problems = check_tree(SRC)
    assert not problems, "layering rules broken:\n" + "\n".join(problems)


def test_checker_sees_the_source_tree() -> None:
    # Guards against a checker that passes because it reads nothing (wrong path, no files).
    imports = collect_imports(SRC)
    assert any(i.module == "wskit.core.frames" and i.target == "wskit.exceptions" for i in imports)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_reports_each_kind_of_violation(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "wskit/__init__.py": "",
            "wskit/exceptions.py": "",
            "wskit/core/__init__.py": "from . import frames\n",
            "wskit/core/frames.py": (
                "import struct\n"
                "import socket\n"  # rule 1: I/O
                "from wskit.exceptions import X\n"
                "from wskit import asyncio\n"  # rule 1: a front end
            ),
            "wskit/core/extensions/deflate.py": "from ...sync import conn\n",  # rule 1
            "wskit/asyncio/__init__.py": (
                "import asyncio\n"
                "from wskit.core import frames\n"
                "import uvloop\n"  # rule 3: not guarded
                "import trio\n"  # rule 3: not allowed here
            ),
            "wskit/asyncio/client.py": "from ..trio import connection\n",  # rule 2
            "wskit/trio/__init__.py": "",
            "wskit/trio/connection.py": "",
            "wskit/sync/__init__.py": "import wskit.asyncio.client\n",  # rule 2
            "wskit/sync/conn.py": "",
            "wskit/handlers.py": "import redis\n",  # rule 3
        },
    )
    problems = check_tree(tmp_path)
    expected = [
        "wskit/asyncio/__init__.py:3: wskit.asyncio imports uvloop: optional import",
        "wskit/asyncio/__init__.py:4: wskit.asyncio imports trio: third-party",
        "wskit/asyncio/client.py:1: wskit.asyncio.client imports wskit.trio.connection: front",
        "wskit/core/extensions/deflate.py:1: wskit.core.extensions.deflate imports "
        "wskit.sync.conn: the core",
        "wskit/core/frames.py:2: wskit.core.frames imports socket: the core does no I/O",
        "wskit/core/frames.py:4: wskit.core.frames imports wskit.asyncio: the core imports",
        "wskit/handlers.py:1: wskit.handlers imports redis: third-party",
        "wskit/sync/__init__.py:1: wskit.sync imports wskit.asyncio.client: front",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, start in zip(sorted(problems), expected, strict=True):
        assert problem.startswith(start), f"{problem!r} does not start with {start!r}"


def test_checker_accepts_allowed_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "wskit/__init__.py": "from . import exceptions\n",
            "wskit/exceptions.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from wskit.core.events import Response\n"
            ),
            "wskit/core/__init__.py": "",
            "wskit/core/events.py": "from .headers import Headers\nimport zlib, os\n",
            "wskit/core/headers.py": "from ..exceptions import WebSocketError\n",
            "wskit/asyncio/__init__.py": (
                "import asyncio, socket, time\n"
                "from wskit.core import events\n"
                "try:\n    import uvloop\nexcept (ImportError, AttributeError):\n"
                "    uvloop = None\n"
            ),
            "wskit/integrations/aiohttp.py": "import aiohttp\nfrom wskit import asyncio\n",
        },
    )
    assert check_tree(tmp_path) == []

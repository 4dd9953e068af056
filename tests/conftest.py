"""Session-wide pytest set-up for the whole wskit suite.

Only what every test directory may rely on lives here: the custom markers (the run uses
``--strict-markers``, so a marker missing here is an error, not a silent no-op) and
:func:`summary_note`, which puts a line in the report pytest prints at the end of the run, so a
passing slow test (Autobahn's "510 passed, 0 failed ...") is still visible in a ``-q`` CI log.
The ``chromium`` fixture (tests/browser.py) serves the browser tests of every directory; other
fixtures that serve one area of the suite stay beside its tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser import chromium

__all__ = ["chromium", "summary_note"]

# Markers defined in code rather than in pyproject.toml's [tool.pytest.ini_options]; the
# "browser" marker lives there.
MARKERS = {
    "autobahn": (
        "runs Autobahn|Testsuite (wstest) against wskit; takes minutes. "
        "Deselect with -m 'not autobahn'; WSKIT_AUTOBAHN=0 skips it"
    ),
}

_NOTES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers above and the store behind :func:`summary_note`; refuse to test
    stale compiled modules."""
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.stash[_NOTES] = []
    src = Path(__file__).resolve().parents[1] / "src"
    # (With WSKIT_NO_EXTENSIONS=1 the .py sources run: compiled modules do not matter.)
    stale = [] if os.environ.get("WSKIT_NO_EXTENSIONS") else stale_extensions(src)
    if stale:
        pytest.exit(
            "compiled modules older than their sources would be tested instead of them: "
            + ", ".join(stale)
            + ". Rebuild (pip install -e . or python setup.py build_ext --inplace) or delete them.",
            returncode=4,
        )


_CIMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+cimport|cimport\s+([\w.]+))", re.MULTILINE)


def stale_extensions(src: Path) -> list[str]:
    """Extension modules built in place under ``src/wskit`` whose sources changed since.

    Python imports a compiled ``connection.*.so`` in preference to ``connection.py``, so after
    an edit without a rebuild the tests would silently run the old code. A module's sources
    are its ``.py``, ``.pxd`` and ``.c`` beside it, and the ``.pxd`` of every wskit module its
    ``.pxd`` cimports (their C declarations are compiled into it).
    """
    stale = []
    for built in sorted([*src.rglob("wskit/**/*.so"), *src.rglob("wskit/**/*.pyd")]):
        stem = built.name.split(".")[0]
        sources = [built.with_name(f"{stem}{suffix}") for suffix in (".py", ".pxd", ".c")]
        declarations = sources[1]
        if declarations.exists():
            for match in _CIMPORT.finditer(declarations.read_text(encoding="utf-8")):
                module = match[1] or match[2]
                if module.startswith("wskit."):
                    sources.append(src.joinpath(*module.split(".")).with_suffix(".pxd"))
        newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
        if newest > built.stat().st_mtime:
            stale.append(str(built.relative_to(src)))
    return stale


@pytest.fixture
def summary_note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """A function that adds one line to the "wskit notes" section of the final report."""
    return request.config.stash[_NOTES].append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the collected notes; pytest's own result line still comes last."""
    notes = terminalreporter.config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.write_sep("-", "wskit notes")
        for line in notes:
            terminalreporter.write_line(line)

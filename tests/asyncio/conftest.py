"""Run ``async def`` tests in this folder on a fresh event loop, with a time bound; refuse a
stale compiled front end."""

from __future__ import annotations

import asyncio
import inspect
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stale_extensions

#: No asyncio test here needs more; a hang fails instead of blocking the suite.
TEST_TIMEOUT = 30.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT))
    return True


def pytest_configure(config: pytest.Config) -> None:
    """As tests/conftest.py does for the core: after an edit of ``_hotpath.py`` or its
    ``.pxd`` without a rebuild, the old compiled module would be tested."""
    front_end = Path(__file__).resolve().parents[2] / "src" / "wskit" / "asyncio"
    stale = [] if os.environ.get("WSKIT_NO_EXTENSIONS") else stale_extensions(front_end)
    if stale:
        pytest.exit(
            "compiled modules older than their sources would be tested instead of them: "
            + ", ".join(stale)
            + ". Rebuild (pip install -e . or python setup.py build_ext --inplace) or delete them.",
            returncode=4,
        )

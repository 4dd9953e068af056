"""Run ``async def`` tests in this folder on a fresh event loop, with a time bound."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

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

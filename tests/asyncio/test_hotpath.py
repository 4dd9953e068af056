"""The asyncio front end's per-message path (``wskit.asyncio._hotpath``), compiled or not.

``wskit.core.IMPLEMENTATION`` covers the core only (the core never imports a front end); these
tests say which way the front end runs, and check what the split between the compiled base
class and the Python ``Connection`` must keep true. The suite runs twice (compiled, and with
``WSKIT_NO_EXTENSIONS=1``), so every behaviour test of this folder covers both.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from wskit.asyncio import (
    Connection,
    WebSocketClientConnection,
    WebSocketServerConnection,
    _hotpath,
    connect,
    serve,
)
from wskit.asyncio._hotpath import HotPath

SRC = str(Path(__file__).resolve().parents[2] / "src")

#: ``Py_TPFLAGS_HEAPTYPE``: set on classes made by a ``class`` statement, not on extension types.
HEAP_TYPE = 1 << 9


def test_the_per_message_path_runs_compiled_unless_switched_off() -> None:
    """A build without Cython or a compiler is a failure here, not a skip: CI builds it."""
    assert issubclass(Connection, HotPath)
    # Transports call get_buffer()/buffer_updated() only on a BufferedProtocol.
    assert issubclass(Connection, asyncio.BufferedProtocol)
    from_source = (_hotpath.__file__ or ".py").endswith(".py")
    extension_type = not HotPath.__flags__ & HEAP_TYPE
    if os.environ.get("WSKIT_NO_EXTENSIONS"):
        assert from_source and not extension_type
    else:
        assert not from_source and extension_type, (
            "wskit.asyncio._hotpath is not compiled: pip install -e . with Cython and a compiler"
        )


def test_subclasses_do_not_shadow_the_hot_attributes() -> None:
    """A slot of the same name in a subclass would hide the compiled base's attribute from
    Python code while the compiled code kept using its own: two values for one name."""
    hot = set(HotPath.__slots__)
    for cls in (Connection, WebSocketServerConnection, WebSocketClientConnection):
        for name in hot:
            owner = next(c for c in cls.__mro__ if name in vars(c))
            assert owner is HotPath, (cls, name)
    # Compiled, each slot of the .py is an attribute declared in _hotpath.pxd.
    assert all(name in vars(HotPath) for name in hot)


async def test_connections_keep_weak_references_and_own_attributes() -> None:
    async def handler(ws: WebSocketServerConnection) -> None:
        ws.tag = "mine"  # type: ignore[attr-defined]
        await ws.send(ws.tag)  # type: ignore[attr-defined]
        await ws.wait_closed()

    async with (
        serve(handler, "127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ref = weakref.ref(ws)
        assert await ws.recv() == "mine"
        assert ref() is ws
        ws.note = 1  # type: ignore[attr-defined]
        assert vars(ws) == {"note": 1}


# Loads one core module from its .py, as after a build where only that module failed to
# compile, then runs one echo through a server and a client.
HALF_BUILT = """
import asyncio, importlib.util, sys

class CoreFromSource:
    def find_spec(self, name, path, target=None):
        if name == "wskit.core.{module}":
            return importlib.util.spec_from_file_location(name, path[0] + "/{module}.py")
        return None

sys.meta_path.insert(0, CoreFromSource())
import wskit.asyncio, wskit.core.connection, wskit.asyncio._hotpath as hot

async def main():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)
    async with wskit.asyncio.serve(echo, "127.0.0.1", 0) as server:
        async with wskit.asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("ping")
            return await ws.recv()

print(wskit.core.connection.__file__.endswith(".py"), hot.__file__.endswith(".py"))
print(asyncio.run(main()))
"""


@pytest.mark.parametrize("module", ["connection", "frames"])
def test_a_half_built_front_end_runs_from_source(module: str) -> None:
    """Compiled, the front end uses the compiled core's C layout, and the core's connection
    module the compiled frames' C function: a module whose cimported module runs from source
    runs from source too (wskit._purepath), rather than failing to import."""
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("WSKIT_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", HALF_BUILT.replace("{module}", module)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "ping"]

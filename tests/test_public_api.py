"""The public surface: every module says what it exports, and every exported name exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import wskit
import wskit.exceptions

# Public modules only: a leading underscore (wskit.core._speedups, wskit.__main__) marks a
# module as private.
MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(wskit.__path__, "wskit.")
    if not any(part.startswith("_") for part in name.split("."))
)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr}, which does not exist"


def test_top_level_reexports() -> None:
    assert wskit.__version__
    for name in wskit.exceptions.__all__:
        assert getattr(wskit, name) is getattr(wskit.exceptions, name)


def test_exception_tree() -> None:
    e = wskit.exceptions
    assert issubclass(e.LocalProtocolError, RuntimeError)
    assert issubclass(e.ConcurrencyError, RuntimeError)
    assert issubclass(e.InvalidURI, ValueError)
    assert issubclass(e.PayloadTooBig, e.RemoteProtocolError)
    assert issubclass(e.InvalidStatus, e.InvalidHandshake)
    assert issubclass(e.ConnectionClosedOK, e.ConnectionClosed)
    for name in e.__all__:
        assert issubclass(getattr(e, name), e.WebSocketError)
    assert e.PayloadTooBig("x").code == 1009
    assert e.InvalidHandshake("x", 426).status == 426


def test_exception_tree_in_the_docstring_lists_every_class() -> None:
    doc = wskit.exceptions.__doc__ or ""
    for name in wskit.exceptions.__all__:
        assert name in doc, f"{name} is missing from the tree drawn in wskit.exceptions"

"""The compiled hot path agrees with the pure-Python one, byte for byte and event for event."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.helpers import drain, feed, open_pair
from wskit.core import connection as connection_module
from wskit.core import frames

SRC = str(Path(__file__).resolve().parents[2] / "src")


def compiled() -> ModuleType:
    """The compiled module; its absence is a failure, not a skip (CI builds it)."""
    try:
        from wskit.core import _speedups
    except ImportError:  # pragma: no cover - only without a C compiler
        pytest.fail(
            "wskit.core._speedups is not built: install a C compiler and reinstall "
            "(pip install -e .); WSKIT_NO_EXTENSIONS=1 only selects the pure path at run time"
        )
    return _speedups


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_masking_agrees(data: bytes, mask: bytes, offset: int) -> None:
    fast = compiled().apply_mask
    # Unaligned views and bytearrays go through the buffer protocol like bytes.
    view = memoryview(b"\0" * offset + data)[offset:]
    expected = frames.apply_mask_py(data, mask)
    assert fast(data, mask) == expected
    assert fast(view, mask) == expected
    assert fast(bytearray(data), mask) == expected
    assert fast(expected, mask) == data


def test_masking_large_payloads_agree() -> None:
    rng = random.Random(7)
    fast = compiled().apply_mask
    for size in (65535, 65536, 65537, 1 << 20, (1 << 20) + 3):
        data = rng.randbytes(size)
        mask = rng.randbytes(4)
        assert fast(data, mask) == frames.apply_mask_py(data, mask)


def test_masking_rejects_bad_arguments() -> None:
    fast = compiled().apply_mask
    with pytest.raises(ValueError):
        fast(b"abc", b"xyz")
    with pytest.raises(TypeError):
        fast("text", b"abcd")
    with pytest.raises(TypeError):
        fast(b"abc")


def test_environment_switch_forces_the_pure_path() -> None:
    code = (
        "import wskit.core as c, wskit.core.frames as f;"
        "print(c.IMPLEMENTATION, f.apply_mask.__module__)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("WSKIT_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    compiled()
    assert out.stdout.split() == ["compiled", "wskit.core._speedups"]
    env["WSKIT_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["python", "wskit.core.frames"]


# A stream of client frames: (opcode, fin, payload) with valid sequencing most of the time.
frame_specs = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
        st.booleans(),
        st.binary(max_size=200),
    ),
    max_size=12,
)


def client_frames(specs: list[tuple[int, bool, bytes]], rng: random.Random) -> bytes:
    out = []
    for opcode, fin, payload in specs:
        control = opcode >= 0x8  # at most 125 bytes, never fragmented
        data = payload[:125] if control else payload
        mask = rng.randbytes(4)
        header = frames.encode_header(opcode, len(data), fin or control, 0, mask)
        out.append(header + frames.apply_mask_py(data, mask))
    return b"".join(out)


@settings(max_examples=200, deadline=None)
@given(frame_specs, st.integers(0, 1000), st.sampled_from(["whole", "bytes", "random-3"]))
def test_connections_agree(specs: list[tuple[int, bool, bytes]], seed: int, how: str) -> None:
    """The same bytes, cut the same way, give the same events and the same bytes out."""
    data = client_frames(specs, random.Random(seed))
    results = []
    for mask_fn in (compiled().apply_mask, frames.apply_mask_py):
        saved = connection_module.apply_mask
        connection_module.apply_mask = mask_fn  # type: ignore[assignment]
        try:
            _, server = open_pair()
            events = feed(server, data, how)
            results.append((events, drain(server)))
        finally:
            connection_module.apply_mask = saved
    assert results[0] == results[1]

"""The compiled hot path agrees with the pure-Python one, byte for byte and event for event."""

from __future__ import annotations

import importlib
import itertools
import os
import platform
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.helpers import drain, feed, open_pair
from wskit.core import ClientConnection, Limits, ServerConnection, frames
from wskit.core import connection as connection_module
from wskit.core.events import Binary, Event, Ping, Text
from wskit.core.frames import MessageBufferLike, MessageBufferPy

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


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4), st.integers(0, 31))
def test_mask_kernels_agree(data: bytes, mask: bytes, offset: int) -> None:
    """The kernel chosen at import (AVX2 where the CPU has it) and the portable one."""
    module = compiled()
    view = memoryview(b"\0" * offset + data)[offset:]
    expected = frames.apply_mask_py(data, mask)
    assert module.apply_mask(view, mask) == expected
    assert module._apply_mask_portable(view, mask) == expected


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def test_mask_kernel_follows_the_cpu() -> None:
    kernel = compiled().MASK_KERNEL
    flags = cpu_flags()
    if platform.machine() not in ("x86_64", "AMD64"):
        assert kernel == "portable"  # the AVX2 kernel is built for x86-64 only
    elif flags:
        assert kernel == ("avx2" if "avx2" in flags else "portable")
    else:  # no /proc/cpuinfo to compare with
        assert kernel in ("avx2", "portable")


@pytest.mark.parametrize(
    "size", [1, 3, 2047, frames.TRANSLATE_MASK_MIN, 2049, 2051, 4096 + 1, 65536 + 2]
)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_pure_masking_both_ways_agree_with_the_definition(size: int, kind: type) -> None:
    """Pure masking switches from one big-integer XOR to translate() tables at
    TRANSLATE_MASK_MIN: both give RFC 6455 5.3's ``j = i MOD 4`` XOR."""
    rng = random.Random(size)
    data = rng.randbytes(size)
    mask = rng.randbytes(4)
    expected = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
    assert frames.apply_mask_py(kind(data), mask) == expected


def test_masking_rejects_bad_arguments() -> None:
    fast = compiled().apply_mask
    with pytest.raises(ValueError):
        fast(b"abc", b"xyz")
    with pytest.raises(TypeError):
        fast("text", b"abcd")
    with pytest.raises(TypeError):
        fast(b"abc")


def unmask_frame(frame: bytes) -> tuple[int, int, bytes]:
    """(first byte, length field, payload) of one masked frame, the payload unmasked."""
    length = frame[1] & 0x7F
    start = {126: 4, 127: 10}.get(length, 2)
    key = frame[start : start + 4]
    return frame[0], frame[1], frames.apply_mask_py(frame[start + 4 :], key)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 255),
    st.one_of(st.binary(max_size=300), st.integers(65530, 65540).map(bytes)),
    st.integers(0, 7),
)
def test_build_frame_agrees(first: int, payload: bytes, offset: int) -> None:
    fast = compiled().build_frame
    view = memoryview(b"\0" * offset + payload)[offset:]
    expected = frames.build_frame_py(first, payload, False)
    # Unmasked: byte for byte, from bytes, bytearray or an unaligned view.
    assert fast(first, payload, False) == expected
    assert fast(first, view, False) == expected
    assert fast(first, bytearray(payload), False) == expected
    # Masked: the keys are random, so compare the frames unmasked and the headers.
    masked_fast, masked_py = fast(first, view, True), frames.build_frame_py(first, payload, True)
    assert len(masked_fast) == len(masked_py) == len(expected) + 4
    assert unmask_frame(masked_fast) == unmask_frame(masked_py)
    assert unmask_frame(masked_fast)[1] & 0x80 and unmask_frame(masked_fast)[2] == payload


def test_build_frame_length_forms() -> None:
    # RFC 6455 5.2: the shortest length encoding, at each boundary.
    fast = compiled().build_frame
    for size, head in ((0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 20, 10)):
        payload = bytes(size)
        frame = fast(0x82, payload, False)
        assert len(frame) == head + size
        assert frame == frames.encode_header(0x2, size) + payload
        assert len(fast(0x82, payload, True)) == head + 4 + size


def test_build_frame_draws_a_fresh_key_each_time() -> None:
    # RFC 6455 5.3: a new, unpredictable key per frame; over the pool's refills too.
    fast = compiled().build_frame
    keys = [fast(0x81, b"x", True)[2:6] for _ in range(2000)]
    assert len(set(keys)) > 1990  # 2,000 draws from 2**32: a repeat or two at most


def test_build_frame_rejects_bad_arguments() -> None:
    for build in (compiled().build_frame, frames.build_frame_py):
        with pytest.raises(ValueError):
            build(256, b"", False)
        with pytest.raises(ValueError):
            build(-1, b"", False)
        with pytest.raises(TypeError):
            build(0x81, "text", False)
    with pytest.raises(TypeError):
        compiled().build_frame(0x81, b"")


#: The modules Cython compiles from their .py sources (setup.py's CYTHON_MODULES): the core's
#: and the asyncio front end's per-message path.
CYTHON_MODULES = (
    "wskit.core.connection",
    "wskit.core.events",
    "wskit.core.frames",
    "wskit.asyncio._hotpath",
)


def test_environment_switch_forces_the_pure_path() -> None:
    """One build, two ways: without the switch every compiled module is used; with it, the
    .py sources are (the Cython modules too, though their extension files are there)."""
    code = (
        "import importlib, wskit.core as c, wskit.core.frames as f;"
        "print(c.IMPLEMENTATION, f.apply_mask.__module__, f.MessageBuffer.__module__);"
        f"print(*[importlib.import_module(m).__file__.endswith('.py') for m in {CYTHON_MODULES}])"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("WSKIT_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    compiled()
    assert out.stdout.split() == ["compiled", "wskit.core._speedups", "wskit.core._speedups"] + [
        "False"
    ] * len(CYTHON_MODULES)
    env["WSKIT_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["python", "wskit.core.frames", "wskit.core.frames"] + [
        "True"
    ] * len(CYTHON_MODULES)


def test_the_core_runs_compiled_unless_switched_off() -> None:
    """A build without Cython or a compiler is a failure here, not a skip: CI builds both."""
    import wskit.core

    if os.environ.get("WSKIT_NO_EXTENSIONS"):
        assert wskit.core.IMPLEMENTATION == "python"
        assert connection_module.__file__ is not None
        assert connection_module.__file__.endswith(".py")
    else:
        assert wskit.core.IMPLEMENTATION == "compiled", (
            "the Cython core or the C module is not built: pip install -e . with a C compiler"
        )
        for name in CYTHON_MODULES:
            module = importlib.import_module(name)
            assert not (module.__file__ or ".py").endswith(".py"), name


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
    twins = [
        (compiled().apply_mask, compiled().build_frame),
        (frames.apply_mask_py, frames.build_frame_py),
    ]
    saved = connection_module.apply_mask, connection_module.build_frame
    for mask_fn, build_fn in twins:
        connection_module.apply_mask = mask_fn  # type: ignore[assignment]
        connection_module.build_frame = build_fn  # type: ignore[assignment]
        try:
            _, server = open_pair()
            events = feed(server, data, how)
            results.append((events, drain(server)))
        finally:
            connection_module.apply_mask, connection_module.build_frame = saved
    assert results[0] == results[1]


# --------------------------------------------------------------------------- MessageBuffer


def buffer_twins() -> list[Callable[[int], MessageBufferLike]]:
    return [compiled().MessageBuffer, MessageBufferPy]


def rotated(key: bytes, offset: int) -> bytes:
    offset &= 3
    return key[offset:] + key[:offset]


def fill(
    make: Callable[[int], MessageBufferLike],
    data: bytes,
    key: bytes,
    cuts: list[int],
    *,
    first_offset: int,
    align: int,
) -> tuple[bytes, list[int]]:
    """``data`` written in the pieces ``cuts`` gives, each an unaligned view; the message and
    ``written`` after each piece."""
    buffer = make(len(data))
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    progress = []
    for start, stop in itertools.pairwise(bounds):
        piece = memoryview(b"\0" * align + data[start:stop])[align:]
        if key:
            buffer.write(piece, key, first_offset + start)
        else:
            buffer.write(piece)
        progress.append(buffer.written)
    assert buffer.size == len(data)
    return buffer.finish(), progress


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=3000),
    st.one_of(st.just(b""), st.binary(min_size=4, max_size=4)),
    st.lists(st.integers(0, 3000), max_size=8),
    st.integers(0, 11),
    st.integers(0, 7),
)
def test_message_buffer_twins_agree(
    data: bytes, key: bytes, cuts: list[int], first_offset: int, align: int
) -> None:
    # A frame's payload may start anywhere in the key's cycle (key_offset) and in memory.
    expected = frames.apply_mask_py(data, rotated(key, first_offset)) if key else data
    results = [
        fill(make, data, key, cuts, first_offset=first_offset, align=align)
        for make in buffer_twins()
    ]
    assert results[0] == results[1]
    assert results[0][0] == expected


def test_message_buffer_large_pieces_at_every_alignment() -> None:
    # Around the 8-byte step of the XOR loop and the size where the GIL is released.
    rng = random.Random(11)
    data = rng.randbytes((1 << 17) + 13)
    key = rng.randbytes(4)
    for offset in range(8):
        for first in (1, 7, 8, 9, 65535, 65536, 65537):
            cuts = [first + offset, first + offset + 3, (1 << 16) + first]
            for make in buffer_twins():
                message, _ = fill(make, data, key, cuts, first_offset=offset, align=offset)
                assert message == frames.apply_mask_py(data, rotated(key, offset))
                message, _ = fill(make, data, b"", cuts, first_offset=0, align=offset)
                assert message == data


@pytest.mark.parametrize("make", buffer_twins(), ids=["compiled", "python"])
def test_message_buffer_never_writes_past_its_size(
    make: Callable[[int], MessageBufferLike],
) -> None:
    buffer = make(10)
    with pytest.raises(ValueError):
        buffer.write(b"x" * 11)
    with pytest.raises(ValueError):
        buffer.write(b"x" * 11, b"abcd", 0)
    assert buffer.written == 0
    buffer.write(b"x" * 6)
    with pytest.raises(ValueError):
        buffer.write(b"y" * 5, b"abcd", 6)
    assert buffer.written == 6
    buffer.write(bytearray(b"y" * 4))
    with pytest.raises(ValueError):
        buffer.write(b"z")
    assert buffer.finish() == b"xxxxxxyyyy"


@pytest.mark.parametrize("make", buffer_twins(), ids=["compiled", "python"])
def test_message_buffer_finishes_once_and_only_when_full(
    make: Callable[[int], MessageBufferLike],
) -> None:
    buffer = make(5)
    buffer.write(b"ab")
    # Never hands out bytes that were not written.
    with pytest.raises(ValueError):
        buffer.finish()
    buffer.write(b"cde")
    assert buffer.finish() == b"abcde"
    with pytest.raises(ValueError):
        buffer.finish()
    with pytest.raises(ValueError):
        buffer.write(b"")
    empty = make(0)
    empty.write(b"")
    assert empty.finish() == b""


@pytest.mark.parametrize("make", buffer_twins(), ids=["compiled", "python"])
def test_message_buffer_rejects_bad_arguments(make: Callable[[int], MessageBufferLike]) -> None:
    with pytest.raises(ValueError):
        make(-1)
    with pytest.raises(TypeError):
        make(1.5)  # type: ignore[arg-type]
    buffer = make(4)
    with pytest.raises(TypeError):
        buffer.write("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        buffer.write(b"a", b"abc")
    with pytest.raises(ValueError):
        buffer.write(b"a", b"abcd", -1)
    assert buffer.written == 0


# --------------------------------------------------------------------------- large messages

LARGE_CHUNKS = (1, 3, 14, 1000, 65536, 100_000)


def large_stream(rng: random.Random, masked: bool) -> tuple[bytes, list[Event]]:
    """Large messages of every kind as one byte stream, and the events they make."""
    text = "h\u00e9llo \u4e16\u754c \U0001f600 " * 9000
    blob = rng.randbytes(300_000)
    # (frames as (opcode, fin, payload), the message's event)
    messages: list[tuple[list[tuple[int, bool, bytes]], Event]] = [
        ([(0x2, True, blob[:200_000])], Binary(blob[:200_000])),
        ([(0x2, True, blob[:65536])], Binary(blob[:65536])),
        ([(0x1, True, text.encode())], Text(text)),
        ([(0x2, True, b"")], Binary(b"")),
        (
            [
                (0x2, False, blob[:70_000]),
                (0x9, True, b"p"),
                (0x0, False, blob[70_000:70_001]),
                (0x0, True, blob[70_001:]),
            ],
            Binary(blob),
        ),
        (
            [(0x1, False, text.encode()[:50_001]), (0x0, True, text.encode()[50_001:])],
            Text(text),
        ),
        ([(0x2, True, blob[:1])], Binary(blob[:1])),
    ]
    out = []
    events: list[Event] = []
    for frame_list, event in messages:
        for opcode, fin, payload in frame_list:
            key = rng.randbytes(4) if masked else b""
            out.append(frames.encode_header(opcode, len(payload), fin, 0, key))
            out.append(frames.apply_mask_py(payload, key) if masked else payload)
            if opcode == 0x9:
                events.append(Ping(payload))
        events.append(event)
    return b"".join(out), events


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.choice(LARGE_CHUNKS)
        yield data[i : i + n]
        i += n


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("container", [bytes, bytearray, memoryview])
def test_large_messages_agree_under_random_splits(
    monkeypatch: pytest.MonkeyPatch, role: str, seed: int, container: type
) -> None:
    """Masked (to a server) and unmasked (to a client), text and binary, one frame and
    fragmented: cut at random points, both implementations give the messages sent."""
    data, expected = large_stream(random.Random(seed), masked=role == "server")
    # The client masks its Pong: the same key for both runs, so the bytes out compare (the
    # pure build_frame takes it from frames.new_mask; test_build_frame_* cover the C one).
    monkeypatch.setattr(connection_module, "new_mask", lambda: b"\x01\x02\x03\x04")
    monkeypatch.setattr(frames, "new_mask", lambda: b"\x01\x02\x03\x04")
    monkeypatch.setattr(connection_module, "build_frame", frames.build_frame_py)
    limits = Limits.for_size(1 << 20)
    results = []
    implementations = [
        (compiled().MessageBuffer, compiled().apply_mask),
        (MessageBufferPy, frames.apply_mask_py),
    ]
    for buffer_type, mask_fn in implementations:
        monkeypatch.setattr(connection_module, "MessageBuffer", buffer_type)
        monkeypatch.setattr(connection_module, "apply_mask", mask_fn)
        conn: ClientConnection | ServerConnection
        if role == "server":
            conn = open_pair(server_kwargs={"limits": limits})[1]
        else:
            conn = open_pair(client_kwargs={"limits": limits})[0]
        events: list[Event] = []
        for chunk in random_chunks(data, random.Random(seed)):
            conn.receive_data(container(chunk))
            events.extend(conn.events())
        assert not conn._buf and conn._rx_buffer is None
        results.append((events, drain(conn), conn.messages_received))
    assert results[0] == results[1]
    assert results[0][0] == expected
    assert results[0][2] == len([e for e in expected if not isinstance(e, Ping)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_forked_child_draws_other_masking_keys_than_its_parent() -> None:
    """RFC 6455 5.3: unpredictable keys. Both pools (C and Python) are refilled in a child,
    instead of handing out the keys the parent draws next."""
    fast = compiled().build_frame
    fast(0x81, b"x", True)  # both pools hold keys now
    frames.new_mask()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, fast(0x81, b"x", True)[2:6] + frames.new_mask())
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while len(child) < 8 and (chunk := os.read(read, 8)):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = fast(0x81, b"x", True)[2:6] + frames.new_mask()
    assert len(child) == 8
    assert child[:4] != parent[:4] and child[4:] != parent[4:]

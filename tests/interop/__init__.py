"""Interoperability tests: wskit against real peers over real sockets on 127.0.0.1.

Peers: websockets (new asyncio API), aiohttp (client and server), wsproto (sans-I/O, driven
here over asyncio streams) and a headless Chromium page. This module holds what the test files
share: limits, payloads, and :class:`Seen`, which carries what a server handler observed back
to the test coroutine, so that every assertion runs in the test and not inside a handler whose
exceptions the server would only log.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

T = TypeVar("T")

#: Deadline of one test's event loop, in seconds: below pytest-timeout's 120 s so that the
#: failure names the coroutine that hung rather than dumping threads.
TEST_DEADLINE = 60.0
#: Deadline of one step inside a test (a message, a close, a handler's report).
STEP = 15.0

#: 1 MiB: the "large message" of the issue. It is also websockets' and wskit's default
#: max_size, so the tests that send it raise max_size on both sides to LARGE_MAX_SIZE.
ONE_MIB = 1 << 20
LARGE_MAX_SIZE = 4 * ONE_MIB

#: Size of the compressible message that checks permessage-deflate is really applied.
COMPRESSIBLE_SIZE = 100_000
#: With deflate the compressible message must cost fewer wire bytes than this (it deflates to
#: well under 1 KB); without it, at least its own size.
COMPRESSED_BOUND = 5_000

#: The message size limit of the "peer sends too much" tests, and the size sent over it.
SMALL_MAX_SIZE = 64 * 1024
OVERSIZED = 100_000

#: Seed of the pseudo-random payloads, so that a failure is reproducible.
SEED = 6455

#: Both compression settings, as pytest parameters with readable ids.
COMPRESSION = [
    pytest.param("deflate", id="deflate"),
    pytest.param(None, id="no-compression"),
]

#: Close code and reasons of the "close with a code and a reason" tests (4000-4999: private
#: use, RFC 6455 7.4.2).
CLOSE_CODE = 4001
WSKIT_REASON = "wskit says bye ✓"
PEER_REASON = "peer says bye ✓"


@dataclass(frozen=True)
class Payloads:
    """Messages shared by the interop tests."""

    #: A short text with 2-, 3- and 4-byte UTF-8 sequences.
    text: str
    #: Every byte value once.
    binary: bytes
    #: 1 MiB of random printable ASCII: one byte per character, exactly 1 MiB on the wire.
    text_1mib: str
    #: 1 MiB of random bytes: incompressible, so it stays over 1 MiB when deflated.
    binary_1mib: bytes
    #: About 100 KB that deflate shrinks to a few hundred bytes.
    compressible: str
    #: Random bytes over SMALL_MAX_SIZE that deflate cannot bring under it.
    oversized_random: bytes
    #: Text over SMALL_MAX_SIZE that deflates to a few hundred bytes: only a limit that is
    #: checked after decompression catches it.
    oversized_compressible: str

    def oversized(self, compression: str | None) -> str | bytes:
        """The message over SMALL_MAX_SIZE that tests the limit the hardest for this setting."""
        return self.oversized_random if compression is None else self.oversized_compressible


def build_payloads() -> Payloads:
    rng = random.Random(SEED)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    return Payloads(
        text="héllo wörld ✓ 𝄞",
        binary=bytes(range(256)),
        text_1mib="".join(rng.choices(alphabet, k=ONE_MIB)),
        binary_1mib=rng.randbytes(ONE_MIB),
        compressible=("wskit interop, a compressible line. " * 3000)[:COMPRESSIBLE_SIZE],
        oversized_random=rng.randbytes(OVERSIZED),
        oversized_compressible="z" * OVERSIZED,
    )


def ws_url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


async def step(awaitable: Awaitable[T], timeout: float = STEP) -> T:
    """Await one step of a test (a message, a close) with its own deadline."""
    return await asyncio.wait_for(awaitable, timeout)


async def recv_error(ws: Any) -> BaseException:
    """What ``ws.recv()`` raises (wskit or websockets), for a handler to hand to the test.

    Handlers return the exception rather than asserting on it with ``pytest.raises``: pytest's
    ``Failed`` is a ``BaseException``, which a server's "handler failed" net does not catch.
    """
    try:
        message = await ws.recv()
    except Exception as exc:
        return exc
    raise AssertionError(f"expected the connection to close, received {message!r:.80}")


class Seen(Generic[T]):
    """What a server handler observed, handed back to the test coroutine.

    ``seen.handler(body)`` wraps a handler body: its return value (or exception) becomes the
    result of ``await seen.result()``. Create it inside the running event loop.
    """

    def __init__(self) -> None:
        self._future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def handler(self, body: Callable[[Any], Awaitable[T]]) -> Callable[[Any], Awaitable[None]]:
        async def handler(ws: Any) -> None:
            try:
                result = await body(ws)
            except BaseException as exc:
                if not self._future.done():
                    self._future.set_exception(exc)
                raise
            if not self._future.done():
                self._future.set_result(result)

        return handler

    async def result(self, timeout: float = STEP) -> T:
        return await asyncio.wait_for(asyncio.shield(self._future), timeout)

"""What ``connect(...)`` and ``serve(...)`` share: awaitable, and an async context manager."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Opener(Generic[T]):
    """``await opener`` opens and returns the resource; ``async with opener as resource``
    opens it and closes it on the way out. Subclasses define :meth:`_open` and :meth:`_close`."""

    async def _open(self) -> T:
        raise NotImplementedError

    async def _close(self, resource: T) -> None:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, T]:
        return self._open().__await__()

    async def __aenter__(self) -> T:
        self._resource = await self._open()
        return self._resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(self._resource)

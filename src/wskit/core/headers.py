"""HTTP header fields: an ordered, case-insensitive multi-map.

HTTP allows a field name to appear several times (RFC 9110 5.3) and compares names without
regard to case (RFC 9110 5.1); order is kept so that a request or response is rebuilt as sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]


class Headers:
    """Ordered header fields with case-insensitive names.

    ``headers["Host"]`` returns the value of a field that appears once, and raises ``KeyError``
    when it is missing (``MultipleValuesError``, a ``KeyError``, when it appears more than
    once); :meth:`get_all` returns every value of a name, in order.
    """

    __slots__ = ("_index", "_items")

    def __init__(
        self,
        items: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        if items is None:
            return
        if isinstance(items, Headers):
            pairs: Iterable[tuple[str, str]] = items._items
        elif isinstance(items, Mapping):
            pairs = items.items()
        else:
            pairs = items
        for name, value in pairs:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any earlier field with the same name."""
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    def __setitem__(self, name: str, value: str) -> None:
        """Append a field (like :meth:`add`); use :meth:`set` to replace."""
        self.add(name, value)

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one field."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Remove every field called ``name`` (no error when there is none)."""
        key = name.lower()
        if self._index.pop(key, None) is not None:
            self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def __getitem__(self, name: str) -> str:
        values = self._index[name.lower()]
        if len(values) > 1:
            raise MultipleValuesError(name)
        return values[0]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a field that appears once, or ``default`` (also when it repeats)."""
        values = self._index.get(name.lower())
        if not values or len(values) > 1:
            return default
        return values[0]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (empty list when absent)."""
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        """Iterate over the distinct field names (lower case)."""
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order, names as given."""
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def serialize(self) -> bytes:
        """The fields as ``Name: value\\r\\n`` lines (no final blank line)."""
        return "".join(f"{n}: {v}\r\n" for n, v in self._items).encode()


class MultipleValuesError(KeyError):
    """A header that must appear once appears several times."""


#: What every API that takes headers accepts.
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

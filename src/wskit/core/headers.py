"""HTTP header fields: an ordered, case-insensitive multi-map.

HTTP allows a field name to appear several times (RFC 9110 5.3) and compares names without
regard to case (RFC 9110 5.1); order is kept so that a request or response is rebuilt as sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

__all__ = ["Headers", "HeadersLike", "MultipleValuesError"]


class Headers:
    """Ordered header fields with case-insensitive names.

    ``headers["Host"]`` returns the value of a field that appears once, and raises ``KeyError``
    when it is missing (``MultipleValuesError``, a ``KeyError``, when it appears more than
    once); :meth:`get_all` returns every value of a name, in order.

    Lookups use an index by lower-case name, built on first use. :meth:`compact` drops it for
    good and packs the fields into one flat tuple: a connection keeps its handshake's headers
    for its whole life, and the index and a tuple per field would more than double their
    memory for the few lookups made after the handshake, which then scan.
    """

    __slots__ = ("_index", "_items")

    def __init__(
        self,
        items: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        # The fields as (name, value) pairs; once compacted, one flat tuple of names and values
        # (made pairs again by a change).
        self._items: list[tuple[str, str]] | tuple[str, ...] = []
        # None: not built yet; False: compacted, lookups scan _items.
        self._index: dict[str, list[str]] | Literal[False] | None = None
        if items is None:
            return
        if isinstance(items, Headers):
            pairs: Iterable[tuple[str, str]] = items._pairs()
        elif isinstance(items, Mapping):
            pairs = items.items()
        else:
            pairs = items
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def adopt(cls, fields: list[tuple[str, str]]) -> Headers:
        """Headers holding ``fields`` itself (no copy): for a parser that built the list and
        hands it over; the caller must not use the list afterwards."""
        headers = cls()
        headers._items = fields
        return headers

    def _pairs(self) -> list[tuple[str, str]]:
        """The fields as pairs (a new list when compacted: for reading only)."""
        items = self._items
        if isinstance(items, tuple):
            return list(zip(items[::2], items[1::2], strict=True))
        return items

    def _mutable(self) -> list[tuple[str, str]]:
        """The fields as the list of pairs that changes are made to."""
        items = self._items
        if isinstance(items, tuple):
            items = self._items = list(zip(items[::2], items[1::2], strict=True))
        return items

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any earlier field with the same name."""
        self._mutable().append((name, value))
        index = self._index
        if isinstance(index, dict):
            index.setdefault(name.lower(), []).append(value)

    def compact(self) -> None:
        """Drop the lookup index for good and pack the fields, to save memory; lookups scan
        from now on."""
        self._index = False
        items = self._items
        if not isinstance(items, tuple):
            self._items = tuple([text for pair in items for text in pair])

    def _values(self, key: str) -> list[str] | None:
        """The values of the lower-case name ``key``, or None when absent."""
        index = self._index
        if index is None:
            built: dict[str, list[str]] = {}
            for name, value in self._pairs():
                built.setdefault(name.lower(), []).append(value)
            index = self._index = built
        elif index is False:
            items = self._items
            if isinstance(items, tuple):
                values = [items[i + 1] for i in range(0, len(items), 2) if items[i].lower() == key]
            else:
                values = [v for n, v in items if n.lower() == key]
            return values or None
        return index.get(key)

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
        if self._values(key) is not None:
            self._items = [(n, v) for n, v in self._pairs() if n.lower() != key]
            index = self._index
            if isinstance(index, dict):
                del index[key]

    def __getitem__(self, name: str) -> str:
        values = self._values(name.lower())
        if values is None:
            raise KeyError(name)
        if len(values) > 1:
            raise MultipleValuesError(name)
        return values[0]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of a field that appears once, or ``default`` (also when it repeats)."""
        values = self._values(name.lower())
        if not values or len(values) > 1:
            return default
        return values[0]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (empty list when absent)."""
        return list(self._values(name.lower()) or ())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._values(name.lower()) is not None

    def __iter__(self) -> Iterator[str]:
        """Iterate over the distinct field names (lower case)."""
        return iter(dict.fromkeys(name.lower() for name, _ in self._pairs()))

    def __len__(self) -> int:
        items = self._items
        return len(items) // 2 if isinstance(items, tuple) else len(items)

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order, names as given."""
        return list(self._pairs())

    def copy(self) -> Headers:
        return Headers(self._pairs())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._pairs() == other._pairs()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs()!r})"

    def serialize(self) -> bytes:
        """The fields as ``Name: value\\r\\n`` lines (no final blank line)."""
        return "".join(f"{n}: {v}\r\n" for n, v in self._pairs()).encode()


class MultipleValuesError(KeyError):
    """A header that must appear once appears several times."""


#: What every API that takes headers accepts.
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

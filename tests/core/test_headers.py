"""Headers: an ordered, case-insensitive multimap whose index can be dropped to save memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.core.headers import Headers, MultipleValuesError

FIELDS = [
    ("Host", "example.com"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("sec-websocket-extensions", "x-other"),
    ("Upgrade", "websocket"),
]


NAMES = ("host", "HOST", "sec-websocket-extensions", "Upgrade", "Missing")


def lookups(headers: Headers, names: tuple[str, ...] = NAMES) -> list[object]:
    """Every way of reading ``headers``, as one comparable list."""
    results: list[object] = []
    for name in names:
        results.append(headers.get(name))
        results.append(headers.get_all(name))
        results.append(name in headers)
        try:
            results.append(headers[name])
        except MultipleValuesError:
            results.append("multiple")
        except KeyError:
            results.append("missing")
    results.append(list(headers))
    results.append(headers.items())
    results.append(len(headers))
    return results


def test_lookups_are_case_insensitive_and_keep_order() -> None:
    headers = Headers(FIELDS)
    assert headers["HOST"] == "example.com"
    assert headers.get_all("SEC-WEBSOCKET-EXTENSIONS") == ["permessage-deflate", "x-other"]
    with pytest.raises(MultipleValuesError):
        headers["Sec-WebSocket-Extensions"]
    assert headers.get("Sec-WebSocket-Extensions") is None  # repeated: no single value
    with pytest.raises(KeyError):
        headers["Missing"]
    assert list(headers) == ["host", "sec-websocket-extensions", "upgrade"]
    assert 5 not in headers  # type: ignore[comparison-overlap]


def test_compact_keeps_every_answer_and_drops_the_index_for_good() -> None:
    indexed = Headers(FIELDS)
    before = lookups(indexed)
    compacted = Headers(FIELDS)
    lookups(compacted)  # builds the index
    compacted.compact()
    assert lookups(compacted) == before
    # Lookups after compact() scan: the index is not rebuilt, and the fields stay packed.
    assert compacted._index is False
    assert isinstance(compacted._items, tuple)
    assert repr(compacted) == repr(indexed) and compacted.serialize() == indexed.serialize()
    assert compacted == indexed and compacted.copy() == indexed
    # Changes after compact() are seen too.
    compacted.add("X-New", "1")
    indexed.add("X-New", "1")
    compacted.set("Upgrade", "WebSocket")
    indexed.set("Upgrade", "WebSocket")
    compacted.remove("host")
    indexed.remove("host")
    assert lookups(compacted) == lookups(indexed)
    assert compacted.get("x-new") == "1" and "host" not in compacted


def test_add_after_an_empty_index_was_built() -> None:
    headers = Headers()
    assert headers.get("a") is None  # builds an empty index
    headers.add("A", "1")
    assert headers["a"] == "1"


EDITED = ("A", "b", "B-C", "d", "zz")
names = st.sampled_from(["A", "a", "B", "b-c", "B-C", "d"])
operations = st.lists(
    st.tuples(st.sampled_from(["add", "set", "remove", "lookup", "compact"]), names, st.text()),
    max_size=30,
)


@given(operations)
def test_compact_and_indexed_agree_under_any_edits(ops: list[tuple[str, str, str]]) -> None:
    plain, compacting = Headers(), Headers()
    for op, name, value in ops:
        if op == "compact":
            compacting.compact()
        elif op == "lookup":
            assert lookups(plain, EDITED) == lookups(compacting, EDITED)
        else:
            for headers in (plain, compacting):
                if op == "add":
                    headers.add(name, value)
                elif op == "set":
                    headers.set(name, value)
                else:
                    headers.remove(name)
    assert lookups(plain, EDITED) == lookups(compacting, EDITED)
    assert plain == compacting


def test_a_finished_handshake_keeps_its_headers_without_the_index() -> None:
    """An open connection keeps its request and response, compacted: lookups still work."""
    from wskit.core import ClientConnection, ServerConnection

    client = ClientConnection("ws://example.com/chat", extra_headers={"X-Token": "t"})
    server = ServerConnection()
    client.send_request()
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events()
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    assert client.response is not None and server.response is not None
    for headers in (
        request.headers,
        server.response.headers,
        client.request.headers,
        client.response.headers,
    ):
        assert headers._index is False
    assert request.headers["x-token"] == "t"
    assert client.response.headers["Upgrade"] == "websocket"

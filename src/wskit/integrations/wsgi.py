"""WebSocket routes inside WSGI applications (Flask, Django, bottle, ...).

WSGI has no WebSocket support: a request is answered with a status, headers and a body. Some
WSGI servers, though, put the client's socket in the environ; :func:`accept` takes it over,
answers the upgrade with wskit's core and returns a :mod:`wskit.sync` connection on it::

    @app.route("/echo", websocket=True)          # Flask
    def echo():
        with wskit.integrations.wsgi.accept(request.environ) as ws:
            for message in ws:
                ws.send(message)
        return ""

Servers that hand over their sockets (:data:`SERVERS`): Werkzeug's development server
(``flask run``, ``app.run``), gunicorn with its sync, gthread and gevent workers,
gevent's ``pywsgi`` and eventlet's ``wsgi``. Any other raises
:class:`~wskit.exceptions.IntegrationError`.

The socket stays the server's: when the WebSocket connection ends it is shut down, not
closed, and the server closes it after the view returns (what the view returns is not sent:
the socket is shut down by then, and each server drops such a write quietly).
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any

from wskit.exceptions import IntegrationError
from wskit.sync import WebSocketServerConnection
from wskit.sync import accept as accept_socket

__all__ = ["SERVERS", "accept", "connection_socket", "request_head"]

#: The WSGI servers whose connections :func:`accept` can take over, and how each exposes it.
SERVERS = {
    "werkzeug": "environ['werkzeug.socket']",
    "gunicorn": "environ['gunicorn.socket'] (sync, gthread and gevent workers)",
    "eventlet": "environ['eventlet.input'].get_socket()",
    "gevent": "the socket under environ['wsgi.input'] (gevent.pywsgi)",
}


def connection_socket(environ: Mapping[str, Any]) -> tuple[socket.socket, str]:
    """The client's socket in ``environ`` and the name of the server that put it there.

    Raises :class:`~wskit.exceptions.IntegrationError` when the server does not expose it.
    """
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        return sock, "werkzeug"
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        return sock, "gunicorn"
    eventlet_input = environ.get("eventlet.input")
    if eventlet_input is not None and hasattr(eventlet_input, "get_socket"):
        return eventlet_input.get_socket(), "eventlet"
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent"):
        stream = environ.get("wsgi.input")
        stream = getattr(stream, "rfile", stream)  # an Input wrapper when there is a body
        sock = getattr(getattr(stream, "raw", None), "_sock", None)
        if sock is not None:
            return sock, "gevent"
    software = environ.get("SERVER_SOFTWARE") or "this WSGI server"
    raise IntegrationError(
        f"{software} does not hand its connections over to the application, so it cannot "
        f"serve WebSockets; run the app under one that does: {', '.join(SERVERS)} "
        "(or serve WebSockets with wskit.sync.serve or wskit.asyncio.serve on another port)"
    )


def request_head(environ: Mapping[str, Any], version: str | None = None) -> bytes:
    """The HTTP request head, rebuilt from ``environ``, for the core to check and answer.

    The request-target is the one the client sent when the server keeps it (``RAW_URI``,
    ``REQUEST_URI``), else it is rebuilt from ``SCRIPT_NAME``, ``PATH_INFO`` and
    ``QUERY_STRING``. Headers come from the ``HTTP_*`` keys (WSGI joins repeated headers with
    commas, which the WebSocket headers allow). ``version`` replaces ``SERVER_PROTOCOL``.
    """
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
        target = urllib.parse.quote(path, safe="/;=,@:!$&'()*+~") or "/"
        query = environ.get("QUERY_STRING")
        if query:
            target += "?" + query
    method = environ.get("REQUEST_METHOD", "GET")
    version = version or environ.get("SERVER_PROTOCOL", "HTTP/1.1")
    lines = [f"{method} {target} {version}"]
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def accept(environ: Mapping[str, Any], **options: Any) -> WebSocketServerConnection:
    """Take over the WSGI request's connection and run the WebSocket opening handshake.

    Returns an open :class:`wskit.sync.WebSocketServerConnection` (use it as a context
    manager). ``options`` are those of :func:`wskit.sync.accept` (``subprotocols``,
    ``select_subprotocol``, ``origins``, ``compression``, ``max_size``, ``ping_interval``,
    ``thread_class``, ...). Under gevent without monkey-patching, gevent's greenlets, events
    and selectors are used unless given.

    Raises :class:`~wskit.exceptions.IntegrationError` when the WSGI server cannot hand over
    its connection, and :class:`~wskit.exceptions.InvalidHandshake` when the request is not an
    acceptable WebSocket upgrade (the client got the HTTP error: 400, 403, 426).
    """
    sock, server = connection_socket(environ)
    version = None
    if server == "gevent":
        for name, value in _gevent_classes().items():
            options.setdefault(name, value)
    elif server == "eventlet":
        # eventlet.wsgi reports every request as HTTP/1.0 in SERVER_PROTOCOL; an upgrade it
        # passed on was HTTP/1.1 (RFC 6455 4.1), and the core checks for that.
        version = "HTTP/1.1"
    head = request_head(environ, version)
    return accept_socket(sock, head, close_socket=False, **options)


def _gevent_classes() -> dict[str, Any]:
    """gevent's thread, event and selector classes when gevent has not patched ``threading``
    (the classes wskit.sync then needs to run in greenlets); nothing when it has."""
    try:
        import gevent  # noqa: PLC0415
        import gevent.event  # noqa: PLC0415
        import gevent.selectors  # noqa: PLC0415
        from gevent import monkey  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a gevent server runs with gevent installed
        return {}
    if monkey.is_module_patched("threading"):
        return {}

    def greenlet(target: Any, args: tuple[Any, ...] = (), **_: Any) -> Any:
        return gevent.Greenlet(target, *args)

    return {
        "thread_class": greenlet,
        "event_class": gevent.event.Event,
        "selector_class": gevent.selectors.DefaultSelector,
    }

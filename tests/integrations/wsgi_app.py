"""A Flask app with WebSocket routes through wskit.integrations.wsgi, and a launcher that runs
it under one real WSGI server: ``python -m tests.integrations.wsgi_app SERVER PORT``.

Routes:

* ``/`` plain HTTP, to show that the app still serves pages on the same port;
* ``/echo`` echoes every message (permessage-deflate offered, subprotocol "chat" spoken,
  messages up to 2 MiB); ``/echo-plain`` the same without compression and with a 64 KiB limit;
* ``/bare`` echoes without ``with`` or ``close()`` (messages up to 1000 bytes), returning
  as soon as the connection closes;
* ``/closer`` closes with the code and reason it is sent as ``"<code> <reason>"``;
* ``/last-close`` (plain HTTP) tells the code and reason of the last client that closed an
  ``/echo`` connection.
"""

from __future__ import annotations

import sys
from typing import Any

SERVERS = (
    "werkzeug",
    "gunicorn-sync",
    "gunicorn-gthread",
    "gunicorn-gevent",
    "gevent",
    "gevent-patched",
    "eventlet",
)

if __name__ == "__main__" and sys.argv[1] in ("gevent-patched",):
    from gevent import monkey

    monkey.patch_all()
if __name__ == "__main__" and sys.argv[1] == "eventlet":
    import eventlet

    eventlet.monkey_patch()

from flask import Flask, request  # noqa: E402

from wskit.exceptions import ConnectionClosed  # noqa: E402
from wskit.integrations.wsgi import accept  # noqa: E402

app = Flask(__name__)
last_close: dict[str, Any] = {}


@app.route("/")
def index() -> str:
    return "plain HTTP still works\n"


def echo_until_closed(**options: Any) -> str:
    with accept(request.environ, ping_interval=None, **options) as ws:
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass  # closed with an error code: the client's choice, or a limit
        last_close.update(code=ws.close_code, reason=ws.close_reason)
    return ""


@app.route("/echo", websocket=True)
def echo() -> str:
    return echo_until_closed(subprotocols=["chat"], max_size=2 * 1024 * 1024)


@app.route("/echo-plain", websocket=True)
def echo_plain() -> str:
    return echo_until_closed(compression=None, max_size=64 * 1024)


@app.route("/bare", websocket=True)
def bare() -> str:
    """No ``with`` and no close(): the view returns as soon as it sees the close, and the
    server writes its own response right after; that write must not reach the client."""
    ws = accept(request.environ, ping_interval=None, compression=None, max_size=1000)
    try:
        while True:
            ws.send(ws.recv())
    except ConnectionClosed:
        pass
    return "this body must never reach the WebSocket client"


@app.route("/closer", websocket=True)
def closer() -> str:
    with accept(request.environ, ping_interval=None) as ws:
        try:
            code, _, reason = str(ws.recv(timeout=10)).partition(" ")
            ws.close(int(code), reason)
        except ConnectionClosed:
            pass
    return ""


@app.route("/last-close")
def report_last_close() -> dict[str, Any]:
    return dict(last_close)


def main(server: str, port: int) -> None:
    if server == "werkzeug":
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", port, app, threaded=True)
    elif server.startswith("gevent"):
        from gevent.pywsgi import WSGIServer

        WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()
    elif server == "eventlet":
        import eventlet
        import eventlet.wsgi

        eventlet.wsgi.server(eventlet.listen(("127.0.0.1", port)), app, log_output=False)
    else:
        raise SystemExit(f"unknown server {server!r} (gunicorn runs through its own command)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

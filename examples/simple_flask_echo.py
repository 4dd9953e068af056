"""simple-websocket's Flask example on wskit: only the import changed.

    python examples/simple_flask_echo.py       # http://127.0.0.1:5000/, WebSocket at /echo
    python examples/simple_client.py           # then type lines

``WSKIT_HOST`` and ``WSKIT_PORT`` choose where Flask's development server listens
(default 127.0.0.1:5000). Under gunicorn: ``gunicorn -k gthread --threads 100 -b
127.0.0.1:5000 simple_flask_echo:app`` from this directory.
"""

from __future__ import annotations

import os

from flask import Flask, request

from wskit.simple import ConnectionClosed, Server

app = Flask(__name__)


@app.route("/echo", websocket=True)
def echo() -> str:
    ws = Server.accept(request.environ)
    try:
        while True:
            data = ws.receive()
            ws.send(data)
    except ConnectionClosed:
        pass
    return ""


if __name__ == "__main__":
    app.run(
        host=os.environ.get("WSKIT_HOST", "127.0.0.1"),
        port=int(os.environ.get("WSKIT_PORT", "5000")),
    )

"""A Starlette app whose WebSocket routes the uvicorn engine of wskit serves::

    uvicorn tests.integrations.starlette_app:app \
        --ws wskit.integrations.uvicorn:WebSocketProtocol

Routes: ``/echo`` (accepts with subprotocol "chat" when offered and an extra header, echoes
text and bytes), ``/closer`` (closes with the ``"<code> <reason>"`` it is sent), ``/deny``
(refuses with 401 and a body, ``?pad=N`` adds N bytes: a denial response), ``/forbid``
(closes before accepting: 403), ``/fail`` (raises after accepting: 1011), ``/fail-early``
(raises before accepting: 500), ``/last-close`` (HTTP: the code and reason the last /echo
client closed with).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

last_close: dict[str, Any] = {}


async def echo(ws: WebSocket) -> None:
    subprotocol = "chat" if "chat" in ws.scope["subprotocols"] else None
    await ws.accept(subprotocol=subprotocol, headers=[(b"x-engine", b"wskit")])
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                last_close.update(code=message["code"], reason=message.get("reason", ""))
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:  # pragma: no cover - receive() returns it above
        last_close.update(code=exc.code, reason=exc.reason)


async def closer(ws: WebSocket) -> None:
    await ws.accept()
    code, _, reason = (await ws.receive_text()).partition(" ")
    await ws.close(int(code), reason)


async def deny(ws: WebSocket) -> None:
    pad = int(ws.query_params.get("pad", "0"))  # a longer body: "?pad=<bytes>"
    body = "no token\n" + "." * pad
    await ws.send_denial_response(PlainTextResponse(body, status_code=401))


async def forbid(ws: WebSocket) -> None:
    await ws.close()


async def fail(ws: WebSocket) -> None:
    await ws.accept()
    raise RuntimeError("route failed after accept")


async def fail_early(ws: WebSocket) -> None:
    raise RuntimeError("route failed before accept")


async def report(request: Any) -> JSONResponse:
    return JSONResponse(last_close)


app = Starlette(
    routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/closer", closer),
        WebSocketRoute("/deny", deny),
        WebSocketRoute("/forbid", forbid),
        WebSocketRoute("/fail", fail),
        WebSocketRoute("/fail-early", fail_early),
        Route("/last-close", report),
    ]
)

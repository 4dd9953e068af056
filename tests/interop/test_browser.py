"""wskit's server against a real browser: headless Chromium driven by selenium.

A wskit server, on its own event loop in a background thread (selenium blocks), serves a small
HTML page from ``process_request`` on the port where it also accepts WebSocket connections.
The page's script opens a WebSocket back to it with a subprotocol, exchanges messages, closes,
and publishes a JSON result in ``window.wsResult`` (and in the page) for the test to read.
The handler reports what the server saw through a queue. Two scenarios:

* ``echo`` (permessage-deflate on): text, a binary ArrayBuffer and a 1 MiB string are echoed;
  the browser checks the negotiated extension and closes with 4000 "bye".
* ``server-close`` (compression off): the server closes with a code and a reason.

A missing Chromium or chromedriver fails these tests, naming the Debian packages.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from typing import Any

import pytest

from tests.interop import CLOSE_CODE, LARGE_MAX_SIZE, ONE_MIB, WSKIT_REASON
from wskit.asyncio import WebSocketServerConnection
from wskit.core.events import Request, Response
from wskit.core.headers import Headers
from wskit.exceptions import ConnectionClosed

#: Seconds to wait for the page's result and for the server's report.
RESULT_TIMEOUT = 45.0

SUBPROTOCOL = "wskit.test"
TEXT = "héllo ✓ 𝄞"
BROWSER_CLOSE_CODE = 4000
BROWSER_CLOSE_REASON = "bye"

#: The 1 MiB string the page sends: printable ASCII from a 31-bit LCG, so that it is
#: deterministic, not trivially compressible, and easy to rebuild here.
PAGE_SCRIPT = """
"use strict";
function bigString(n) {
  const codes = new Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    codes[i] = 33 + ((x >>> 16) % 94);
  }
  let s = "";
  for (let i = 0; i < n; i += 8192) {
    s += String.fromCharCode.apply(null, codes.slice(i, i + 8192));
  }
  return s;
}

(async () => {
  const mode = new URLSearchParams(location.search).get("mode") || "echo";
  const result = {mode: mode};
  const publish = () => {
    window.wsResult = result;
    document.getElementById("result").textContent = JSON.stringify(result);
  };
  try {
    const url = `ws://${location.host}/ws?mode=${mode}`;
    const ws = new WebSocket(url, ["__SUBPROTOCOL__", "x.other"]);
    ws.binaryType = "arraybuffer";
    const inbox = [];
    let waiting = null;
    ws.onmessage = (event) => {
      if (waiting) { const resolve = waiting; waiting = null; resolve(event.data); }
      else { inbox.push(event.data); }
    };
    const next = () => inbox.length ? Promise.resolve(inbox.shift())
                                    : new Promise((resolve) => { waiting = resolve; });
    const closed = new Promise((resolve) => {
      ws.onclose = (e) => resolve({code: e.code, reason: e.reason, wasClean: e.wasClean});
    });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("WebSocket error before open"));
    });
    result.protocol = ws.protocol;
    result.extensions = ws.extensions;
    if (mode === "echo") {
      ws.send("__TEXT__");
      result.text = await next();
      const bytes = new Uint8Array(256);
      for (let i = 0; i < 256; i++) bytes[i] = i;
      ws.send(bytes.buffer);
      const echoed = await next();
      result.binaryIsArrayBuffer = echoed instanceof ArrayBuffer;
      result.binary = Array.from(new Uint8Array(echoed));
      const big = bigString(__SIZE__);
      ws.send(big);
      const bigEcho = await next();
      result.bigLength = bigEcho.length;
      result.bigEqual = bigEcho === big;
      ws.close(__CLOSE_CODE__, "__CLOSE_REASON__");
    } else {
      ws.send("close me");
    }
    result.close = await closed;
    result.ok = true;
  } catch (err) {
    result.ok = false;
    result.error = String(err);
  }
  publish();
})();
"""

#: What the script's __NAME__ placeholders stand for (the script is full of braces, so it is
#: neither an f-string nor a format string).
SCRIPT_VALUES = {
    "__SUBPROTOCOL__": SUBPROTOCOL,
    "__TEXT__": TEXT,
    "__SIZE__": str(ONE_MIB),
    "__CLOSE_CODE__": str(BROWSER_CLOSE_CODE),
    "__CLOSE_REASON__": BROWSER_CLOSE_REASON,
}


def page_script() -> str:
    script = PAGE_SCRIPT
    for placeholder, value in SCRIPT_VALUES.items():
        script = script.replace(placeholder, value)
    return script


PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>wskit interop</title></head>
<body><pre id="result">running</pre><script>{page_script()}</script></body></html>
""".encode()


def big_string(n: int) -> str:
    """The page's ``bigString(n)``, rebuilt here to check what the server received."""
    x = 12345
    chars = []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        chars.append(chr(33 + (x >> 16) % 94))
    return "".join(chars)


def serve_page(ws: WebSocketServerConnection, request: Request) -> Response | None:
    """``process_request``: the page at ``/``, the WebSocket at ``/ws``, 404 elsewhere."""
    if request.path == "/":
        headers = Headers(
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(PAGE))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(200, headers, PAGE)
    if request.path == "/ws":
        return None
    return ws.respond(404)


def make_handler(reports: queue.Queue[dict[str, Any]]) -> Callable[..., Any]:
    """A handler that echoes (or closes, in ``server-close`` mode) and reports what it saw."""
    expected_big = big_string(ONE_MIB)

    async def handler(ws: WebSocketServerConnection) -> None:
        assert ws.request is not None
        assert ws.response is not None
        report: dict[str, Any] = {
            "subprotocol": ws.subprotocol,
            "extensions": ws.response.headers.get("Sec-WebSocket-Extensions"),
            "received": [],
        }
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    report["received"].append(("binary", message == bytes(range(256))))
                elif len(message) == ONE_MIB:
                    report["received"].append(("big", message == expected_big))
                else:
                    report["received"].append(("text", message))
                if ws.request.query.get("mode") == "server-close":
                    await ws.close(CLOSE_CODE, WSKIT_REASON)
                    break
                await ws.send(message)
        except ConnectionClosed as exc:
            report["exception"] = (type(exc).__name__, exc.code, exc.reason, exc.sent_code)
        finally:
            await ws.wait_closed()
            report["close"] = (ws.close_code, ws.close_reason)
            reports.put(report)

    return handler


def page_result(driver: Any, url: str) -> dict[str, Any]:
    """Load ``url`` and wait for the page script's result."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    result: dict[str, Any] = WebDriverWait(driver, RESULT_TIMEOUT).until(
        lambda d: d.execute_script("return window.wsResult || null")
    )
    # The same result, as the page displays it.
    shown = driver.execute_script("return document.getElementById('result').textContent")
    assert json.loads(shown) == result
    return result


@pytest.mark.browser
def test_chromium_echo_deflate_and_close(
    threaded_server: Callable[..., Any], chromium: Callable[[], Any]
) -> None:
    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    server = threaded_server(
        make_handler(reports),
        process_request=serve_page,
        subprotocols=[SUBPROTOCOL],
        compression="deflate",
        max_size=LARGE_MAX_SIZE,
    )
    driver = chromium()
    result = page_result(driver, f"http://127.0.0.1:{server.port}/?mode=echo")

    assert result["ok"], result.get("error")
    assert result["protocol"] == SUBPROTOCOL
    assert result["extensions"].split(";")[0].strip() == "permessage-deflate"
    assert result["text"] == TEXT
    assert result["binaryIsArrayBuffer"] is True
    assert result["binary"] == list(range(256))
    assert result["bigLength"] == ONE_MIB
    assert result["bigEqual"] is True
    # wskit echoes the browser's code (RFC 6455 5.5.1); a clean close on both sides.
    assert result["close"]["code"] == BROWSER_CLOSE_CODE
    assert result["close"]["wasClean"] is True

    report = reports.get(timeout=RESULT_TIMEOUT)
    assert report["subprotocol"] == SUBPROTOCOL
    assert report["extensions"].split(";")[0].strip() == "permessage-deflate"
    assert report["received"] == [("text", TEXT), ("binary", True), ("big", True)]
    assert report["exception"] == (
        "ConnectionClosedError",
        BROWSER_CLOSE_CODE,
        BROWSER_CLOSE_REASON,
        BROWSER_CLOSE_CODE,
    )
    assert report["close"] == (BROWSER_CLOSE_CODE, BROWSER_CLOSE_REASON)


@pytest.mark.browser
def test_chromium_server_closes_without_compression(
    threaded_server: Callable[..., Any], chromium: Callable[[], Any]
) -> None:
    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    server = threaded_server(
        make_handler(reports),
        process_request=serve_page,
        subprotocols=[SUBPROTOCOL],
        compression=None,
    )
    driver = chromium()
    result = page_result(driver, f"http://127.0.0.1:{server.port}/?mode=server-close")

    assert result["ok"], result.get("error")
    assert result["protocol"] == SUBPROTOCOL
    assert result["extensions"] == ""
    assert result["close"] == {"code": CLOSE_CODE, "reason": WSKIT_REASON, "wasClean": True}

    report = reports.get(timeout=RESULT_TIMEOUT)
    assert report["extensions"] is None
    assert report["received"] == [("text", "close me")]
    # The browser answers with the same code.
    assert report["close"][0] == CLOSE_CODE


def test_page_is_served_over_plain_http(threaded_server: Callable[..., Any]) -> None:
    """The page and the 404 come from process_request on the WebSocket port."""
    import urllib.error
    import urllib.request

    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    server = threaded_server(make_handler(reports), process_request=serve_page)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.read() == PAGE
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/favicon.ico", timeout=10)
    assert info.value.code == 404
    info.value.close()

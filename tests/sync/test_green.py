"""wskit.sync under green threads: gevent and eventlet with monkey-patching, and both
without it through the injected ``thread_class`` / ``event_class`` / ``selector_class``.

Each case runs in a subprocess of its own (monkey-patching changes the whole interpreter),
serves and connects on 127.0.0.1, and prints one line per check; the test reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
#: Seconds a green-thread run may take; they finish in about one.
LIMIT = 60

#: What every run does once its server listens on ``port``, with ``connect`` and
#: ``client_kwargs`` set up by the prelude: three clients at once, each echoing text, binary
#: and 1 MiB, a recv() timeout that loses nothing, and a normal close.
CHECKS = """
import threading as _threading

def client(n, results):
    ws = connect(f"ws://127.0.0.1:{port}/", **client_kwargs())
    try:
        ws.send(f"hello {n}")
        assert ws.recv(timeout=10) == f"hello {n}"
        ws.send(bytes([n]) * (1 << 20))
        assert ws.recv(timeout=10) == bytes([n]) * (1 << 20)
        try:
            ws.recv(timeout=0.05)
        except TimeoutError:
            pass
        else:
            raise AssertionError("recv(timeout=0.05) returned a message out of nowhere")
        ws.send("late")
        assert ws.recv(timeout=10) == "late"
        results.append(n)
    finally:
        ws.close()
    assert ws.close_code == 1000

results = []
workers = [spawn(client, n, results) for n in range(3)]
for worker in workers:
    worker.join(30)
print("clients", sorted(results))
server.shutdown(timeout=10)
print("shutdown done")
"""

MONKEY_PATCHED = """
{patch}
import threading
from wskit.sync import connect, serve

def echo(ws):
    for message in ws:
        ws.send(message)

server = serve(echo, "127.0.0.1", 0, ping_interval=None)
port = server.port
threading.Thread(target=server.serve_forever, daemon=True).start()
print("patched", {check_patched})

def client_kwargs():
    return {{}}

def spawn(function, *args):
    thread = threading.Thread(target=function, args=args)
    thread.start()
    return thread
"""

GEVENT_UNPATCHED = """
import gevent
import gevent.event
import gevent.selectors
import gevent.socket
from gevent import monkey
from wskit.sync import connect, serve

assert not monkey.is_module_patched("socket") and not monkey.is_module_patched("threading")

def green_thread(target, args=(), daemon=True, name=None):
    return gevent.Greenlet(target, *args)

classes = dict(
    thread_class=green_thread,
    event_class=gevent.event.Event,
    selector_class=gevent.selectors.DefaultSelector,
)

def echo(ws):
    for message in ws:
        ws.send(message)

listener = gevent.socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
port = listener.getsockname()[1]
server = serve(echo, sock=listener, ping_interval=None, **classes)
gevent.spawn(server.serve_forever)
print("patched", False)

def client_kwargs():
    sock = gevent.socket.create_connection(("127.0.0.1", port))
    return dict(sock=sock, ping_interval=None, **classes)

def spawn(function, *args):
    return gevent.spawn(function, *args)
"""


EVENTLET_UNPATCHED = """
import eventlet
import eventlet.green.selectors
import eventlet.green.socket
import eventlet.green.threading
from eventlet import patcher
from wskit.sync import connect, serve

assert not patcher.is_monkey_patched("socket") and not patcher.is_monkey_patched("thread")

classes = dict(
    thread_class=eventlet.green.threading.Thread,
    event_class=eventlet.green.threading.Event,
    selector_class=eventlet.green.selectors.DefaultSelector,
)

def echo(ws):
    for message in ws:
        ws.send(message)

listener = eventlet.green.socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
port = listener.getsockname()[1]
server = serve(echo, sock=listener, ping_interval=None, **classes)
eventlet.spawn(server.serve_forever)
print("patched", False)

def client_kwargs():
    sock = eventlet.green.socket.create_connection(("127.0.0.1", port))
    return dict(sock=sock, ping_interval=None, **classes)

class spawn:
    def __init__(self, function, *args):
        self.green = eventlet.spawn(function, *args)

    def join(self, timeout):
        self.green.wait()
"""


def run(script: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # eventlet announces its retirement
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + textwrap.dedent(CHECKS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(
    ("patch", "check_patched"),
    [
        pytest.param(
            "from gevent import monkey; monkey.patch_all()",
            "monkey.is_module_patched('socket')",
            id="gevent",
        ),
        pytest.param(
            "import eventlet; eventlet.monkey_patch()",
            "eventlet.patcher.is_monkey_patched('socket')",
            id="eventlet",
        ),
    ],
)
def test_under_monkey_patching(patch: str, check_patched: str) -> None:
    lines = run(MONKEY_PATCHED.format(patch=patch, check_patched=check_patched))
    assert lines == ["patched True", "clients [0, 1, 2]", "shutdown done"]


def test_gevent_without_monkey_patching_through_injected_classes() -> None:
    lines = run(GEVENT_UNPATCHED)
    assert lines == ["patched False", "clients [0, 1, 2]", "shutdown done"]


def test_eventlet_without_monkey_patching_through_injected_classes() -> None:
    lines = run(EVENTLET_UNPATCHED)
    assert lines == ["patched False", "clients [0, 1, 2]", "shutdown done"]

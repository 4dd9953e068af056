"""An echo server on the sans-I/O core alone: blocking sockets, a thread per client, stdlib only.

It shows the loop every wskit front end runs (docs/sansio.md): feed the bytes received to the
core, hand its events to the application, write the bytes it queued, and close TCP when it says
so. The core has no clock, so the timeouts are this file's.

    python examples/sansio_echo.py          # ws://127.0.0.1:8765/ (WSKIT_HOST, WSKIT_PORT)
"""

from __future__ import annotations

import os
import socket
import threading

from wskit.core import Binary, Closed, Event, Request, ServerConnection, State, Text

HOST = os.environ.get("WSKIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("WSKIT_PORT", "8765"))
#: Seconds a client may stay silent before it is dropped (the opening handshake included).
IDLE_TIMEOUT = 60.0
#: Seconds the client has to finish the closing handshake once it started.
CLOSE_TIMEOUT = 10.0


def on_event(conn: ServerConnection, event: Event) -> None:
    """The application: accept every upgrade, echo every message."""
    if isinstance(event, Request):
        # accept() checks the request: a 101, or a 400/405/426/505 for an invalid upgrade.
        conn.send_response(conn.accept(event))
    elif isinstance(event, (Text, Binary)):
        # Events come after the core has read everything received: once the peer's Close
        # frame is among them the state is CLOSED already, and sending is over.
        if conn.state is State.OPEN:
            if isinstance(event, Text):
                conn.send_text(event.data)
            else:
                conn.send_binary(event.data)
    elif isinstance(event, Closed):
        print(f"connection closed: {event.code} {event.reason}".rstrip(), flush=True)
    # Ping and Pong need nothing: the core has queued the Pong that answers a Ping.


def pump(conn: ServerConnection, sock: socket.socket) -> None:
    """Hand every pending event to the application, then write what the core queued."""
    while True:
        events = conn.events()
        for event in events:
            on_event(conn, event)
        for chunk in conn.data_to_send():
            sock.sendall(chunk)
        if events:
            # Handling events can make more: send_response() parses the frames that arrived
            # right behind the request.
            continue
        if not conn.input_held:
            return
        # The core held a bad frame back so that the messages before it were answered first
        # (they have been, above); feeding it nothing makes it go on and fail the connection.
        # This application answers each message inside on_event(), so it never needs to set
        # hold_errors (one that answers later sets it while it still owes answers); the
        # release is the same either way.
        conn.release_held()


def handle(sock: socket.socket) -> None:
    conn = ServerConnection()
    sock.settimeout(IDLE_TIMEOUT)
    try:
        while not conn.should_close():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break  # silent peer, or the closing handshake took too long: drop TCP
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
            pump(conn, sock)
            if conn.close_expected():
                sock.settimeout(CLOSE_TIMEOUT)
        # RFC 6455 7.1.1: the server closes TCP first; FIN after the Close frame.
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the peer reset the connection
    finally:
        sock.close()


def main() -> None:
    with socket.create_server((HOST, PORT)) as server:
        while True:
            sock, _ = server.accept()
            threading.Thread(target=handle, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()

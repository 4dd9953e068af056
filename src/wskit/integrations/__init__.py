"""WebSocket routes inside existing web applications, on the same port.

Each module adapts one kind of host and imports that host's framework only inside itself
(DESIGN rule 3): :mod:`wskit.integrations.wsgi` for WSGI servers (Werkzeug, gunicorn,
gevent, eventlet), :mod:`wskit.integrations.aiohttp` for aiohttp routes,
:mod:`wskit.integrations.asgi` for ASGI apps (uvicorn, hypercorn), and
:mod:`wskit.integrations.uvicorn`, uvicorn's WebSocket engine on wskit's core.
"""

__all__: list[str] = []

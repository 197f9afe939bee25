"""A plain web app for the live-update recipes: servers nobody here wrote (gunicorn, a
WSGI server; uvicorn, an ASGI one) run it unchanged under `zdt live`.

    gunicorn zdt.lab.webapp:wsgi          uvicorn --fd 3 zdt.lab.webapp:asgi

  GET /        {"version", "pid"}   (version: VERSION in the working directory, which
                                     `zdt live` makes the home; read once at import)
  GET /health  {"status": "ok"}
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

try:
    VERSION = Path("VERSION").read_text().strip()
except OSError:
    VERSION = "unknown"


def answer(path: str) -> tuple[int, bytes]:
    if path == "/health":
        return 200, b'{"status": "ok"}'
    if path == "/":
        return 200, json.dumps({"version": VERSION, "pid": os.getpid()}).encode()
    return 404, b'{"error": "not found"}'


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    status, body = answer(environ.get("PATH_INFO", "/"))
    start_response(f"{status} {'OK' if status == 200 else 'Not Found'}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
               send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    status, body = answer(scope["path"])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

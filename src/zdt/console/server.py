"""The console's web server: the page, the login link, the API, behind the token.

Starlette (routing, streaming responses for Server-Sent Events, a small dependency set)
served by uvicorn, in one asyncio process: workflows started from the page are tasks of
this process, and the journal and the lock are the CLI's own.
"""

from __future__ import annotations

import html
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from zdt.app import App, Connect
from zdt.console import auth
from zdt.console.api import Api, error
from zdt.errors import ZdtError

STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
DENIED = {"error": "unauthorized", "message": "open the login link `zdt console` printed, or "
          "send Authorization: Bearer TOKEN"}


def build(domain: Path, token: str, *, read_only: bool = False,
          connect: Connect | None = None) -> Starlette:
    """The console's ASGI application for one domain."""
    def new_app(**hooks: Any) -> App:
        return App(domain, connect=connect or Connect(), **hooks)

    api = Api(new_app, read_only)
    handled = _errors_as_json
    routes = [
        Route("/", lambda r: _page(token)), Route("/login", lambda r: _login(r, token)),
        Route("/static/{name}", _static), Route("/favicon.ico", lambda r: Response(b"", 204)),
        Route("/api/domain", handled(api.domain)), Route("/api/kinds", handled(api.kinds)),
        Route("/api/live", handled(api.live)),
        Route("/api/workflows", handled(api.workflows)),
        Route("/api/workflows", handled(api.start), methods=["POST"]),
        Route("/api/preview", handled(api.preview), methods=["POST"]),
        Route("/api/workflows/{wid}", handled(api.workflow)),
        Route("/api/workflows/{wid}/events", handled(api.events)),
        Route("/api/workflows/{wid}/{action}", handled(api.act), methods=["POST"]),
    ]
    guard = Middleware(_Guard, token=token, read_only=read_only)
    return Starlette(routes=routes, middleware=[guard])


def _errors_as_json(handler: Callable[[Request], Awaitable[Response]]
                    ) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        try:
            return await handler(request)
        except ZdtError as exc:
            return error(exc)
    return call


class _Guard(BaseHTTPMiddleware):
    """The token on every request but the login link and the page's own files; the CSRF
    token and the same origin on every change; nothing changes on a read-only console."""

    def __init__(self, app: Any, token: str, read_only: bool) -> None:
        super().__init__(app)
        self.token, self.read_only = token, read_only

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint
                       ) -> Response:
        path = request.url.path
        if path in ("/login", "/favicon.ico") or path.startswith("/static/"):
            return await call_next(request)
        by = self._who(request)
        if by is None:
            return (JSONResponse(DENIED, status_code=401) if path.startswith("/api/") else
                    HTMLResponse(_LOGGED_OUT, status_code=401))
        if request.method not in ("GET", "HEAD"):
            refused = self._refuse_change(request, by)
            if refused is not None:
                return JSONResponse({"error": "forbidden", "message": refused},
                                    status_code=403)
        return await call_next(request)

    def _who(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and auth.same(header[7:].strip(), self.token):
            return "bearer"
        if auth.same(request.cookies.get(auth.COOKIE), auth.cookie_value(self.token)):
            return "cookie"
        return None

    def _refuse_change(self, request: Request, by: str) -> str | None:
        if self.read_only:
            return "this console is read-only (`zdt console --read-only`)"
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        if (origin is not None and origin != own) or \
                request.headers.get("sec-fetch-site") == "cross-site":
            return "a request from another origin changes nothing"
        if by == "cookie" and not auth.same(request.headers.get(auth.CSRF_HEADER),
                                            auth.csrf(self.token)):
            return "the page's CSRF token is missing or wrong: reload the page"
        return None


def _login(request: Request, token: str) -> Response:
    if not auth.same(request.query_params.get("token"), token):
        return HTMLResponse(_LOGGED_OUT, status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(auth.COOKIE, auth.cookie_value(token), httponly=True,
                        samesite="strict", path="/")
    return response


def _page(token: str) -> Response:
    page = resources.files("zdt.console").joinpath("page.html").read_text()
    page = page.replace("{{csrf}}", html.escape(auth.csrf(token)))
    return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                       "Content-Security-Policy": CSP,
                                       "X-Frame-Options": "DENY"})


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return Response("not found", status_code=404)
    text = resources.files("zdt.console").joinpath(name).read_text()
    return Response(text, media_type=STATIC[name])


CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_LOGGED_OUT = ("<!doctype html><meta charset=utf-8><title>zdt console</title>"
               "<p>Open the login link <code>zdt console</code> printed.</p>")


async def serve(asgi: Starlette, listening: socket.socket) -> None:
    """Serve until Ctrl-C (or SIGTERM); workflows under way end as a crash of zdt would
    (`zdt resume` finishes them)."""
    config = uvicorn.Config(asgi, log_level="warning", lifespan="off", access_log=False)
    await uvicorn.Server(config).serve(sockets=[listening])


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"

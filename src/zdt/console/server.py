"""The console's web server: the page, the login link, the API, behind the token.

Starlette (routing, streaming responses for Server-Sent Events, a small dependency set)
served by uvicorn, in one asyncio process: workflows started from the page are tasks of
this process, and the journal and the lock are the CLI's own.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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

log = logging.getLogger("zdt.console")
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
DENIED = {"error": "unauthorized", "message": "open the login link `zdt console` printed, or "
          "send Authorization: Bearer TOKEN"}


def build(domain: Path, sessions: auth.Sessions, *, read_only: bool = False,
          connect: Connect | None = None) -> Starlette:
    """The console's ASGI application for one domain."""
    def new_app(**hooks: Any) -> App:
        return App(domain, connect=connect or Connect(), **hooks)

    async def page(request: Request) -> Response:
        return _page(sessions)

    async def login(request: Request) -> Response:
        return await _login(request, sessions)

    api = Api(new_app, read_only)
    handled = _errors_as_json
    routes = [
        Route("/", page), Route("/login", login, methods=["GET", "POST"]),
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
    guard = Middleware(_Guard, sessions=sessions, read_only=read_only)
    return Starlette(routes=routes, middleware=[guard])


def _errors_as_json(handler: Callable[[Request], Awaitable[Response]]
                    ) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        try:
            return await handler(request)
        except ZdtError as exc:
            return error(exc)
        except Exception as exc:          # a bug or the machine: said, never a bare 500
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "failed", "exit_code": 1,
                                 "message": f"{type(exc).__name__}: {exc}"}, status_code=500)
    return call


class _Guard(BaseHTTPMiddleware):
    """The token on every request but the login link and the page's own files; the CSRF
    token and the same origin on every change; nothing changes on a read-only console."""

    def __init__(self, app: Any, sessions: auth.Sessions, read_only: bool) -> None:
        super().__init__(app)
        self.sessions, self.read_only = sessions, read_only

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint
                       ) -> Response:
        path = request.url.path
        if path == "/favicon.ico" or path.startswith("/static/"):
            return _hardened(await call_next(request))
        if path == "/login":
            refused = _other_origin(request) if request.method == "POST" else None
            return _hardened(_forbidden(refused) if refused else await call_next(request))
        by = self._who(request)
        if by is None:
            return _hardened(JSONResponse(DENIED, status_code=401) if path.startswith("/api/")
                             else _logged_out())
        if request.method not in ("GET", "HEAD"):
            refused = self._refuse_change(request, by)
            if refused is not None:
                return _hardened(_forbidden(refused))
        return _hardened(await call_next(request))

    def _who(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and auth.same(header[7:].strip(), self.sessions.token):
            return "bearer"
        if self.sessions.valid(request.cookies.get(self.sessions.cookie)):
            return "cookie"
        return None

    def _refuse_change(self, request: Request, by: str) -> str | None:
        if self.read_only:
            return "this console is read-only (`zdt console --read-only`)"
        refused = _other_origin(request)
        if refused is None and by == "cookie" and not auth.same(
                request.headers.get(auth.CSRF_HEADER), self.sessions.csrf()):
            refused = "the page's CSRF token is missing or wrong: reload the page"
        return refused


def _other_origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if (origin is not None and origin != own) or \
            request.headers.get("sec-fetch-site") == "cross-site":
        return "a request from another origin changes nothing"
    return None


def _forbidden(message: str) -> Response:
    return JSONResponse({"error": "forbidden", "message": message}, status_code=403)


def _hardened(response: Response) -> Response:
    """No page of the console is framed, cached by others or tells where it was."""
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


async def _login(request: Request, sessions: auth.Sessions) -> Response:
    """A one-time code from the printed link (GET), or the token typed into the logged-out
    page's form (POST): a session cookie, then the page."""
    if request.method == "POST":            # a urlencoded form: parsed here, no extra
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))   # package
        token = (form.get("token") or [""])[0].strip()
        session = sessions.open() if auth.same(token, sessions.token) else None
    else:
        session = sessions.redeem(request.query_params.get("code"))
    if session is None:
        return _logged_out("That login link was used or has expired; paste the console's "
                           "token instead.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(sessions.cookie, session, httponly=True, samesite="strict",
                        path="/", max_age=int(auth.SESSION_LIFETIME))
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(sessions: auth.Sessions) -> Response:
    page = resources.files("zdt.console").joinpath("page.html").read_text()
    page = page.replace("{{csrf}}", html.escape(sessions.csrf()))
    return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                       "Content-Security-Policy": CSP})


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return Response("not found", status_code=404)
    text = resources.files("zdt.console").joinpath(name).read_text()
    return Response(text, media_type=STATIC[name])


CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _logged_out(why: str = "") -> HTMLResponse:
    """Nothing about the domain: how to log in."""
    text = (f"<p>{html.escape(why)}</p>" if why else "") + (
        "<p>Open the login link <code>zdt console</code> printed, or paste the console's "
        "token (<code>console.token</code> in the domain's state dir):</p>"
        '<form method="post" action="/login"><input type="password" name="token" '
        'aria-label="token" autocomplete="off"> <button>Log in</button></form>')
    return HTMLResponse("<!doctype html><meta charset=utf-8><title>zdt console</title>"
                        '<link rel="stylesheet" href="/static/console.css"><main>'
                        f"{text}</main>", status_code=401, headers={
                            "Cache-Control": "no-store", "Content-Security-Policy":
                            CSP.replace("form-action 'none'", "form-action 'self'")})


async def serve(asgi: Starlette, listening: socket.socket) -> None:
    """Serve until Ctrl-C (or SIGTERM); workflows under way end as a crash of zdt would
    (`zdt resume` finishes them)."""
    config = uvicorn.Config(asgi, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=2)   # event streams end with it
    await uvicorn.Server(config).serve(sockets=[listening])


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"

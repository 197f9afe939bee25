"""The console's HTTP API (JSON under /api/…), a mirror of `zdt.app`: the same requests, the
same checks and messages as the command line, errors named by the CLI's exit codes.

    GET  /api/domain                      nodes, servers and their live state
    GET  /api/kinds                       workflow kinds, their fields, the shared options
    GET  /api/workflows                   every workflow, newest first
    GET  /api/workflows/{id}              its report, and which actions it allows now
    GET  /api/workflows/{id}/events       its journal events as Server-Sent Events, until its
                                          run is over (?follow=1: and its later runs)
    POST /api/preview                     a request → checks, plan, estimates (changes nothing)
    POST /api/workflows                   a request → started (202, its id)
    POST /api/workflows/{id}/stop|resume|revert
    GET  /api/live                        the live updates of this host's workloads
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from zdt import app as zdt_app
from zdt.app import OPTIONS, App, Outcome, RolloutRequest
from zdt.errors import (
    ConfigError,
    LockedError,
    NotFoundError,
    NothingToDo,
    PreconditionError,
    ZdtError,
)

log = logging.getLogger("zdt.console")

ERRORS: list[tuple[type[ZdtError], int, str]] = [
    (NotFoundError, 404, "not-found"), (ConfigError, 400, "bad-input"),
    (PreconditionError, 409, "precondition"), (LockedError, 423, "locked"),
    (NothingToDo, 409, "nothing-to-do")]


def error(exc: ZdtError) -> JSONResponse:
    """A ZdtError as the CLI would exit with it: its exit code, a name, the message."""
    status, name = next(((s, n) for t, s, n in ERRORS if isinstance(exc, t)), (500, "failed"))
    return JSONResponse({"error": name, "exit_code": exc.exit_code, "message": str(exc)},
                        status_code=status)


class Api:
    """Handlers over one domain. Workflows started here run in this process (they outlive
    the request and the browser), under the same journal and lock as the CLI's."""

    def __init__(self, new_app: Callable[..., App], read_only: bool) -> None:
        self.new_app = new_app
        self.read_only = read_only
        self.runs: set[asyncio.Task[Outcome]] = set()

    async def domain(self, request: Request) -> Response:
        return JSONResponse({**await self.new_app().inventory(), "read_only": self.read_only})

    def _actions(self, app: App, wid: str) -> dict[str, dict[str, Any] | None]:
        if self.read_only:
            return {action: {"exit_code": None, "message": "this console is read-only"}
                    for action in ("stop", "resume", "revert")}
        return app.actions(wid)

    async def kinds(self, request: Request) -> Response:
        return JSONResponse({
            "kinds": [{"name": k.name, "help": k.help, "fields": [asdict(f) for f in k.fields]}
                      for k in App.workflow_kinds()],
            "options": [asdict(o) for o in OPTIONS], "read_only": self.read_only})

    async def workflows(self, request: Request) -> Response:
        try:
            return JSONResponse(await asyncio.to_thread(self.new_app().history))
        except NotFoundError:
            return JSONResponse([])                # no journal yet: no workflow yet

    async def workflow(self, request: Request) -> Response:
        wid = request.path_params["wid"]
        app = self.new_app()

        def read() -> dict[str, Any]:
            return {**app.status(wid), "actions": self._actions(app, wid)}
        return JSONResponse(await asyncio.to_thread(read))

    async def events(self, request: Request) -> Response:
        wid = request.path_params["wid"]
        after = _event_id(request.headers.get("last-event-id")
                          or request.query_params.get("after"))
        app = self.new_app()
        await asyncio.to_thread(app.status, wid)   # an unknown id: 404 before streaming

        follow = request.query_params.get("follow") == "1"   # past the end (the page)

        async def stream() -> AsyncIterator[str]:
            async for event in app.watch(wid, after=after, follow=follow):
                yield f"id: {event['id']}\nevent: journal\ndata: {json.dumps(event)}\n\n"
            yield "event: end\ndata: {}\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def preview(self, request: Request) -> Response:
        app = self.new_app()
        rollout, _ = await _request_of(request)
        prepared = await app.plan(rollout)     # a --stale restart scans the nodes first
        return JSONResponse(await app.preview(prepared))

    async def start(self, request: Request) -> Response:
        rollout, previewed = await _request_of(request)
        prepared = await self.new_app().plan(rollout)       # bad input: 400 first
        if previewed is not None and previewed != prepared.digest():
            raise PreconditionError("the request, the domain file or its inputs changed "
                                    "since the preview shown: preview again")
        wid = await self._run(lambda app: app.start(prepared))
        return JSONResponse({"id": wid}, status_code=202)

    async def act(self, request: Request) -> Response:
        wid, action = request.path_params["wid"], request.path_params["action"]
        if action == "stop":
            state = await asyncio.to_thread(self.new_app().stop, wid)
            return JSONResponse({"id": wid, "state": state}, status_code=202)
        work: dict[str, Callable[[App], Coroutine[Any, Any, Outcome]]] = {
            "resume": lambda app: app.resume(wid), "revert": lambda app: app.revert(wid)}
        if action not in work:
            raise NotFoundError(f"no action {action!r}: stop, resume or revert")
        return JSONResponse({"id": await self._run(work[action])}, status_code=202)

    async def live(self, request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(zdt_app.live_workloads))

    async def _run(self, work: Callable[[App], Coroutine[Any, Any, Outcome]]) -> str:
        """Start a run in the background; return its id once it is under way (locked and
        journaled), or raise what refused it (bad input, a precondition, the lock)."""
        under_way: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def accepted(wid: str, action: str) -> None:
            if not under_way.done():
                under_way.set_result(wid)

        task = asyncio.create_task(work(self.new_app(on_run=accepted)))
        self.runs.add(task)
        task.add_done_callback(self._ended)
        both: set[asyncio.Future[Any]] = {task, under_way}
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if under_way.done():
            return under_way.result()
        return task.result().id                    # raises what refused it

    def _ended(self, task: asyncio.Task[Outcome]) -> None:
        self.runs.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ZdtError):   # a refusal was answered
            log.error("a workflow run of the console ended in an error (the journal shows "
                      "where it stopped; `zdt resume` or `zdt revert` finishes it)",
                      exc_info=exc)


def _event_id(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        raise ConfigError(f"Last-Event-ID: {value!r} is not an event number") from None


async def _request_of(request: Request) -> tuple[RolloutRequest, str | None]:
    """A JSON body → the request the CLI would make: {"kind", "targets", the shared options
    and the kind's fields, by their names}, and the digest of the preview it follows, if
    any. Only what the CLI offers is taken; the kind checks it, with the CLI's messages."""
    try:
        body = await request.json()
    except ValueError:
        raise ConfigError("the request body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise ConfigError('the request body must be a JSON object with "kind" (restart, '
                          'home, runtime, apps, update), "targets" and the options')
    kind = App.workflow_kind(body["kind"])
    offered = {o.name for o in OPTIONS} | kind.field_names() | {"kind", "preview_digest"}
    for key in body:
        if key not in offered:
            raise ConfigError(f"--{str(key).replace('_', '-')}: `zdt rollout {kind.name}` "
                              "has no such option")
    digest = body.get("preview_digest")
    values = {k: v for k, v in body.items() if k not in ("kind", "targets", "preview_digest")}
    targets = body.get("targets", "domain")
    if not isinstance(targets, str | list) or not isinstance(digest, str | None):
        raise ConfigError("--targets: give 'domain', 'admin', or cluster and server names")
    names = targets.split(",") if isinstance(targets, str) else targets
    return RolloutRequest.of(kind.name, names, **values), digest

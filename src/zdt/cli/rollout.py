"""`zdt rollout KIND …` and `zdt preview KIND …`: one command per workflow kind, made from
the kind's own fields and the options every kind shares (declared once, below).

`zdt preview -d D rollout home …` (or `zdt preview -d D home …`, or `zdt rollout home …
--dry-run`) takes the same arguments as the rollout and changes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from zdt.app import (
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    App,
    Connect,
    Field,
    Kind,
    RolloutRequest,
)
from zdt.cli.common import AcceptNew, DomainOpt, JsonOpt, Parallel, finish, group, handled, out
from zdt.cli.preview import show_preview
from zdt.display import Progress

rollout_app = group("Roll a change across a domain, one node at a time.")
preview_app = group("Validate, check preconditions, plan and estimate a rollout; "
                    "change nothing.")
preview_rollout = group("The same as `zdt preview`.")
preview_app.add_typer(preview_rollout, name="rollout")


def _option(name: str, annotation: Any, default: Any = inspect.Parameter.empty
            ) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


# The options of every rollout kind, in the order `--help` lists them (after the kind's own).
COMMON = (
    _option("domain", DomainOpt, Path("domain.toml")),
    _option("targets", Annotated[str, typer.Option(
        help="domain | admin | cluster and server names, comma-separated")], "domain"),
    _option("shutdown_timeout", Annotated[float | None, typer.Option(
        help="Seconds to wait for a drain and for a graceful stop "
             f"[default: {DEFAULT_SHUTDOWN_TIMEOUT:g}].")], None),
    _option("retries", Annotated[int, typer.Option(help="Retries of a failing step.")], 2),
    _option("retry_delay", Annotated[float, typer.Option(
        help="Seconds between retries.")], 1.0),
    _option("delay_between_nodes", Annotated[float, typer.Option(
        help="Seconds between nodes (session replication).")], 0.0),
    _option("auto_revert", Annotated[bool, typer.Option(
        help="Revert completed steps on failure.")], True),
    _option("allow_downtime", Annotated[bool, typer.Option(
        help="Allow a cluster on a single node.")], False),
    _option("pause_after", Annotated[int | None, typer.Option(
        help="Stop after the first N nodes (a canary) until `zdt resume`.")], None),
    _option("health_timeout", Annotated[float, typer.Option(
        help="Seconds for a started server to answer its health URL with 200.")],
        DEFAULT_HEALTH_TIMEOUT),
    _option("fail_on_lb_errors", Annotated[bool, typer.Option(
        "--fail-on-lb-errors", help="Errors the load balancer counted while a node was out "
        "(connection, response, 5xx, server aborts) fail that node's ready step.")], False),
    _option("dry_run", Annotated[bool, typer.Option(
        "--dry-run", help="Preview only: change nothing.")], False),
    _option("json_out", JsonOpt, False),
    _option("accept_new_host_keys", AcceptNew, False),
    _option("parallel", Parallel, 8),
)
FRONT_END = frozenset({"domain", "targets", "dry_run", "json_out", "accept_new_host_keys",
                       "parallel"})


def _field(f: Field) -> inspect.Parameter:
    """A kind's field as a command-line option."""
    kind: Any = {"str": str, "path": Path, "bool": bool, "list": str}[f.type]
    if f.type == "bool":
        return _option(f.name, Annotated[bool, typer.Option(help=f.help)], bool(f.default))
    if f.required:
        return _option(f.name, Annotated[kind, typer.Option(f.option, help=f.help,
                                                            metavar=f.metavar)])
    return _option(f.name, Annotated[kind | None, typer.Option(f.option, help=f.help,
                                                               metavar=f.metavar)], None)


def request_of(kind: Kind, values: dict[str, Any]) -> RolloutRequest:
    """The command line's values → the kind's request (paths as given, lists split)."""
    given: dict[str, Any] = {}
    for f in kind.fields:
        value = values[f.name]
        if f.type == "path" and value is not None:
            value = str(value)
        elif f.type == "list":
            value = tuple(p for p in (value or "").split(",") if p)
        given[f.name] = value
    common = {k: v for k, v in values.items() if k not in FRONT_END and k not in given}
    return RolloutRequest.of(kind.name, tuple(values["targets"].split(",")), **common, **given)


def command(kind: Kind) -> Callable[..., None]:
    """The `zdt rollout KIND` (and `zdt preview KIND`) command of a kind."""
    def run(ctx: typer.Context, **values: Any) -> None:
        domain = _domain(ctx, values["domain"])
        app = App(domain, connect=Connect(values["accept_new_host_keys"], values["parallel"]))
        prepared = app.prepare(request_of(kind, values))
        if values["dry_run"] or _previewing(ctx):
            show_preview(asyncio.run(app.preview(prepared)), values["json_out"])
            return
        if values["json_out"]:
            outcome = asyncio.run(app.start(prepared))
        else:
            with Progress(prepared.plan, out) as progress:
                app.observer = progress
                outcome = asyncio.run(app.start(prepared))
        finish(outcome.report, values["json_out"])

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [context, *(_field(f) for f in kind.fields), *COMMON])
    run.__name__ = kind.name
    run.__doc__ = kind.help
    return handled(run)


def _domain(ctx: typer.Context, domain: Path) -> Path:
    """-d given to `zdt preview` applies to the rollout arguments after it."""
    given = ctx.get_parameter_source("domain")
    if ctx.obj and given is not None and given.name == "DEFAULT":
        return Path(ctx.obj["domain"])
    return domain


def _previewing(ctx: typer.Context) -> bool:
    c: Any = ctx
    while c is not None:
        if c.info_name == "preview":
            return True
        c = c.parent
    return False


@preview_app.callback()
def preview_callback(ctx: typer.Context, domain: DomainOpt = Path("domain.toml")) -> None:
    ctx.obj = {"domain": domain}


for each in App.workflow_kinds():
    for parent in (rollout_app, preview_app, preview_rollout):
        parent.command(each.name)(command(each))

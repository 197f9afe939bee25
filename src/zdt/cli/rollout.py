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

from zdt.app import OPTIONS, App, Connect, Field, Kind, Option, RolloutRequest
from zdt.cli.common import (
    AcceptNew,
    DomainOpt,
    JsonOpt,
    Parallel,
    finish,
    group,
    handled,
    out,
    print_json,
)
from zdt.cli.preview import show_preview
from zdt.display import Progress
from zdt.errors import NothingToDo
from zdt.terminal import styled

rollout_app = group("Roll a change across a domain, one node at a time.")
preview_app = group("Validate, check preconditions, plan and estimate a rollout; "
                    "change nothing.")
preview_rollout = group("The same as `zdt preview`.")
preview_app.add_typer(preview_rollout, name="rollout")


def _option(name: str, annotation: Any, default: Any = inspect.Parameter.empty
            ) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def _common(o: Option) -> inspect.Parameter:
    """An option every kind shares, as `--name-with-dashes` (a flag pair for a bool)."""
    kind: Any = {"int": int, "float": float, "bool": bool, "str": str}[o.type]
    annotation: Any = kind | None if o.optional else kind
    if o.flag:
        return _option(o.name, Annotated[bool, typer.Option(
            "--" + o.name.replace("_", "-"), help=o.help)], o.default)
    return _option(o.name, Annotated[annotation, typer.Option(help=o.help)], o.default)


# The options of every rollout kind, in the order `--help` lists them (after the kind's own).
COMMON = (
    _option("domain", DomainOpt, Path("domain.toml")),
    *(_common(o) for o in OPTIONS),
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
        try:
            prepared = asyncio.run(app.plan(request_of(kind, values)))
        except NothingToDo as exc:            # `--stale` with nothing stale: exit 0
            if values["json_out"]:
                print_json({"nothing_to_do": str(exc)})
            else:
                out.print(styled(str(exc)))
            return
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
    # Typer reads a command's options from inspect.signature(), which honours
    # __signature__ (documented in the inspect module); typeshed does not declare the
    # attribute on functions, hence the one ignore
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

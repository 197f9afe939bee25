"""`zdt status | history | stop | resume | revert`: workflows after they started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from zdt.app import App, Connect
from zdt.cli.common import (
    AcceptNew,
    DomainOpt,
    JsonOpt,
    Parallel,
    finish,
    handled,
    out,
    print_json,
    print_summary,
    print_witness,
)

WidArg = Annotated[str, typer.Argument(metavar="ID", help="A workflow id (see `zdt history`).")]


@handled
def resume(wid: WidArg, domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False,
           accept_new_host_keys: AcceptNew = False, parallel: Parallel = 8) -> None:
    """Go on with a failed, stopped or interrupted workflow from its first step not done."""
    app = App(domain, connect=Connect(accept_new_host_keys, parallel))
    finish(asyncio.run(app.resume(wid)).report, json_out)


@handled
def revert(wid: WidArg, domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False,
           accept_new_host_keys: AcceptNew = False, parallel: Parallel = 8) -> None:
    """Revert a workflow's completed steps, last first (also one that succeeded)."""
    app = App(domain, connect=Connect(accept_new_host_keys, parallel))
    finish(asyncio.run(app.revert(wid)).report, json_out, revert=True)


@handled
def stop(wid: WidArg, domain: DomainOpt = Path("domain.toml")) -> None:
    """Ask a running workflow to stop once its node visit under way is done (it exits 5)."""
    App(domain).stop(wid)
    out.print(f"workflow {wid} will stop once the node visit under way is done (no node is "
              f"left drained or stopped); `zdt resume {wid}` goes on")


@handled
def status(
    wid: Annotated[str | None, typer.Argument(metavar="[ID]", help="A workflow id "
                                              "(default: the newest).")] = None,
    domain: DomainOpt = Path("domain.toml"),
    json_out: JsonOpt = False,
    watch: Annotated[bool, typer.Option(help="Wait until the workflow ends, then show "
                                             "it.")] = False,
) -> None:
    """Show a workflow: its state, its steps, each node's time out of rotation."""
    app = App(domain)
    summary = app.status(wid)
    if watch:
        asyncio.run(_until_done(app, summary["id"]))
        summary = app.status(summary["id"])
    if json_out:
        print_json(summary)
        return
    print_summary(summary, with_witness=False)
    if summary["interrupted"]:
        out.print(f"  interrupted: no zdt process runs it; `zdt resume {summary['id']}` or "
                  f"`zdt revert {summary['id']}` finishes it", style="yellow")
    table = Table("#", "node", "step", "servers", "state", "tries", "s", "error")
    for st in summary["steps"]:
        table.add_row(str(st["index"]), st["node"], st["name"], ",".join(st["servers"]),
                      st["state"], str(st["attempts"]),
                      "" if st["duration"] is None else f"{st['duration']:.3f}",
                      (st["error"] or "")[:60])
    out.print(table)
    if summary["witness"] is not None:
        print_witness(summary["witness"])


async def _until_done(app: App, wid: str) -> None:
    async for _ in app.watch(wid):
        pass


@handled
def history(domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False) -> None:
    """List the domain's workflows, newest first."""
    rows = App(domain).history()
    if json_out:
        print_json(rows)
        return
    table = Table("id", "kind", "state", "started", "targets")
    for r in rows:
        table.add_row(r["id"], r["kind"], r["state"], r["started"] or "",
                      ",".join(r["targets"] or []))
    out.print(table)

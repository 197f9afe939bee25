"""The `zdt` command. Thin: parses, calls, prints. Exit codes as in DESIGN.md:
0 success, 1 workflow failed (reverted when auto-revert was on), 2 bad input,
3 precondition not met, 4 domain locked, 5 stopped by an operator.
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zdt import report
from zdt.adapters import Connect
from zdt.cli_common import (
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
from zdt.cli_live import live_app, stale
from zdt.cli_rollout import archive_app, preview_app, rollout_app
from zdt.errors import NotFoundError
from zdt.journal import Journal
from zdt.rollout import Runner, interrupted, open_journal, request_stop

app = typer.Typer(help="Update running Linux services without downtime.",
                  no_args_is_help=True, add_completion=False)
sandbox_app = typer.Typer(help="A real local domain (supervisord + HAProxy) for demos and tests.",
                          no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
app.add_typer(preview_app, name="preview")
app.add_typer(archive_app, name="archive")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(live_app, name="live")
app.command("stale")(stale)


class SandboxLB(StrEnum):
    haproxy = "haproxy"
    nginx = "nginx"                  # zdt's Lua peer list: drains without a reload
    nginx_reload = "nginx-reload"    # nginx without the Lua module: a reload per change


LbOpt = Annotated[SandboxLB, typer.Option("--lb", help="The load balancer in front.")]
WidArg = Annotated[str, typer.Argument(metavar="ID", help="A workflow id (see `zdt history`).")]


@app.command()
@handled
def resume(wid: WidArg, domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False,
           accept_new_host_keys: AcceptNew = False, parallel: Parallel = 8) -> None:
    """Go on with a failed, stopped or interrupted workflow from its first step not done."""
    asyncio.run(Runner(domain, connect=Connect(accept_new_host_keys, parallel)).resume(wid))
    finish(domain, wid, json_out)


@app.command()
@handled
def revert(wid: WidArg, domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False,
           accept_new_host_keys: AcceptNew = False, parallel: Parallel = 8) -> None:
    """Revert a workflow's completed steps, last first (also one that succeeded)."""
    asyncio.run(Runner(domain, connect=Connect(accept_new_host_keys, parallel)).revert(wid))
    finish(domain, wid, json_out, revert=True)


@app.command()
@handled
def stop(wid: WidArg, domain: DomainOpt = Path("domain.toml")) -> None:
    """Ask a running workflow to stop once its node visit under way is done (it exits 5)."""
    request_stop(domain, wid)
    out.print(f"workflow {wid} will stop once the node visit under way is done (no node is "
              f"left drained or stopped); `zdt resume {wid}` goes on")


@app.command()
@handled
def status(
    wid: Annotated[str | None, typer.Argument(metavar="[ID]", help="A workflow id "
                                              "(default: the newest).")] = None,
    domain: DomainOpt = Path("domain.toml"),
    json_out: JsonOpt = False,
    watch: Annotated[bool, typer.Option(help="Refresh until the workflow ends.")] = False,
) -> None:
    """Show a workflow: its state, its steps, each node's time out of rotation."""
    journal = open_journal(domain)
    try:
        wid = wid or _newest(journal)
        summary = _status(journal, wid)
        while watch and summary["state"] in ("pending", "running", "reverting") \
                and not summary["interrupted"]:
            time.sleep(0.25)
            summary = _status(journal, wid)
    finally:
        journal.close()
    if json_out:
        print_json(summary)
        return
    print_summary(summary, with_witness=False)
    if summary["interrupted"]:
        out.print(f"  interrupted: no zdt process runs it; `zdt resume {wid}` or "
                  f"`zdt revert {wid}` finishes it", style="yellow")
    table = Table("#", "node", "step", "servers", "state", "tries", "s", "error")
    for st in summary["steps"]:
        table.add_row(str(st["index"]), st["node"], st["name"], ",".join(st["servers"]),
                      st["state"], str(st["attempts"]),
                      "" if st["duration"] is None else f"{st['duration']:.3f}",
                      (st["error"] or "")[:60])
    out.print(table)
    if summary["witness"] is not None:
        print_witness(summary["witness"])


def _status(journal: Journal, wid: str) -> dict[str, Any]:
    summary = report.workflow(journal, wid)
    summary["interrupted"] = interrupted(journal, journal.workflow(wid))
    return summary


def _newest(journal: Journal) -> str:
    workflows = journal.history()
    if not workflows:
        raise NotFoundError(f"no workflow has run in {journal.state_dir} yet")
    return workflows[0].id


@app.command()
@handled
def history(domain: DomainOpt = Path("domain.toml"), json_out: JsonOpt = False) -> None:
    """List the domain's workflows, newest first."""
    journal = open_journal(domain)
    try:
        rows = [report.brief(w) for w in journal.history()]
    finally:
        journal.close()
    if json_out:
        print_json(rows)
        return
    table = Table("id", "kind", "state", "started", "targets")
    for r in rows:
        table.add_row(r["id"], r["kind"], r["state"], r["started"] or "",
                      ",".join(r["targets"] or []))
    out.print(table)


@sandbox_app.command("up")
@handled
def sandbox_up(
    dir: Annotated[Path, typer.Option("--dir", help="Where the sandbox lives.")],
    nodes: Annotated[int, typer.Option(min=2, max=16)] = 3,
    servers_per_node: Annotated[int, typer.Option(min=1, max=8)] = 2,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="Root: every node a network namespace of its own with sshd and "
        "private /srv, /opt, /run, reached over SSH.")] = False,
    lb: LbOpt = SandboxLB.haproxy,
    json_out: JsonOpt = False,
) -> None:
    """Start a local domain: a supervisord per node, sample service v1, HAProxy in front."""
    from zdt import sandbox

    info = sandbox.up(dir, nodes, servers_per_node, isolated=isolated, lb=lb.value)
    if json_out:
        print_json(info)
        return
    out.print(f"sandbox up in {info['dir']}\n  domain: {info['domain']}\n"
              f"  load balancer: {info['lb_url']}")
    for node in info["nodes"]:
        urls = ", ".join(s["url"] for s in node["servers"])
        out.print(f"  {node['name']}: {urls}")


@sandbox_app.command("down")
@handled
def sandbox_down(
    dir: Annotated[Path, typer.Option("--dir", help="The sandbox's directory.")],
    json_out: JsonOpt = False,
) -> None:
    """Stop every process the sandbox started (by pid)."""
    from zdt import sandbox

    summary = sandbox.down(dir)
    if json_out:
        print_json(summary)
    else:
        out.print(f"sandbox in {dir} is down")


@app.command()
@handled
def demo(
    dir: Annotated[Path | None, typer.Option("--dir", help="Keep the sandbox here "
                                             "(default: a temporary dir).")] = None,
    nodes: Annotated[int, typer.Option(min=2, max=16)] = 3,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="Root: every node a network namespace reached over SSH.")] = False,
    lb: LbOpt = SandboxLB.haproxy,
    json_out: JsonOpt = False,
) -> None:
    """Sandbox up, load at capacity through the LB, rolling restart and home rollout, the
    clients' count beside the LB's witness, sandbox down."""
    from zdt import demo as demo_module

    result = demo_module.run(dir, nodes, console=None if json_out else out,
                             isolated=isolated, lb=lb.value)
    if json_out:
        print_json(result)
    ok = result["failed_requests"] == 0 and result["lb_errors"] == 0 and \
        all(w["state"] == "succeeded" for w in result["workflows"])
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

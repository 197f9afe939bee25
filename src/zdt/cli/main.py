"""The `zdt` command tree. Thin: parses, calls, prints. Exit codes as in DESIGN.md:
0 success, 1 workflow failed (reverted when auto-revert was on), 2 bad input,
3 precondition not met, 4 domain locked, 5 stopped by an operator.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from zdt.cli import status
from zdt.cli.archive import archive_app
from zdt.cli.common import JsonOpt, group, handled, out, print_json
from zdt.cli.console import console, serve
from zdt.cli.live import live_app, stale
from zdt.cli.rollout import preview_app, rollout_app

app = group("Update running Linux services without downtime.", add_completion=False)
sandbox_app = group("A real local domain (supervisord + HAProxy) for demos and tests.")
app.add_typer(rollout_app, name="rollout")
app.add_typer(preview_app, name="preview")
app.add_typer(archive_app, name="archive")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(live_app, name="live")
app.command("stale")(stale)
for command in (status.status, status.history, status.stop, status.resume, status.revert,
                console):
    app.command()(command)


class SandboxLB(StrEnum):
    haproxy = "haproxy"
    nginx = "nginx"                  # zdt's Lua peer list: drains without a reload
    nginx_reload = "nginx-reload"    # nginx without the Lua module: a reload per change


LbOpt = Annotated[SandboxLB, typer.Option("--lb", help="The load balancer in front.")]


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
    lbs: Annotated[int, typer.Option(min=1, max=4, help="HAProxies in front of the same "
                                     "servers (an HA pair: [[lb]] in the domain).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Start a local domain: a supervisord per node, sample service v1, HAProxy in front."""
    from zdt.lab import sandbox

    info = sandbox.up(dir, nodes, servers_per_node, isolated=isolated, lb=lb.value, lbs=lbs)
    if json_out:
        print_json(info)
        return
    out.print(f"sandbox up in {info['dir']}\n  domain: {info['domain']}\n"
              f"  load balancer: {', '.join(info['lb_urls'])}")
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
    from zdt.lab import sandbox

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
    with_console: Annotated[bool, typer.Option(
        "--console", help="Then leave the console open on the demo's sandbox until "
        "Ctrl-C.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Sandbox up, load at capacity through the LB, rolling restart and home rollout, the
    clients' count beside the LB's witness, sandbox down."""
    from zdt.lab import demo as demo_module

    def console_on(info: dict[str, Any]) -> None:
        out.print("the console on the demo's sandbox, until Ctrl-C:")
        serve(Path(info["domain"]))

    result = demo_module.run(dir, nodes, console=None if json_out else out,
                             isolated=isolated, lb=lb.value,
                             then=console_on if with_console else None)
    if json_out:
        print_json(result)
    ok = result["failed_requests"] == 0 and result["lb_errors"] == 0 and \
        all(w["state"] == "succeeded" for w in result["workflows"])
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""`zdt demo`: a local domain, a rolling restart and a home rollout v1 → v2 under load at
the machine's capacity (keep-alive clients: wrk when installed, else zdt's own generator),
a report.

What it proves: with HAProxy configured to hide nothing (no retries, no redispatch),
every request sent through the LB during the rollouts succeeds — as the clients counted
them, and as the LB itself counted them (its witness, per workflow).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from zdt import domain as domain_model
from zdt import report, witness
from zdt.app import App, RolloutRequest
from zdt.display import Progress
from zdt.lab import sandbox
from zdt.lab.load import at_capacity, describe
from zdt.terminal import SafeConsole as Console
from zdt.terminal import styled
from zdt.workflow.journal import store_of

WARMUP = 1.0     # seconds of load before and after the rollout, so both edges are covered


def run(dir: Path | None, nodes: int = 3, console: Console | None = None, *,
        isolated: bool = False, lb: str = "haproxy",
        then: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The demo; `then(info)` runs on the sandbox after the report, before it goes down
    (`zdt demo --console`)."""
    base = dir or Path(tempfile.mkdtemp(prefix="zdt-demo-", dir="/tmp"))
    say = console.print if console else (lambda *a, **k: None)
    where = "each node a network namespace reached over SSH, " if isolated else ""
    say(styled(("zdt demo", "bold"), f": {nodes} nodes × 2 servers of the sample service v1, "
        f"supervisord per node, {where}{'nginx' if lb == 'nginx' else 'HAProxy'} in front "
        f"({base}); a rolling restart, then the home rollout v1 → v2, under load at the "
        "machine's capacity"))
    info = sandbox.up(base, nodes, 2, isolated=isolated, lb=lb)
    try:
        result = asyncio.run(_rollout_under_load(info, console))
        if console:
            _print(console, result)
        if then is not None:
            then(info)
    finally:
        sandbox.down(base)
        if dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return result


async def _rollout_under_load(info: dict[str, Any], console: Console | None) -> dict[str, Any]:
    """A rolling restart, then the home rollout v1 → v2, under one steady load."""
    runner = App(Path(info["domain"]))
    requests = [RolloutRequest.of("restart", ("domain",), shutdown_timeout=10.0),
                RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                                  archive=info["archives"]["v2"])]
    load = at_capacity(info["lb_url"], connections=16, keep_alive=True)
    wids = []
    async with load:
        await asyncio.sleep(WARMUP)
        for request in requests:
            prepared = runner.prepare(request)
            if console:
                with Progress(prepared.plan, console) as progress:
                    runner.observer = progress
                    wids.append((await runner.start(prepared)).id)
            else:
                wids.append((await runner.start(prepared)).id)
        await asyncio.sleep(WARMUP)
    stats = load.stats
    journal = store_of(domain_model.load(info["domain"])).open(runner.clock)
    try:
        summaries = [report.workflow(journal, wid) for wid in wids]
    finally:
        journal.close()
    lb_errors = sum((w["witness"] or {}).get("errors", 0) for w in summaries)
    return {"workflows": summaries, "load": {**stats.as_dict(), "by": describe(load)},
            "failed_requests": stats.failed, "lb_errors": lb_errors, "lb_url": info["lb_url"]}


def _print(console: Console, result: dict[str, Any]) -> None:
    load = result["load"]
    for wf in result["workflows"]:
        table = Table("node", "servers", "out of rotation s", "wall s", "zdt overhead ms",
                      title=f"{wf['kind']} rollout: {wf['state']} in {wf['duration']:.2f} s "
                      f"(workflow {wf['id']})", title_justify="left")
        for v in wf["nodes"]:
            oor = "-" if v["out_of_rotation"] is None else f"{v['out_of_rotation']:.3f}"
            table.add_row(v["node"], ", ".join(v["servers"]), oor, f"{v['wall']:.3f}",
                          f"{v['overhead'] * 1000:.1f}")
        console.print(table)
        if wf["witness"] is not None:
            w = wf["witness"]
            bad = "unavailable" in w or w["errors"]
            console.print(witness.sentence(w), style="red" if bad else "green")
    colour = "green" if load["failed"] == 0 else "red"
    console.print(styled(f"load through the LB ({load['by']}): {load['requests']:,} requests "
                         f"in {load['seconds']:.1f} s ({load['rate']:,.0f}/s), ",
                         (f"{load['failed']} failed requests", f"bold {colour}"),
                         " as the clients counted them"))
    for error, count in load["errors"].items():
        console.print(f"  {count} × {error}", style="red")
    versions = ", ".join(f"{k}: {v}" for k, v in sorted(load["versions"].items()))
    console.print(f"versions served: {versions}")

"""Benchmark: every fleet workflow type under load at the machine's capacity, with three
client shapes, counted by the clients and by the load balancer itself.

    python -m bench.capacity [--shapes ka16 ka64 ka256 close16] [--no-ssh] [--rounds 1]

Shapes: `ka16`, `ka64`, `ka256`: 16, 64, 256 keep-alive connections; `close16`: 16
clients opening a new connection per request (wrk with `Connection: close`). The load
is wrk (Debian's package) when installed, else zdt's own generator; it runs 1 s before a
workflow, through it, and 1 s after.

Per row: the clients' requests and failures; what the LB counted over the same window
(its backend's requests, and its errors: connection, response, 5xx, server aborts); the
errors in the workflow's own witness; the workflow's end state, wall time and the longest
time a node was out of rotation. Workflows: restart, home v1→v2, its revert, a broken
release (auto-revert), runtime and its revert, apps and its revert, the combined update
and its revert, a partition restart; then (root) a home rollout and its revert over SSH on
the isolated sandbox, behind HAProxy and behind nginx (zdt's Lua peer list). Apart, not in
the totals: nginx with a reload per drain and ready (no Lua module), the limit of that mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zdt import adapters, report
from zdt import domain as dm
from zdt.adapters.lb import Counters
from zdt.app import App, Outcome, RolloutRequest
from zdt.lab import sandbox, wrk
from zdt.lab.load import Load, at_capacity, describe
from zdt.witness import ERROR_FIELDS
from zdt.workflow.journal import store_of

SHAPES = {"ka16": (16, True), "ka64": (64, True), "ka256": (256, True),
          "close16": (16, False)}
EDGE = 1.0    # s of load before and after each workflow
HEADER = ("| workflow | LB | clients | state | requests | failed | LB requests | LB errors | "
          "witness errors | wall s | out max s |\n"
          "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")


async def counters(domain: dm.Domain) -> Counters:
    made = adapters.build(domain)
    try:
        reading = await made.lb.counters()
    finally:
        await made.close()
    if isinstance(reading, str):
        raise SystemExit(f"the LB cannot witness: {reading}")
    return reading


async def measured(info: dict[str, Any], shape: str, work: Callable[[], Awaitable[Outcome]],
                   *, reverting: bool = False) -> dict[str, Any]:
    """work() (returning a workflow id) under load; the clients' and the LB's figures."""
    domain = dm.load(info["domain"])
    connections, keep_alive = SHAPES[shape]
    witnessed = domain.lb.kind != "nginx" or bool(getattr(domain.lb, "admin_socket", ""))
    before = await counters(domain) if witnessed else None
    load = at_capacity(info["lb_url"], connections=connections, keep_alive=keep_alive)
    async with load:
        await asyncio.sleep(EDGE)
        began = time.monotonic()
        wid = (await work()).id
        wall = time.monotonic() - began
        await asyncio.sleep(EDGE)
    await asyncio.sleep(0.2)            # the LB logs a request once its answer is sent
    after = await counters(domain) if witnessed else None
    journal = store_of(domain).open(time.time)
    try:
        summary = report.workflow(journal, wid)
    finally:
        journal.close()
    w = summary["witness"] or {}
    # a revert's own time out of rotation; a rollout's (an auto-revert's included)
    key = "revert_out_of_rotation" if reverting else "out_of_rotation"
    outs = [v[key] for v in summary["nodes"] if v[key]]
    last = (w.get("runs") or [{}])[-1]
    return {"wid": wid, "state": summary["state"], "by": describe(load),
            "requests": load.stats.requests, "failed": load.stats.failed,
            "errors": dict(load.stats.errors),
            "lb_requests": after.backend.requests - before.backend.requests
            if after and before else "-",
            "lb_errors": sum(getattr(after.backend, f) - getattr(before.backend, f)
                             for f in ERROR_FIELDS) if after and before else "-",
            "witness_errors": last.get("errors", "-"), "wall": wall,
            "out_max": max(outs) if outs else 0.0}


def row(label: str, lb: str, shape: str, r: dict[str, Any]) -> str:
    lb_requests = r["lb_requests"]
    return (f"| {label} | {lb} | {shape} | {r['state']} | {r['requests']:,} | {r['failed']} | "
            f"{lb_requests if isinstance(lb_requests, str) else f'{lb_requests:,}'} | "
            f"{r['lb_errors']} | {r['witness_errors']} | {r['wall']:.2f} | "
            f"{r['out_max']:.2f} |")


@contextmanager
def sandbox_at(**options: Any) -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    info = sandbox.up(base / "sb", **options)
    try:
        yield info
    finally:
        sandbox.down(base / "sb")
        shutil.rmtree(base, ignore_errors=True)


def local_plan(info: dict[str, Any]) -> list[tuple[str, RolloutRequest | None]]:
    """(label, request) in order; None: revert the workflow of the row before."""
    v2, broken = info["archives"]["v2"], info["archives"]["broken"]
    runtime, apps = info["runtime_home"], info["apps"]
    base: dict[str, Any] = {"shutdown_timeout": 10.0, "retry_delay": 0.2}
    return [
        ("restart", RolloutRequest.of("restart", ("domain",), **base)),
        ("home v1→v2", RolloutRequest.of("home", ("domain",), **base, archive=v2)),
        ("revert after success", None),
        ("broken → auto-revert", RolloutRequest.of("home", ("domain",), **base,
                                                   archive=broken, retries=1,
                                                   health_timeout=3.0)),
        ("runtime", RolloutRequest.of("runtime", ("domain",), **base, runtime_home=runtime)),
        ("runtime revert", None),
        ("apps", RolloutRequest.of("apps", ("domain",), **base, apps=apps)),
        ("apps revert", None),
        ("combined update", RolloutRequest.of("update", ("domain",), **base, archive=v2,
                                              runtime_home=runtime, apps=apps)),
        ("combined revert", None),
    ]


async def run_plan(info: dict[str, Any], plan: list[tuple[str, RolloutRequest | None]],
                   lb: str, shape: str, out: list[dict[str, Any]]) -> None:
    runner = App(Path(info["domain"]))
    last = ""
    for label, request in plan:
        if request is None:
            wid = last
            r = await measured(info, shape, lambda w=wid: runner.revert(w), reverting=True)
        else:
            r = await measured(info, shape, lambda q=request: runner.start(q))
        last = r["wid"]
        out.append({"label": label, "lb": lb, "shape": shape, **r})
        print(row(label, lb, shape, r), flush=True)




async def generator(info: dict[str, Any]) -> str:
    """zdt's own load generator alone (no workflow): what it reaches on this machine."""
    line = []
    for keep_alive in (True, False):
        async with Load(info["lb_url"], concurrency=16, rate_per_worker=0,
                        keep_alive=keep_alive, process=True) as load:
            await asyncio.sleep(5.0)
        s = load.stats
        line.append(f"{s.requests / s.seconds:,.0f} requests/s with 16 "
                    f"{'keep-alive' if keep_alive else 'new-connection'} clients "
                    f"({s.failed} failed)")
    return "zdt's own load generator through HAProxy: " + "; ".join(line)


async def local(shapes: list[str], rounds: int, out: list[dict[str, Any]]) -> None:
    with sandbox_at(nodes=3, servers_per_node=2) as info:
        for _ in range(rounds):
            for shape in shapes:
                await run_plan(info, local_plan(info), "haproxy", shape, out)
        print("\n" + await generator(info) + "\n", flush=True)
    with sandbox_at(nodes=3, servers_per_node=1, partitions=("p1",)) as info:
        request = RolloutRequest.of("restart", ("domain",), shutdown_timeout=10.0,
                                    partitions=("p1",))
        for _ in range(rounds):
            for shape in shapes:
                await run_plan(info, [("partition restart", request)], "haproxy", shape, out)


async def over_ssh(shapes: list[str], rounds: int, out: list[dict[str, Any]]) -> None:
    for lb in ("haproxy", "nginx"):
        with sandbox_at(nodes=3, servers_per_node=2, isolated=True, lb=lb) as info:
            plan = [("home over SSH", RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                                                        archive=info["archives"]["v2"])),
                    ("revert over SSH", None)]
            for _ in range(rounds):
                for shape in shapes:
                    await run_plan(info, plan, lb, shape, out)


async def reload_limit(shapes: list[str]) -> list[dict[str, Any]]:
    """nginx without the Lua module reloads per drain and ready: where that stops being
    lossless (kept-alive clients that do not send a request again)."""
    rows: list[dict[str, Any]] = []
    with sandbox_at(nodes=3, servers_per_node=2, lb="nginx-reload") as info:
        plan = [("home v1→v2", RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                                                 archive=info["archives"]["v2"])),
                ("revert after success", None)]
        for shape in shapes:
            await run_plan(info, plan, "nginx-reload", shape, rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-ssh", action="store_true", help="skip the isolated sandbox")
    parser.add_argument("--no-reload-limit", dest="reload_limit", action="store_false",
                        help="skip nginx with reloads (the limit of that mode)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    asyncio.run(local(args.shapes, args.rounds, rows))
    if not args.no_ssh and os.geteuid() == 0:
        asyncio.run(over_ssh(args.shapes, args.rounds, rows))
    requests = sum(r["requests"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    lb_errors = sum(r["lb_errors"] for r in rows)
    agree = all(abs(int(r["lb_requests"]) - r["requests"]) <= SHAPES[r["shape"]][0]
                for r in rows)
    print(f"\n{len(rows)} workflows, {requests:,} requests, {failed} failed (clients), "
          f"{lb_errors} errors (LB); the LB's count within the clients' connections of "
          f"theirs on every row: {'yes' if agree else 'no'}; load: "
          f"{'wrk' if wrk.available() else 'zdt.lab.load'}")
    for r in rows:
        if r["errors"]:
            print(f"  {r['label']} ({r['lb']}, {r['shape']}): {r['errors']}")
    if args.reload_limit:
        print("\nnginx with a reload per drain and ready (no Lua module), not in the totals:")
        print(HEADER, flush=True)
        for r in asyncio.run(reload_limit(args.shapes)):
            if r["errors"]:
                print(f"  {r['label']} ({r['shape']}): {r['errors']}")


if __name__ == "__main__":
    main()

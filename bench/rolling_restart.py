"""Benchmark: rolling restarts of a real sandbox under load at capacity through HAProxy.

    python -m bench.rolling_restart [--nodes 3 5] [--servers-per-node 2] [--runs 2]

Prints, per topology: requests sent during the rollout, failed requests, rollout wall
time, per-node out-of-rotation time, and zdt's own overhead per node (the node visit's
wall time minus the time inside its drain, stop, start, health and ready steps).
Also runs one rollout whose start fails on node2 (retried, then reverted) under load.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import measured
from zdt.app import App, RolloutRequest
from zdt.lab import sandbox
from zdt.workflow.engine import Observer
from zdt.workflow.journal import StepRecord


async def one_rollout(info: dict[str, Any], request: RolloutRequest,
                      observer: Observer | None = None) -> dict[str, Any]:
    runner = App(Path(info["domain"]), observer=observer)
    return await measured(info, lambda: runner.start(request))


def row(label: str, r: dict[str, Any]) -> str:
    out = r["out"] or [0.0]
    return (f"| {label:<24} | {r['state']:<9} | {r['requests']:>8} | {r['failed']:>6} | "
            f"{r['wall']:>7.2f} | {statistics.mean(out):>7.3f} | {max(out):>7.3f} | "
            f"{statistics.mean(r['overhead']) * 1000:>8.1f} |")


HEADER = ("| rollout                  | state     | requests | failed | wall s  | "
          "out avg | out max | zdt ms/node |\n|---|---|---:|---:|---:|---:|---:|---:|")


def bench(nodes: int, per_node: int, runs: int) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    info = sandbox.up(base / "sb", nodes, per_node)
    rows = []
    try:
        for run in range(runs):
            r = asyncio.run(one_rollout(info, RolloutRequest.of("restart", ("domain",),
                                                                shutdown_timeout=10)))
            rows.append(row(f"restart {nodes}×{per_node} #{run + 1}", r))
        home = Path(next(n["home"] for n in info["nodes"] if n["name"] == "node2"))
        (home / "FAIL_STARTS").write_text("99")
        request = RolloutRequest.of("restart", ("domain",), shutdown_timeout=10, retries=2,
                                    retry_delay=0.2)
        r = asyncio.run(_failing(info, request, home))
        rows.append(row(f"failing {nodes}×{per_node} → revert", r))
    finally:
        sandbox.down(base / "sb")
        shutil.rmtree(base, ignore_errors=True)
    return rows


async def _failing(info: dict[str, Any], request: RolloutRequest, home: Path) -> dict[str, Any]:
    """node2's start fails on every try; the cause is fixed once the retries are spent, so
    the revert can start node2 again (as an operator would before `zdt revert`)."""
    failures = 0

    def fix_after_last_try(record: StepRecord, state: str) -> None:
        nonlocal failures
        if record.name == "start" and state == "failed":
            failures += 1
            if failures == 1 + request.retries:
                (home / "FAIL_STARTS").write_text("0")

    return await one_rollout(info, request, fix_after_last_try)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--servers-per-node", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(HEADER)
    for nodes in args.nodes:
        for line in bench(nodes, args.servers_per_node, args.runs):
            print(line, flush=True)


if __name__ == "__main__":
    main()

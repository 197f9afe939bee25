"""Benchmark: home rollouts of a real sandbox under load at capacity through HAProxy.

    python -m bench.home_rollout [--nodes 3] [--servers-per-node 2] [--runs 2]

Per run: preview's estimate, then v1 → v2 under load, then `zdt revert` under load; then a
rollout of the broken release (reverted automatically). Printed per rollout: requests
sent, failed, wall time, per-node time out of rotation, zdt's overhead per node, and the
preview's estimate beside the measured wall time.
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

HEADER = ("| rollout | state | requests | failed | wall s | preview est. s | out avg s | "
          "out max s | zdt ms/node |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")


def row(label: str, r: dict[str, Any], estimate: float | None) -> str:
    est = "-" if estimate is None else f"{estimate:.2f}"
    avg, top = (f"{statistics.mean(r['out']):.3f}", f"{max(r['out']):.3f}") if r["out"] \
        else ("-", "-")
    return (f"| {label} | {r['state']} | {r['requests']} | {r['failed']} | {r['wall']:.2f} | "
            f"{est} | {avg} | {top} | "
            + (f"{statistics.mean(r['overhead']) * 1000:.1f} |" if r["overhead"] else "- |"))


async def one_round(info: dict[str, Any], runner: App, n: int) -> list[str]:
    v2 = RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                           archive=info["archives"]["v2"])
    estimate = (await runner.preview(v2))["estimates"]["total_seconds"]
    up = await measured(info, lambda: runner.start(v2))
    back = await measured(info, lambda: runner.revert(up["wid"]))
    back["out"] = back["revert_out"]
    back["overhead"] = []         # the journal's per-visit overhead is the forward run's
    return [row(f"home v1→v2 #{n}", up, estimate), row(f"revert #{n}", back, None)]


async def combined_against_separate(info: dict[str, Any], runner: App) -> list[str]:
    """Home, runtime and apps as three rollouts, against all three in one combined update:
    each node's total time out of rotation."""
    base: dict[str, Any] = {"shutdown_timeout": 10.0}
    parts = [RolloutRequest.of("home", ("domain",), **base, archive=info["archives"]["v2"]),
             RolloutRequest.of("runtime", ("domain",), **base, runtime_home=info["runtime_home"]),
             RolloutRequest.of("apps", ("domain",), **base, apps=info["apps"])]
    both = RolloutRequest.of("update", ("domain",), **base, archive=info["archives"]["v2"],
                             runtime_home=info["runtime_home"], apps=info["apps"])
    runs = []
    for request in parts:
        runs.append(await measured(info, lambda r=request: runner.start(r)))
    for r in reversed(runs):
        await runner.revert(r["wid"])
    combined = await measured(info, lambda: runner.start(both))
    await runner.revert(combined["wid"])
    separate = {"state": "succeeded", "requests": sum(r["requests"] for r in runs),
                "failed": sum(r["failed"] for r in runs), "wall": sum(r["wall"] for r in runs),
                "out": [sum(t) for t in zip(*(r["out"] for r in runs), strict=True)],
                "overhead": [o for r in runs for o in r["overhead"]]}
    return [row("home + runtime + apps, 3 rollouts", separate, None),
            row("home + runtime + apps, combined", combined, None)]




def bench(nodes: int, per_node: int, runs: int) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    info = sandbox.up(base / "sb", nodes, per_node)
    runner = App(Path(info["domain"]))
    rows = []
    try:
        for n in range(1, runs + 1):
            rows += asyncio.run(one_round(info, runner, n))
        broken = RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0, retries=1,
                                   retry_delay=0.2, archive=info["archives"]["broken"],
                                   health_timeout=1.0)
        r = asyncio.run(measured(info, lambda: runner.start(broken)))
        rows.append(row("broken → auto-revert", r, None))
        rows += asyncio.run(combined_against_separate(info, runner))
    finally:
        sandbox.down(base / "sb")
        shutil.rmtree(base, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--servers-per-node", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.nodes} nodes × {args.servers_per_node} servers + admin\n")
    print(HEADER)
    for line in bench(args.nodes, args.servers_per_node, args.runs):
        print(line, flush=True)


if __name__ == "__main__":
    main()

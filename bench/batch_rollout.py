"""Benchmark: a home rollout of 8 nodes one at a time against `--batch 25%`, under load at
capacity through HAProxy.

    python -m bench.batch_rollout [--nodes 8] [--runs 1]

As root, every node is a host of its own (the isolated sandbox, reached over SSH);
otherwise the nodes are local. Printed per rollout: the batch, requests sent, failed,
wall time, the largest number of servers out of rotation at once, the witness's errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import measured
from zdt import domain as dm
from zdt import report
from zdt.app import App, RolloutRequest
from zdt.lab import sandbox
from zdt.workflow.journal import store_of

HEADER = ("| rollout | batch | state | requests | failed | wall s | most out at once | "
          "LB errors |\n|---|---|---|---:|---:|---:|---:|---:|")


def most_out(info: dict[str, Any], wid: str) -> tuple[int, int | None]:
    """The most visits out of rotation at one instant, and the errors the LB counted."""
    journal = store_of(dm.load(Path(info["domain"]))).open(time.time)
    try:
        summary = report.workflow(journal, wid)
    finally:
        journal.close()
    windows = []
    for v in summary["nodes"]:
        drain = next(s for s in summary["steps"] if s["visit"] == v["visit"]
                     and s["name"] == "drain")
        ready = next(s for s in summary["steps"] if s["visit"] == v["visit"]
                     and s["name"] == "ready")
        windows.append((drain["started"], ready["ended"]))
    peak = max(sum(1 for a, b in windows if a <= t < b) for t, _ in windows)
    witness = summary["witness"] or {}
    return peak, witness.get("errors")


async def rounds(info: dict[str, Any], runs: int) -> list[str]:
    app = App(Path(info["domain"]))
    rows = []
    for n in range(1, runs + 1):
        for batch in ("1", "25%"):
            request = RolloutRequest.of("home", ("cluster1",), shutdown_timeout=10.0,
                                        archive=info["archives"]["v2"], batch=batch)
            up = await measured(info, lambda r=request: app.start(r))
            peak, errors = most_out(info, up["wid"])
            rows.append(f"| home v1→v2 #{n} | {batch} | {up['state']} | {up['requests']} | "
                        f"{up['failed']} | {up['wall']:.2f} | {peak} | {errors} |")
            print(rows[-1], flush=True)
            await app.revert(up["wid"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    isolated = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    try:
        info = sandbox.up(base / "sb", args.nodes, 1, admin=False, isolated=isolated)
        print(f"{args.nodes} nodes × 1 server behind HAProxy"
              + (", each a host of its own reached over SSH" if isolated else "")
              + f"\n\n{HEADER}", flush=True)
        try:
            asyncio.run(rounds(info, args.runs))
        finally:
            sandbox.down(base / "sb")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

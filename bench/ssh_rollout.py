"""Benchmark: home rollouts over SSH on the isolated sandbox (root), under load at capacity.

    python -m bench.ssh_rollout [--nodes 3] [--servers-per-node 2] [--runs 2] [--mib 64]

Every node is a network namespace with its own sshd; zdt reaches it over one SSH
connection. Printed per rollout: requests, failed, wall time, per-node time out of
rotation, zdt's overhead per node and the SSH commands per node visit; the same behind
nginx; then `zdt archive distribute` of an archive of MIB MiB to 1 node and to all nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import measured
from zdt import adapters, archive, staging
from zdt import domain as dm
from zdt.adapters.transport.ssh import SSHTransport
from zdt.app import App, RolloutRequest
from zdt.lab import sandbox

HEADER = ("| rollout over SSH | LB | state | requests | failed | wall s | out avg s | out max s |"
          " zdt ms/node | SSH commands/node |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|")


class Counting:
    """Builds zdt's adapters for the Runner and keeps their transports, to read their
    round-trip counters afterwards."""

    def __init__(self) -> None:
        self.made: list[adapters.Adapters] = []

    def build(self, domain: dm.Domain, connect: adapters.Connect) -> adapters.Adapters:
        made = adapters.build(domain, connect)
        self.made.append(made)
        return made

    def take(self) -> int:
        total = sum(t.round_trips for made in self.made for t in made.transports.values()
                    if isinstance(t, SSHTransport))
        self.made.clear()
        return total


def row(label: str, lb: str, r: dict[str, Any], commands: float) -> str:
    out = r["out"] or [0.0]
    return (f"| {label} | {lb} | {r['state']} | {r['requests']} | {r['failed']} | "
            f"{r['wall']:.2f} | {statistics.mean(out):.3f} | {max(out):.3f} | "
            f"{statistics.mean(r['overhead']) * 1000:.1f} | {commands:.0f} |")


async def rollouts(info: dict[str, Any], runs: int, lb: str) -> list[str]:
    counting = Counting()
    runner = App(Path(info["domain"]), build_adapters=counting.build)
    v2 = RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                           archive=info["archives"]["v2"])
    rows = []
    for n in range(1, runs + 1):
        up = await measured(info, lambda: runner.start(v2))
        rows.append(row(f"home v1→v2 #{n}", lb, up, counting.take() / len(up["out"])))
        back = await measured(info, lambda w=up["wid"]: runner.revert(w))
        back["out"], back["overhead"] = back["revert_out"], up["overhead"]
        rows.append(row(f"revert #{n}", lb, back, counting.take() / len(back["out"])))
    return rows




async def distribution(info: dict[str, Any], mib: int) -> list[str]:
    """Seconds to stage one archive on 1 node, then on every node (nothing staged before)."""
    work = Path(info["dir"], "bench-home")
    shutil.copytree(Path(info["dir"], "inputs", "v2"), work, symlinks=True)
    (work / "blob").write_bytes(os.urandom(mib * 2**20))
    big = Path(info["dir"], "bench.tar.gz")
    manifest = archive.create(work, big, version="v2-big")
    domain = dm.load(info["domain"])
    rows = []
    for count in (1, len(domain.nodes)):
        part = domain.model_copy(update={"nodes": domain.nodes[:count]})
        transports = adapters.transports(part)
        try:
            target = staging.staged_path(part, manifest.sha256)
            for t in transports.values():
                await t.run(["rm", "-f", target, target + ".json"])
            began = time.monotonic()
            await staging.distribute(part, big, transports)
            took = time.monotonic() - began
        finally:
            for t in transports.values():
                await t.close()
        rows.append(f"| archive of {manifest.size / 2**20:.1f} MiB to {count} node(s) | "
                    f"{took:.2f} s |")
    return rows


def bench(nodes: int, per_node: int, runs: int, mib: int) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    rows: list[str] = []
    try:
        for lb in ("haproxy", "nginx"):
            info = sandbox.up(base / lb, nodes, per_node, isolated=True, lb=lb)
            try:
                rows += asyncio.run(rollouts(info, runs, lb))
                if lb == "haproxy":
                    dist = asyncio.run(distribution(info, mib))
            finally:
                sandbox.down(base / lb)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return [*rows, "", "| distribution | wall |", "|---|---:|", *dist]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--servers-per-node", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.ssh_rollout needs root (network namespaces): not run", file=sys.stderr)
        return
    print(f"{args.nodes} nodes × {args.servers_per_node} servers + admin, each node a "
          f"network namespace reached over SSH\n")
    print(HEADER)
    for line in bench(args.nodes, args.servers_per_node, args.runs, args.mib):
        print(line, flush=True)


if __name__ == "__main__":
    main()

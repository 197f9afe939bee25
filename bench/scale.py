"""Benchmark: how zdt's own cost grows with the fleet — 10, 100 and 1,000 simulated nodes.

    python -m bench.scale [--sizes 10,100,1000] [--batches 1,10%] [--no-postgres]

A simulated node answers at once: its transport runs nothing, its service manager and the
load balancer keep their state in memory (injected through `App(build_adapters=…)`, the
seam the tests use). Each server's port is a real listener of this process answering
/health, so the start and health steps do their real network checks. What is measured
is zdt itself: planning, the preconditions, the engine, the journal (SQLite in the state
dir, then PostgreSQL started here on a free port): the wall time, the CPU time this
process spent, per node visit, and the journal's writes (one committed transaction each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from zdt import domain as dm
from zdt.app import App, RolloutRequest
from zdt.lab import simulated
from zdt.lab.postgres import Postgres
from zdt.workflow.journal import store_of

HEADER = ("| nodes | batch | journal | wall s | zdt CPU s | CPU ms per visit | plan s | "
          "journal writes | writes per visit |\n|---:|---|---|---:|---:|---:|---:|---:|---:|")


def domain_file(d: Path, ports: list[int], url: str | None) -> Path:
    lines = ['[domain]', 'name = "scale"', 'home = "/srv/app/home"', 'state_dir = "state"',
             '[services]', 'kind = "supervisor"', '[lb]', 'socket = "simulated.sock"']
    if url:
        lines += ["[state]", f'url = "{url}"']
    for i in range(1, len(ports) + 1):
        lines += ["[[nodes]]", f'name = "node{i}"', f'root = "nodes/node{i}"']
    for i, port in enumerate(ports, start=1):
        lines += ["[[servers]]", f'name = "s{i}"', f'node = "node{i}"', f"port = {port}"]
    names = ", ".join(f'"s{i}"' for i in range(1, len(ports) + 1))
    lines += ["[[clusters]]", 'name = "web"', f"servers = [{names}]"]
    path = d / f"domain-{len(ports)}-{'pg' if url else 'sqlite'}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def one(path: Path, batch: str) -> dict[str, Any]:
    app = App(path, build_adapters=simulated.build)
    request = RolloutRequest.of("restart", ("web",), batch=batch, retries=0,
                                shutdown_timeout=1.0)
    cpu, wall = time.process_time(), time.perf_counter()
    prepared = app.prepare(request)
    planned = time.perf_counter() - wall
    outcome = await app.start(prepared)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    journal = store_of(dm.load(path)).open(time.time)
    try:
        writes = len(journal.events(outcome.id))     # one event per committed transaction
    finally:
        journal.close()
    visits = len(prepared.plan.nodes)
    assert outcome.state == "succeeded", outcome.report.get("error")
    return {"wall": wall, "cpu": cpu, "plan": planned, "visits": visits, "writes": writes}


async def table(sizes: list[int], batches: list[str], url: str | None) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="zdt-scale-") as tmp:
        for size in sizes:
            servers, ports = await simulated.listeners(size)
            try:
                path = domain_file(Path(tmp), ports, url)
                for batch in batches:
                    r = await one(path, batch)
                    rows.append(
                        f"| {size} | {batch} | {'PostgreSQL' if url else 'SQLite'} | "
                        f"{r['wall']:.2f} | {r['cpu']:.2f} | "
                        f"{r['cpu'] / r['visits'] * 1000:.1f} | {r['plan']:.3f} | "
                        f"{r['writes']} | {r['writes'] / r['visits']:.1f} |")
                    print(rows[-1], flush=True)
            finally:
                for s in servers:
                    s.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--batches", default="1,10%")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = args.batches.split(",")
    print(f"zdt's own cost, simulated nodes (restart of every node), "
          f"{os.cpu_count()} CPUs\n\n{HEADER}", flush=True)
    asyncio.run(table(sizes, batches, None))
    if args.no_postgres:
        return
    server = Postgres()
    try:
        server.start()
        os.environ["PGPASSFILE"] = str(server.passfile)
        asyncio.run(table(sizes, batches, server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    main()

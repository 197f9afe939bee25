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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zdt import domain as dm
from zdt.adapters import Adapters, Connect
from zdt.adapters.lb import Counters, LbState
from zdt.adapters.services import ProcessState
from zdt.app import App, RolloutRequest
from zdt.domain import Server
from zdt.lab.postgres import Postgres
from zdt.result import Result
from zdt.workflow.journal import store_of

HEADER = ("| nodes | batch | journal | wall s | zdt CPU s | CPU ms per visit | plan s | "
          "journal writes | writes per visit |\n|---:|---|---|---:|---:|---:|---:|---:|---:|")


class InstantTransport:
    def __init__(self, node: str) -> None:
        self.node = node

    def path(self, remote: str) -> str:
        return remote

    async def run(self, argv: list[str], *, check: bool = True, timeout: float = 600.0,
                  input: bytes | None = None) -> Result:
        return Result(tuple(argv), 0, "", "")

    async def put(self, local: str, remote: str) -> None:
        return None

    async def unix_socket(self, remote: str) -> str:
        return remote

    async def close(self) -> None:
        return None


class InstantServices:
    def __init__(self) -> None:
        self.stopped: set[str] = set()

    async def start(self, server: Server) -> None:
        self.stopped.discard(server.name)

    async def stop(self, server: Server, timeout: float) -> bool:
        self.stopped.add(server.name)
        return True

    async def state(self, server: Server) -> ProcessState:
        if server.name in self.stopped:
            return ProcessState(False, None, "STOPPED")
        return ProcessState(True, 1000, "RUNNING")

    async def close(self) -> None:
        return None


class InstantLB:
    def __init__(self) -> None:
        self.out: set[str] = set()

    async def drain(self, servers: Sequence[Server]) -> None:
        self.out.update(s.name for s in servers)

    async def ready(self, servers: Sequence[Server]) -> None:
        self.out.difference_update(s.name for s in servers)

    async def state(self, server: Server) -> LbState:
        return LbState("drain" if server.name in self.out else "ready", "UP", 0, 0)

    async def counters(self) -> Counters | str:
        return "a simulated load balancer keeps no counters"

    async def close(self) -> None:
        return None


def simulated(domain: dm.Domain, connect: Connect) -> Adapters:
    return Adapters({n.name: InstantTransport(n.name) for n in domain.nodes},
                    InstantServices(), InstantLB())


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readline() not in (b"\r\n", b"\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    finally:
        writer.close()


async def listeners(count: int) -> tuple[list[asyncio.Server], list[int]]:
    servers = [await asyncio.start_server(_health, "127.0.0.1", 0) for _ in range(count)]
    return servers, [s.sockets[0].getsockname()[1] for s in servers]


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
    app = App(path, build_adapters=simulated)
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
            servers, ports = await listeners(size)
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

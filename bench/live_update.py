"""Benchmark: `zdt live update` of the stateful counter under steady load on one host.

    python -m bench.live_update [--updates 20] [--sizes 1024 1048576 104857600 1073741824]
                                [--shapes ka16 ka256 close16] [--modes stream segment]

For each state size and client shape: start the counter under `zdt live run`, load it at
capacity (GET /: wrk, or zdt's generator, with 16 or 256 keep-alive clients or 16
new-connection ones; the counter closes each connection after its answer, so keep-alive
clients connect again for each request) while 3 clients POST /incr, run N updates
alternating between two homes, and print the requests, the failed ones (refused, reset,
non-2xx), the blackout (median and max), the total time per update, and whether every
increment survived. Two modes: `stream` (the state is bytes the original writes on its
channel and the surrogate reads) and `segment` (the state lives in a memfd segment handed
over by reference: `zdt.live.segment`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zdt import http
from zdt.lab.load import Load, at_capacity

SHAPES = {"ka16": (16, True), "ka256": (256, True), "close16": (16, False)}

ZDT = [sys.executable, "-m", "zdt.cli"]


def zdt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZDT, *args], capture_output=True, text=True, timeout=600)


async def run_size(size: int, updates: int, shape: str, mode: str = "stream"
                   ) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="zdt-live-", dir="/tmp"))
    for v in ("v1", "v2"):
        (base / v).mkdir()
        (base / v / "VERSION").write_text(v + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url, state = f"http://127.0.0.1:{port}/", str(base / "sd")
    started = zdt("live", "run", "--name", "bench", "--listen", f"127.0.0.1:{port}", "--home",
                  str(base / "v1"), "--state-dir", state, "--detach",
                  "--max-state-bytes", str(size + (1 << 20)), "--", sys.executable,
                  "-m", "zdt.lab.counter", "--state-bytes", str(size),
                  *(["--segment"] if mode == "segment" else []))
    assert started.returncode == 0, started.stderr
    results = []
    try:
        connections, keep_alive = SHAPES[shape]
        reads = at_capacity(url, connections=connections, keep_alive=keep_alive)
        incr = Load(url + "incr", concurrency=3, rate_per_worker=100, method="POST",
                    process=True)
        async with reads, incr:
            await asyncio.sleep(0.3)
            for n in range(updates):
                home = base / ("v2" if n % 2 == 0 else "v1")
                done = await asyncio.to_thread(zdt, "live", "update", "bench", "--home-dir",
                                               str(home), "--state-dir", state, "--json",
                                               "--checkpoint-timeout", "120",
                                               "--ready-timeout", "120")
                assert done.returncode == 0, done.stderr
                results.append(json.loads(done.stdout))
            await asyncio.sleep(0.3)
        count = json.loads((await http.get(url)).body)["count"]
    finally:
        zdt("live", "stop", "bench", "--state-dir", state)
        shutil.rmtree(base, ignore_errors=True)
    blackouts = [r["blackout_ms"] for r in results]
    return {"size": size, "updates": len(results),
            "connections": reads.stats.requests + incr.stats.requests,
            "failed": reads.stats.failed + incr.stats.failed,
            "errors": {**reads.stats.errors, **incr.stats.errors},
            "blackout_median": statistics.median(blackouts), "blackout_max": max(blackouts),
            "total_median": statistics.median(r["total_ms"] for r in results),
            "state_kept": count == incr.stats.requests - incr.stats.failed}


def human(size: int) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= factor:
            return f"{size // factor} {unit}"
    return f"{size} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1024, 1 << 20, 100 << 20, 1 << 30])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["ka16"])
    parser.add_argument("--modes", nargs="+", choices=["stream", "segment"],
                        default=["stream", "segment"])
    args = parser.parse_args()
    print("| state | mode | clients | updates | requests | failed | blackout median ms | "
          "blackout max ms | total median ms | every increment kept |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for size, mode, shape in itertools.product(args.sizes, args.modes, args.shapes):
        r = asyncio.run(run_size(size, args.updates, shape, mode))
        print(f"| {human(size)} | {mode} | {shape} | {r['updates']} | {r['connections']:,} | "
              f"{r['failed']} | {r['blackout_median']:.1f} | {r['blackout_max']:.1f} | "
              f"{r['total_median']:.0f} | {'yes' if r['state_kept'] else 'NO'} |", flush=True)
        if r["errors"]:
            print(f"  errors: {r['errors']}")


if __name__ == "__main__":
    main()

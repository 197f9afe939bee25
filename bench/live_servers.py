"""Benchmark: `zdt live update` of servers nobody here wrote, handed over by overlap.

    python -m bench.live_servers [--updates 10]

gunicorn (2 sync workers, LISTEN_FDS, READY=1) and uvicorn (`--fd 3`, ready by --health)
running `zdt.lab.webapp`, and lighttpd serving the home's files (socket activation, ready
by --health, `--stop-signal INT`: its graceful stop), each updated N times (alternating
two homes) under load at capacity: 16 keep-alive clients for gunicorn (its workers close
each connection after the answer), 16 new-connection clients for uvicorn and lighttpd
(they close idle keep-alive connections when they stop). Printed: requests, failed, the
overlap (both accepting, until the original drained and exited) and the total per
update, medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zdt.lab.load import at_capacity
from zdt.lab.recipes import RECIPES

ZDT = [sys.executable, "-m", "zdt.cli"]
CLIENTS = {"gunicorn": True, "uvicorn": False, "lighttpd": False}   # keep-alive or not


def zdt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZDT, *args], capture_output=True, text=True, timeout=600)


async def run(name: str, updates: int) -> dict[str, Any]:
    recipe, keep_alive = RECIPES[name], CLIENTS[name]
    base = Path(tempfile.mkdtemp(prefix="zdt-live-", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe.homes(base, port)
    url, state = f"http://127.0.0.1:{port}/{recipe.page}", str(base / "sd")
    started = zdt("live", "run", "--name", name, "--listen", f"127.0.0.1:{port}", "--home",
                  str(base / "v1"), "--state-dir", state, "--detach", *recipe.run_args(port))
    assert started.returncode == 0, started.stderr
    results = []
    try:
        async with at_capacity(url, connections=16, keep_alive=keep_alive) as load:
            await asyncio.sleep(0.3)
            for n in range(updates):
                home = base / ("v2" if n % 2 == 0 else "v1")
                done = await asyncio.to_thread(zdt, "live", "update", name, "--home-dir",
                                               str(home), "--state-dir", state, "--json")
                assert done.returncode == 0, done.stderr
                results.append(json.loads(done.stdout))
            await asyncio.sleep(0.3)
    finally:
        zdt("live", "stop", name, "--state-dir", state)
        shutil.rmtree(base, ignore_errors=True)
    return {"requests": load.stats.requests, "failed": load.stats.failed,
            "errors": dict(load.stats.errors),
            "overlap": statistics.median(r["overlap_ms"] for r in results),
            "total": statistics.median(r["total_ms"] for r in results),
            "modes": sorted({r["mode"] for r in results})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10)
    args = parser.parse_args()
    print("| server | clients | updates | mode | requests | failed | overlap median ms | "
          "total median ms |\n|---|---|---:|---|---:|---:|---:|---:|")
    for name, keep_alive in CLIENTS.items():
        r = asyncio.run(run(name, args.updates))
        print(f"| {name} | {'ka16' if keep_alive else 'close16'} | {args.updates} | "
              f"{', '.join(r['modes'])} | {r['requests']:,} | {r['failed']} | "
              f"{r['overlap']:.0f} | {r['total']:.0f} |", flush=True)
        if r["errors"]:
            print(f"  errors: {r['errors']}")


if __name__ == "__main__":
    main()

"""Benchmark: the metric gate on a real sandbox under load at capacity through HAProxy.

    python -m bench.metric_gate [--nodes 3]

With the default [analysis] (a 10 s window, a check every 2 s, 2 failed checks fail the
visit), home rollouts of: the degraded release (every 5th request answers 500), the slow
one (every answer 25 ms late), and the good v2 with the gate and without it. Printed per
rollout: its end state, requests, failed requests as the clients counted them, the 5xx
the report counts for the judged node, the checks to the verdict (at most), the judged
servers' figure against their baseline (the failing one, else the response time; HAProxy's
rtime is in whole ms), and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import measured
from zdt.app import App, RolloutRequest
from zdt.lab import sandbox

HEADER = ("| rollout | state | requests | failed | 5xx counted | checks to the verdict | "
          "judged / baseline | wall s |\n|---|---|---:|---:|---:|---:|---|---:|")
INTERVAL = 2.0     # the default [analysis] interval


def judged(verdict: dict[str, Any]) -> str:
    """The last check's failing measurement (or its response time) against its baseline."""
    last = verdict["checks"][-1]["measurements"]
    m = next((m for m in last if m["ok"] is False),
             next(m for m in last if m["name"] == "response time ms"))
    base = "-" if m["baseline"] is None else f"{m['baseline']:.3g}"
    value = "-" if m["value"] is None else f"{m['value']:.3g}"
    return f"{m['name']} {value} / {base}"


def row(label: str, r: dict[str, Any]) -> str:
    verdicts = r["analysis"]
    counted = sum((v["served"] or {}).get("http_5xx", 0) for v in verdicts)
    checks = max((len(v["checks"]) for v in verdicts), default=0)
    return (f"| {label} | {r['state']} | {r['requests']} | {r['failed']} | "
            f"{counted if verdicts else '-'} | "
            f"{f'{checks} ({checks * INTERVAL:g} s)' if verdicts else '-'} | "
            f"{judged(verdicts[0]) if verdicts else '-'} | {r['wall']:.2f} |")


async def rounds(info: dict[str, Any], runner: App) -> list[str]:
    def home(version: str, **options: Any) -> RolloutRequest:
        return RolloutRequest.of("home", ("domain",), shutdown_timeout=10.0,
                                 archive=info["archives"][version], **options)

    rows = []
    for label, version in (("degraded: 20 % 500s", "degraded"),
                           ("degraded: 25 ms late", "degraded-slow")):
        rows.append(row(label, await measured(info, lambda v=version: runner.start(home(v)))))
    for label, gated in (("v2, gate on", True), ("v2, gate off", False)):
        up = await measured(info, lambda g=gated: runner.start(home("v2", analysis=g)))
        rows.append(row(label, up))
        await runner.revert(up["wid"])
    return rows


def bench(nodes: int) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="zdt-bench-", dir="/tmp"))
    info = sandbox.up(base / "sb", nodes, 1, admin=False)
    domain = Path(info["domain"])
    domain.write_text(domain.read_text() + "\n[analysis]\n")      # the defaults
    try:
        return asyncio.run(rounds(info, App(domain)))
    finally:
        sandbox.down(base / "sb")
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    args = p.parse_args()
    print(f"metric gate, {args.nodes} nodes × 1 server, default [analysis], under wrk at "
          "capacity (16 keep-alive connections)")
    print(HEADER)
    for line in bench(args.nodes):
        print(line)


if __name__ == "__main__":
    main()

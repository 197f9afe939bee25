"""What the benchmarks share: run a workflow under load at the machine's capacity (16
keep-alive clients: wrk when installed) and read back its figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from zdt import domain as dm
from zdt import report
from zdt.app import Outcome
from zdt.lab.load import at_capacity
from zdt.workflow.journal import store_of


async def measured(info: dict[str, Any], work: Callable[[], Awaitable[Outcome]]) -> dict[str, Any]:
    """Run work() (which returns a workflow id) under load, 0.5 s of load on each side."""
    async with at_capacity(info["lb_url"], connections=16, keep_alive=True) as load:
        await asyncio.sleep(0.5)
        began = time.monotonic()
        wid = (await work()).id
        wall = time.monotonic() - began
        await asyncio.sleep(0.5)
    journal = store_of(dm.load(Path(info["domain"]))).open(time.time)
    try:
        summary = report.workflow(journal, wid)
    finally:
        journal.close()
    visits = summary["nodes"]
    return {"wid": wid, "state": summary["state"], "requests": load.stats.requests,
            "failed": load.stats.failed, "wall": wall,
            "out": [v["out_of_rotation"] for v in visits if v["out_of_rotation"] is not None],
            "revert_out": [v["revert_out_of_rotation"] for v in visits
                           if v["revert_out_of_rotation"] is not None],
            "overhead": [v["overhead"] for v in visits], "analysis": summary["analysis"],
            "steps": summary["steps"]}

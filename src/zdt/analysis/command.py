"""A program on the control host as a metric provider: it prints one number per check.

The argv is run as given (no shell) with `$node`, `$servers`, `$baseline` and `$interval`
replaced in its items, and with ZDT_NODE, ZDT_SERVERS (comma-separated LB names),
ZDT_BASELINE, ZDT_INTERVAL (seconds) and ZDT_WORKFLOW in its environment. Its last line of
output is the number; no output is no data (no verdict); a non-zero exit, a timeout or
text that is not a number fails the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os

from zdt.analysis import Measurement, Subject, bounded, failure, substitute
from zdt.domain.analysis_config import CommandMetric

OUTPUT_LIMIT = 64 * 1024


class CommandProvider:
    def __init__(self, metric: CommandMetric) -> None:
        self.metric = metric

    async def begin(self, subject: Subject) -> None:
        return None

    async def measure(self, subject: Subject) -> list[Measurement]:
        m = self.metric
        try:
            value = await run(m, subject)
        except ValueError as exc:
            return [failure(m.name, str(exc))]
        return [bounded(m.name, value, m.min, m.max)]


async def run(metric: CommandMetric, subject: Subject) -> float | None:
    argv = [substitute(a, subject.values()) for a in metric.argv]
    env = {**os.environ, "ZDT_NODE": subject.node, "ZDT_SERVERS": ",".join(subject.servers),
           "ZDT_BASELINE": ",".join(subject.baseline), "ZDT_INTERVAL": f"{subject.interval:g}",
           "ZDT_WORKFLOW": subject.workflow}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise ValueError(f"{argv[0]}: cannot run: {exc.strerror}") from exc
    try:
        async with asyncio.timeout(metric.timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ValueError(f"{argv[0]}: no answer after {metric.timeout:g} s") from None
    if proc.returncode != 0:
        tail = err[-OUTPUT_LIMIT:].decode(errors="replace").strip()[-300:]
        raise ValueError(f"{argv[0]}: exit status {proc.returncode}"
                         + (f": {tail}" if tail else ""))
    lines = out[-OUTPUT_LIMIT:].decode(errors="replace").strip().splitlines()
    if not lines:
        return None
    try:
        value = float(lines[-1].strip())
    except ValueError:
        raise ValueError(f"{argv[0]}: printed {lines[-1].strip()[:80]!r}, not a number"
                         ) from None
    return None if math.isnan(value) else value

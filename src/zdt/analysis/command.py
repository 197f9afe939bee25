"""A program on the control host as a metric provider: it prints one number per check.

The argv is run as given (no shell) with `$node`, `$servers`, `$baseline` and `$interval`
replaced in its items, and with ZDT_NODE, ZDT_SERVERS (comma-separated LB names),
ZDT_BASELINE, ZDT_INTERVAL (seconds) and ZDT_WORKFLOW in its environment. Its last line of
output is the number; no output is no data (no verdict); a non-zero exit, a timeout or
text that is not a number fails the check.
"""

from __future__ import annotations

import math

from zdt.adapters.transport.local import LocalTransport
from zdt.analysis import Measurement, Subject, bounded, failure, substitute
from zdt.domain.analysis_config import CommandMetric
from zdt.errors import ZdtError

OUTPUT_LIMIT = 64 * 1024
ENV = "/usr/bin/env"
HERE = LocalTransport("the control host")


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
    """Run the program as the local transport runs any command: in a session of its own,
    so a timeout or a cancellation kills it and everything it started."""
    argv = [substitute(a, subject.values()) for a in metric.argv]
    env = [f"ZDT_NODE={subject.node}", f"ZDT_SERVERS={','.join(subject.servers)}",
           f"ZDT_BASELINE={','.join(subject.baseline)}",
           f"ZDT_INTERVAL={subject.interval:g}", f"ZDT_WORKFLOW={subject.workflow}"]
    try:       # env(1) sets the variables and execs the program: no shell in between
        r = await HERE.run([ENV, *env, *argv], check=False, timeout=metric.timeout)
    except ZdtError as exc:
        raise ValueError(str(exc).removeprefix(f"{HERE.node}: ").replace(ENV, argv[0], 1)
                         ) from None
    if r.returncode != 0:
        tail = r.stderr.strip()[-300:]
        raise ValueError(f"{argv[0]}: exit status {r.returncode}" + (f": {tail}" if tail else ""))
    lines = r.stdout[-OUTPUT_LIMIT:].strip().splitlines()
    if not lines:
        return None
    try:
        value = float(lines[-1].strip())
    except ValueError:
        raise ValueError(f"{argv[0]}: printed {lines[-1].strip()[:80]!r}, not a number"
                         ) from None
    return None if math.isnan(value) else value   # inf: bounded() fails it

"""The gate's providers built from [analysis], and what preview checks of them: the LB
keeps counters zdt can read, each Prometheus answers its query, each command can run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from zdt.adapters.lb import Counts, LoadBalancer
from zdt.analysis import Provider, Subject
from zdt.analysis.command import CommandProvider
from zdt.analysis.lb import LbProvider
from zdt.analysis.prometheus import PrometheusProvider, ask
from zdt.domain.analysis_config import Analysis, PrometheusMetric
from zdt.errors import ZdtError

Before = tuple[Mapping[str, Counts], Mapping[str, Counts]]


def providers(settings: Analysis, balancer: LoadBalancer,
              before: Before | None = None) -> list[Provider]:
    found: list[Provider] = [LbProvider(balancer, settings, before)] \
        if settings.lb_counters else []
    found += [PrometheusProvider(m) for m in settings.prometheus]
    found += [CommandProvider(m) for m in settings.command]
    return found


async def preflight(settings: Analysis, balancer: LoadBalancer, subject: Subject
                    ) -> list[dict[str, Any]]:
    """One {name, ok, detail} per source of the gate, asked as the first visit will ask."""
    found = []
    if settings.lb_counters:
        try:
            reading = await balancer.counters()
        except ZdtError as exc:
            reading = f"cannot read the load balancer's counters: {exc}"
        found.append({"name": "analysis: load balancer counters",
                      "ok": not isinstance(reading, str),
                      "detail": f"analysis: {reading} (judge by Prometheus or a command "
                      "with lb_counters = false)" if isinstance(reading, str) else "readable"})
    for m in settings.prometheus:
        found.append(await _asked(m, subject))
    for c in settings.command:
        runnable = os.access(c.argv[0], os.X_OK) and os.path.isfile(c.argv[0])
        found.append({"name": f"analysis: {c.name}", "ok": runnable,
                      "detail": "runnable" if runnable else
                      f"analysis: {c.name}: {c.argv[0]} is not an executable file on "
                      "this machine"})
    return found


async def _asked(m: PrometheusMetric, subject: Subject) -> dict[str, Any]:
    """A query must give a number now, NaN included (a ratio of no requests yet): an empty
    answer means no series matched, and the gate would never see anything."""
    name = f"analysis: {m.name}"
    try:
        value = await ask(m, PrometheusProvider(m).query(subject))
    except ValueError as exc:
        return {"name": name, "ok": False, "detail": f"{name}: {exc}"}
    if value is None:
        return {"name": name, "ok": False, "detail": f"{name}: it gives no number now (no "
                "series matched: check its labels; a counter that may not exist yet reads "
                "`… or vector(0)`)"}
    idle = " (no traffic to judge yet)" if math.isnan(value) else ""
    return {"name": name, "ok": True, "detail": f"{m.url} answers {value:g} now{idle}"}

"""What preview shows of a prepared request beside its checks: the plan per node visit,
the capacity guard's arithmetic, and the metric gate after each ready."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from zdt.steps.analysis import settings_of
from zdt.workflow import batches
from zdt.workflow.plan import Plan
from zdt.workflow.runner import Prepared


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per node visit: its batch (from 1), node, servers and steps."""
    batch_of = {g: n for n, b in enumerate(plan.batches, start=1) for g in b}
    return [{"batch": batch_of.get(g, g + 1), "node": node,
             "servers": sorted({x for s in plan.for_group(g) for x in s.servers}),
             "steps": [s.name for s in plan.for_group(g)]} for g, node in enumerate(plan.nodes)]


def analysis_of(p: Prepared) -> dict[str, Any] | None:
    """The metric gate the plan runs after each ready (None: no gate)."""
    if not any(s.name == "analysis" for s in p.plan.steps):
        return None
    a = settings_of(p.domain)
    sources = (["load balancer counters"] if a.lb_counters else []) + \
        [f"prometheus {m.name}" for m in a.prometheus] + [f"command {m.name}" for m in a.command]
    line = (f"after each ready, {a.checks} check(s) of {a.interval:g} s; {a.failure_limit} "
            f"failed fail the visit; sources: {', '.join(sources)}")
    if a.lb_counters:
        line += (f" (5xx and error ratios at most {a.max_5xx_ratio:g} and "
                 f"{a.max_error_ratio:g} above the servers not yet updated, response time "
                 f"at most {a.max_rtime_ratio:g}× theirs or under {a.min_rtime_ms:g} ms)")
    return {**a.model_dump(mode="json"), "checks": a.checks, "sources": sources, "line": line}


def capacity_of(p: Prepared) -> dict[str, Any]:
    """The batches asked for and the capacity guard's arithmetic, cluster by cluster."""
    minimum = batches.parse_minimum(p.request.min_in_service)
    return {"batch": p.request.batch, "min_in_service": p.request.min_in_service,
            "batches": len(p.plan.batches),
            "largest_batch": max((len(b) for b in p.plan.batches), default=0),
            "clusters": [{**asdict(b), "line": b.line(minimum)} for b in p.plan.budgets]}

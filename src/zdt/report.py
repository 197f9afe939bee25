"""What happened, read back from the journal: per step, per node visit, per workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zdt.journal import Journal, StepRecord, WorkflowRecord

# Steps whose time is spent waiting on something outside zdt (the LB, a process, a URL).
WAITING_STEPS = frozenset({"drain", "stop", "start", "health", "ready"})


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def workflow(journal: Journal, wid: str) -> dict[str, Any]:
    """The object `zdt status ID --json` and a rollout's `--json` print."""
    wf = journal.workflow(wid)
    steps = journal.steps(wid)
    events = journal.events(wid)
    return {
        **brief(wf),
        "domain": wf.domain,
        "request": wf.request,
        "ended": iso(wf.ended),
        "duration": _span(wf.started, wf.ended),
        "error": wf.error,
        "steps": [_step(s) for s in steps],
        "nodes": node_visits(steps, events),
        "facts": [{"step": e["step"], "name": e["message"], **(e["data"] or {})}
                  for e in events if e["kind"] == "facts"],
    }


def brief(wf: WorkflowRecord) -> dict[str, Any]:
    """The object `zdt history --json` lists."""
    return {"id": wf.id, "kind": wf.kind, "state": wf.state, "started": iso(wf.started),
            "created": iso(wf.created), "targets": wf.request.get("targets")}


def _step(s: StepRecord) -> dict[str, Any]:
    return {"index": s.index, "node": s.node, "name": s.name, "servers": list(s.servers),
            "state": s.state, "attempts": s.attempts, "started": iso(s.started),
            "ended": iso(s.ended), "duration": _span(s.started, s.ended), "error": s.error}


def node_visits(steps: list[StepRecord], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node visit: wall time, time out of rotation, and zdt's own overhead.

    Out of rotation = from the first `running` of its drain to the `done` of its ready.
    Overhead = wall time of the visit minus the time inside its steps' attempts, i.e. what
    zdt spends between steps (journal commits, bookkeeping), not waiting on the node.
    """
    spans = _attempt_spans(events)
    visits = []
    for group in sorted({s.group for s in steps}):
        mine = [s for s in steps if s.group == group]
        marks = [t for s in mine for t in spans.get(s.index, [])]
        if not marks:
            continue
        start = min(a for a, _ in marks)
        end = max(b for _, b in marks)
        inside = sum(b - a for s in mine if s.name in WAITING_STEPS
                     for a, b in spans.get(s.index, []))
        out = _out_of_rotation(mine, spans)
        servers = sorted({x for s in mine for x in s.servers})
        visits.append({"node": mine[0].node, "servers": servers,
                       "wall": round(end - start, 4),
                       "out_of_rotation": None if out is None else round(out, 4),
                       "overhead": round(max(0.0, end - start - inside), 4)})
    return visits


def _out_of_rotation(mine: list[StepRecord], spans: dict[int, list[tuple[float, float]]]
                     ) -> float | None:
    drain = next((s for s in mine if s.name == "drain"), None)
    ready = next((s for s in mine if s.name == "ready"), None)
    if drain is None or ready is None or not spans.get(drain.index) or not spans.get(ready.index):
        return None
    return spans[ready.index][-1][1] - spans[drain.index][0][0]


def _attempt_spans(events: list[dict[str, Any]]) -> dict[int, list[tuple[float, float]]]:
    """step index → [(start, end)] of each forward attempt, from the step events."""
    open_: dict[int, float] = {}
    spans: dict[int, list[tuple[float, float]]] = {}
    for e in events:
        if e["kind"] != "step" or e["step"] is None:
            continue
        if e["message"] == "running":
            open_[e["step"]] = e["ts"]
        elif e["message"] in ("done", "failed") and e["step"] in open_:
            spans.setdefault(e["step"], []).append((open_.pop(e["step"]), e["ts"]))
    return spans


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 4)

"""What happened, read back from the journal: per step, per node visit, per workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zdt import witness
from zdt.workflow.journal import Journal, StepRecord, WorkflowRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def workflow(journal: Journal, wid: str) -> dict[str, Any]:
    """The object `zdt status ID --json` and a rollout's `--json` print."""
    with journal.snapshot():
        wf = journal.workflow(wid)
        steps = journal.steps(wid)
        events = journal.events(wid)
    batch_of = visit_batches(steps)
    return {
        **brief(wf),
        "domain": wf.domain,
        "request": wf.request,
        "ended": iso(wf.ended),
        "duration": _span(wf.started, wf.ended),
        "error": wf.error,
        "steps": [_step(s, batch_of[s.group]) for s in steps],
        "nodes": node_visits(steps, events),
        "facts": [{"step": e["step"], "name": e["message"], **(e["data"] or {})}
                  for e in events if e["kind"] == "facts"],
        "warnings": [e["message"] for e in events if e["kind"] == "warning"],
        "notes": [{"message": e["message"], **(e["data"] or {})} for e in events
                  if e["kind"] == "note"],
        "estimate": next(({**(e["data"] or {}), "basis": e["message"]} for e in events
                          if e["kind"] == "estimate"), None),
        "analysis": [{**(e["data"] or {}), "sentence": e["message"]} for e in events
                     if e["kind"] == "analysis"],
        "witness": witness.summarize(events),
    }


def brief(wf: WorkflowRecord) -> dict[str, Any]:
    """The object `zdt history --json` lists."""
    return {"id": wf.id, "kind": wf.kind, "state": wf.state, "started": iso(wf.started),
            "created": iso(wf.created), "ended": iso(wf.ended),
            "duration": _span(wf.started, wf.ended), "targets": wf.request.get("targets")}


def _step(s: StepRecord, batch: int) -> dict[str, Any]:
    """A step as reports show it: its node visit and that visit's batch (from 1)."""
    return {"index": s.index, "visit": s.group, "batch": batch, "node": s.node,
            "name": s.name, "servers": list(s.servers),
            "state": s.state, "attempts": s.attempts, "started": iso(s.started),
            "ended": iso(s.ended), "duration": _span(s.started, s.ended), "error": s.error}


def node_visits(steps: list[StepRecord], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node visit: wall time, time out of rotation, zdt's own overhead, revert time.

    Out of rotation = from the first `running` of its drain to the `done` of its ready (or,
    when the visit was reverted, to the revert of its drain). Overhead = the visit's wall
    time minus the time inside its steps' attempts and the retry delays between them: what
    zdt spends between steps (journal commits, bookkeeping), not waiting on the node.
    """
    forward = _attempt_spans(events, ("running", ("done", "failed")))
    backward = _attempt_spans(events, ("reverting", ("reverted", "failed")))
    visits = []
    batch_of = visit_batches(steps)
    done: dict[int, float] = {}          # step → when it was first done
    for e in events:
        if e["kind"] == "step" and e["message"] == "done" and e["step"] is not None:
            done.setdefault(e["step"], e["ts"])
    by_visit: dict[int, list[StepRecord]] = {}
    for s in steps:
        by_visit.setdefault(s.group, []).append(s)
    for group, mine in sorted(by_visit.items()):
        spans = [span for s in mine for span in forward.get(s.index, [])]
        if not spans:
            continue
        start, end = min(a for a, _ in spans), max(b for _, b in spans)
        inside = sum(b - a for s in mine for a, b in _covered(forward.get(s.index, [])))
        undo = [b - a for s in mine for a, b in backward.get(s.index, [])]
        out = _out_of_rotation(mine, forward, backward, done)
        servers = sorted({x for s in mine for x in s.servers})
        visits.append({"visit": group, "batch": batch_of[group], "node": mine[0].node,
                       "servers": servers,
                       "wall": round(end - start, 4),
                       "out_of_rotation": None if out is None else round(out, 4),
                       "overhead": round(max(0.0, end - start - inside), 4),
                       "completed": all(s.index in done for s in mine),
                       "revert": round(sum(undo), 4) if undo else None,
                       "revert_out_of_rotation": _revert_out(mine, backward)})
    return visits


def visit_batches(steps: list[StepRecord]) -> dict[int, int]:
    """Each node visit's batch, counted from 1 over the batches that hold a visit's own
    steps (the before- and after-update hooks are batches of their own, not counted)."""
    own: dict[int, int] = {}
    for s in sorted(steps, key=lambda s: s.name in ("hook:before-update",
                                                   "hook:after-update")):
        own.setdefault(s.group, s.batch)
    numbers = {b: n for n, b in enumerate(sorted(set(own.values())), start=1)}
    return {g: numbers[b] for g, b in own.items()}


def _revert_out(mine: list[StepRecord], backward: dict[int, list[tuple[float, float]]]
                ) -> float | None:
    """A completed visit's revert takes the node out at ready's revert (a drain) and puts
    it back at drain's revert (a ready)."""
    drain = next((s for s in mine if s.name == "drain"), None)
    ready = next((s for s in mine if s.name == "ready"), None)
    if drain is None or ready is None or not backward.get(drain.index) \
            or not backward.get(ready.index):
        return None
    return round(backward[drain.index][-1][1] - backward[ready.index][0][0], 4)


def _covered(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A step's attempts and the retry delays between them, as one span."""
    return [(spans[0][0], spans[-1][1])] if spans else []


def _out_of_rotation(mine: list[StepRecord], forward: dict[int, list[tuple[float, float]]],
                     backward: dict[int, list[tuple[float, float]]],
                     done: dict[int, float]) -> float | None:
    drain = next((s for s in mine if s.name == "drain"), None)
    ready = next((s for s in mine if s.name == "ready"), None)
    if drain is None or not forward.get(drain.index):
        return None
    began = forward[drain.index][0][0]
    back_in = done.get(ready.index) if ready is not None else None
    if back_in is not None:
        return back_in - began
    if backward.get(drain.index):
        return backward[drain.index][-1][1] - began
    return None


def _attempt_spans(events: list[dict[str, Any]], marks: tuple[str, tuple[str, ...]]
                   ) -> dict[int, list[tuple[float, float]]]:
    """step index → [(start, end)] of each attempt, from the step events."""
    opening, closing = marks
    open_: dict[int, float] = {}
    spans: dict[int, list[tuple[float, float]]] = {}
    for e in events:
        if e["kind"] != "step" or e["step"] is None:
            continue
        if e["message"] == opening:
            open_[e["step"]] = e["ts"]
        elif e["message"] in closing and e["step"] in open_:
            spans.setdefault(e["step"], []).append((open_.pop(e["step"]), e["ts"]))
    return spans


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 4)

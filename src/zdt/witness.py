"""The load balancer's witness: its own counters over a workflow and each node visit.

A client counting its failures proves only what that client saw. The LB sees every
request of the production traffic, so zdt reads the LB's counters (requests, connection and
response errors, 5xx, retries, redispatches, aborts, the queue's high-water mark) when a
run of the workflow starts (a rollout, a resume, a revert), just before each node visit's
drain, just after its ready, and when the run ends. Each reading is journaled (an event
of kind "witness") before the next action, so the differences survive a crash of zdt:

    run:    start ──────────────────────────────────────────────── end
    visits:        drain(node1) ── ready(node1)   drain(node2) ── ready(node2)

A reading that fails (the LB's socket gone) is journaled as such and never fails a step;
an LB that keeps no counters (open-source nginx, a command LB) says so once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zdt.errors import ZdtError
from zdt.journal import Journal
from zdt.lb import COUNT_FIELDS, Counters, Counts, LoadBalancer

# What a client would have seen fail. Retries and redispatches are errors the LB hid (the
# sandbox's HAProxy makes none); client aborts are the clients' own doing.
ERROR_FIELDS = ("connection_errors", "response_errors", "http_5xx", "server_aborts")


@dataclass
class Witness:
    """Reads and journals the LB's counters for one run of one workflow."""

    lb: LoadBalancer
    journal: Journal
    wid: str
    action: str = "run"            # run | resume | revert
    fail_on_errors: bool = False   # --fail-on-lb-errors: errors in a visit fail its ready
    _taken: dict[tuple[str, int | None], dict[str, Any]] = field(default_factory=dict)

    async def mark(self, at: str, *, node: str | None = None, group: int | None = None,
                   out: Sequence[str] = ()) -> dict[str, Any]:
        """Read the counters and journal them; returns what was journaled."""
        data: dict[str, Any] = {"at": at, "action": self.action, "node": node,
                                "group": group, "out": list(out)}
        try:
            reading = await self.lb.counters()
        except ZdtError as exc:
            data["error"] = str(exc)
        else:
            if isinstance(reading, str):
                data["unsupported"] = reading
            else:
                data["counters"] = as_data(reading)
        self.journal.event(self.wid, "witness", at, data=data)
        self._taken[at, group] = data
        return data

    def visit(self, group: int) -> dict[str, Any] | None:
        """The latest visit window of `group` (its drain to its ready): from this run's
        readings, or from the journal when the drain was another run's (before a crash)."""
        begin, end = self._taken.get(("drain", group)), self._taken.get(("ready", group))
        if begin is not None and end is not None:
            return window(begin, end)
        return next((v for v in reversed(visits(self.journal.events(self.wid)))
                     if v["group"] == group), None)


def as_data(c: Counters) -> dict[str, Any]:
    return {"source": c.source, "backend": asdict(c.backend),
            "servers": {k: asdict(v) for k, v in c.servers.items()},
            "in_rotation": list(c.in_rotation)}


def _counts(d: dict[str, int]) -> Counts:
    return Counts(**{k: int(v) for k, v in d.items() if k in Counts.__dataclass_fields__})


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The backend's (and each server's) counts between two readings. Counters that went
    back (the LB restarted, or someone cleared them) make the window unknown: `reset`."""
    a, b = _counts(before["backend"]), _counts(after["backend"])
    delta = {f: getattr(b, f) - getattr(a, f) for f in COUNT_FIELDS}
    if any(v < 0 for v in delta.values()):
        return {"reset": True}
    servers = {}
    for name, now in after.get("servers", {}).items():
        was = _counts(before.get("servers", {}).get(name, {}))
        n = _counts(now)
        servers[name] = {f: max(0, getattr(n, f) - getattr(was, f)) for f in COUNT_FIELDS}
    return {**delta, "errors": sum(delta[f] for f in ERROR_FIELDS),
            "queue_max": b.queue_max, "queue_max_rose": b.queue_max > a.queue_max,
            "servers": servers}


def _marks(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**(e["data"] or {}), "ts": e["ts"]} for e in events if e["kind"] == "witness"]


def runs(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run (start to end) with its counts; a run zdt did not finish (killed) counts
    to its last reading and says `complete: false`."""
    marks, out = _marks(events), []
    for i, m in enumerate(marks):
        if m["at"] != "start":
            continue
        later = marks[i + 1:]
        nxt = next((j for j, x in enumerate(later) if x["at"] == "start"), len(later))
        mine = later[:nxt]
        end = next((x for x in mine if x["at"] == "end"), None)
        last = end or next((x for x in reversed(mine) if "counters" in x), None)
        run = {"action": m["action"], "complete": end is not None}
        if "counters" in m and last is not None and "counters" in last:
            run.update(difference(m["counters"], last["counters"]))
        else:
            bad = next((x for x in (m, last) if x is not None and "counters" not in x), m)
            run["unavailable"] = bad.get("unsupported") or bad.get("error") or "no reading"
        out.append(run)
    return out


def visits(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each node visit's window: from the reading before its drain to the one after its
    ready, with the share of the backend's servers left in rotation while it was out."""
    out, opened = [], {}
    for m in _marks(events):
        if m["at"] == "drain" and m.get("group") is not None:
            opened[m["group"]] = m
        elif m["at"] == "ready" and m.get("group") in opened:
            out.append(window(opened.pop(m["group"]), m))
    return out


def window(begin: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """One node visit from the readings at its drain and at its ready."""
    visit: dict[str, Any] = {"group": end["group"], "node": end["node"],
                             "out": begin.get("out", [])}
    if "counters" in begin and "counters" in end:
        c = begin["counters"]
        left = [s for s in c["in_rotation"] if s not in visit["out"]]
        diff = difference(c, end["counters"])
        per_server = diff.pop("servers", {})
        visit.update(diff, in_rotation=len(left), backend_servers=len(c["servers"]),
                     error_servers={k: sum(v[f] for f in ERROR_FIELDS)
                                    for k, v in per_server.items()
                                    if any(v[f] for f in ERROR_FIELDS)})
    return visit


def summarize(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The witness of a workflow: its runs added up, and its visits; None if never read."""
    rs = runs(events)
    if not rs:
        return None
    measured = [r for r in rs if "unavailable" not in r and not r.get("reset")]
    source = next((m["counters"]["source"] for m in _marks(events) if "counters" in m), None)
    summary: dict[str, Any] = {"source": source, "runs": rs, "visits": visits(events)}
    if not measured:
        summary["unavailable"] = next((r.get("unavailable") for r in rs
                                       if r.get("unavailable")), "the counters were reset")
        return summary
    for f in (*COUNT_FIELDS, "errors"):
        summary[f] = sum(r[f] for r in measured)
    summary["complete"] = len(measured) == len(rs) and all(r["complete"] for r in rs)
    summary["queue_max"] = max(r["queue_max"] for r in measured)
    summary["queue_max_rose"] = any(r["queue_max_rose"] for r in measured)
    summary["error_visits"] = [v["node"] for v in summary["visits"] if v.get("errors")]
    return summary


def sentence(w: dict[str, Any]) -> str:
    """"HAProxy backend app saw 81,604 requests during this workflow: 0 connection errors,
    0 response errors, 0 5xx, 0 aborted by a server"."""
    if "unavailable" in w:
        return f"no witness from the load balancer: {w['unavailable']}"
    text = (f"{w['source']} saw {w['requests']:,} requests during this workflow: "
            f"{w['connection_errors']} connection errors, {w['response_errors']} response "
            f"errors, {w['http_5xx']} 5xx, {w['server_aborts']} aborted by a server")
    hidden = w["retries"] + w["redispatches"]
    if hidden:
        text += f"; {w['retries']} retried and {w['redispatches']} redispatched by the LB"
    if w["error_visits"]:
        text += " (errors while " + ", ".join(w["error_visits"]) + " was out)"
    if not w["complete"]:
        text += " (a run of zdt ended without its last reading: counted to the one before)"
    return text

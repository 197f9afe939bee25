"""The load balancer's witness: its own counters over a workflow and each node visit.

A client counting its failures proves only what that client saw. The LB sees every
request of the production traffic, so zdt reads the LB's counters (requests, connection and
response errors, 5xx, retries, redispatches, aborts, the queue's high-water mark) when a
run of the workflow starts (a rollout, a resume, a revert), just before each node visit's
drain, just after its ready, and when the run ends. Each reading is journaled (an event
of kind "witness") before the next action, so the differences survive a crash of zdt:

    run:    start ──────────────────────────────────────────────── end
    visits:        drain(node1) ── ready(node1)   drain(node2) ── ready(node2)

A reading that fails (the LB's socket gone) is journaled as such and never fails a step
(but for --fail-on-lb-errors, which then cannot tell); an LB that keeps no counters
(nginx without zdt's Lua module, a command LB) says so in each reading.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zdt.adapters.lb import COUNT_FIELDS, Counters, Counts, LoadBalancer
from zdt.errors import PreconditionError, ZdtError
from zdt.workflow.journal import Journal

# Requests a client saw fail, each counted once: a 5xx answer (the LB's own 502/503 for a
# server it could not connect to or that broke off before its head are among them: HAProxy
# counts those in hrsp_5xx, zdt's nginx module too), or an answer a server cut off after
# its head (srv_abrt). Connection and response errors are the causes, shown beside it; the
# backend's eresp also counts clients hanging up, so it is not a failure by itself.
# Retries and redispatches are errors the LB hid (the sandbox's HAProxy makes none).
ERROR_FIELDS = ("http_5xx", "server_aborts")


@dataclass
class Witness:
    """Reads and journals the LB's counters for one run of one workflow."""

    lb: LoadBalancer
    journal: Journal
    wid: str
    action: str = "run"            # run | resume | revert
    fail_on_errors: bool = False   # --fail-on-lb-errors: errors in a visit fail its ready
    _taken: dict[tuple[str, int | None], dict[str, Any]] = field(default_factory=dict)
    _starts: dict[str, dict[str, Any]] = field(default_factory=dict)   # by LB epoch

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
        if at == "drain":
            self._taken.setdefault((at, group), data)    # a drain retried keeps the first
        else:
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


    def opened(self, group: int) -> dict[str, Any] | None:
        """The reading before `group`'s drain (this run's, or the journal's after a crash)."""
        taken = self._taken.get(("drain", group))
        if taken is not None:
            return taken
        return next((m for m in reversed(_marks(self.journal.events(self.wid)))
                     if m["at"] == "drain" and m.get("group") == group), None)

    def before(self, group: int) -> tuple[dict[str, Counts], dict[str, Counts]] | None:
        """Each server's counts at this run's start and before `group`'s drain: what the
        servers did before the visit (an analysis's baseline when no other is left)."""
        drain = self.opened(group)
        if drain is None or "counters" not in drain:
            return None
        epoch = drain["counters"]["epoch"]      # the workflow's first reading by that LB
        start = self._first_start(epoch)          # process (a run resumed after a crash
        if start is None:                         # included)
            return None
        return servers_of(start["counters"]), servers_of(drain["counters"])

    def _first_start(self, epoch: str) -> dict[str, Any] | None:
        """Read from the journal once per run (not once per visit)."""
        if epoch not in self._starts:
            self._starts[epoch] = next(
                (m for m in _marks(self.journal.events(self.wid)) if m["at"] == "start"
                 and "counters" in m and m["counters"]["epoch"] == epoch), {})
        return self._starts[epoch] or None

    async def served(self, group: int, names: Sequence[str]) -> dict[str, int] | None:
        """What the named servers answered from before `group`'s drain to now (a reading
        journaled as `at: analysis`): the answers a release gave while it was judged."""
        now = await self.mark("analysis", node=None, group=group)
        begin = self.opened(group)
        if begin is None or "counters" not in begin or "counters" not in now:
            return None
        diff = difference(begin["counters"], now["counters"])
        if diff.get("reset"):
            return None
        mine = [diff["servers"][n] for n in names if n in diff["servers"]]
        return {f: sum(c[f] for c in mine) for f in ("requests", "http_5xx",
                                                      "connection_errors", "response_errors")}


def servers_of(reading: dict[str, Any]) -> dict[str, Counts]:
    return {name: _counts(c) for name, c in reading.get("servers", {}).items()}


async def require_counters(lb: LoadBalancer) -> None:
    """--fail-on-lb-errors needs counters: refused (exit 3) before anything changes."""
    try:
        reading = await lb.counters()
    except ZdtError as exc:
        raise PreconditionError(f"--fail-on-lb-errors: cannot read the load balancer's "
                                f"counters: {exc}") from exc
    if isinstance(reading, str):
        raise PreconditionError(f"--fail-on-lb-errors: {reading}; leave the option out")


def as_data(c: Counters) -> dict[str, Any]:
    return {"source": c.source, "epoch": c.epoch, "backend": asdict(c.backend),
            "servers": {k: asdict(v) for k, v in c.servers.items()},
            "in_rotation": list(c.in_rotation)}


def _counts(d: dict[str, int]) -> Counts:
    return Counts(**{k: int(v) for k, v in d.items() if k in Counts.__dataclass_fields__})


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The backend's (and each server's) counts between two readings. Another LB process
    (restarted) or counters that went back (cleared) make the window unknown: `reset`. A
    server the first reading did not have is left out (its counts began before)."""
    a, b = _counts(before["backend"]), _counts(after["backend"])
    delta = {f: getattr(b, f) - getattr(a, f) for f in COUNT_FIELDS}
    if any(v < 0 for v in delta.values()) or before.get("epoch") != after.get("epoch"):
        return {"reset": True}
    servers = {}
    for name, now in after.get("servers", {}).items():
        if name not in before.get("servers", {}):
            continue
        was, n = _counts(before["servers"][name]), _counts(now)
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
    out: list[dict[str, Any]] = []
    opened: dict[int, dict[str, Any]] = {}
    for m in _marks(events):
        if m["at"] == "drain" and m.get("group") is not None:
            opened.setdefault(m["group"], m)        # a drain retried keeps the first
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


def span(marks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """From the first reading to the last, reading by reading: the time between a killed
    run's last reading and its resume counts too; a step across an LB restart is left out
    (`resets`). None when no step between two readings could be measured."""
    readings = [m["counters"] for m in marks if "counters" in m]
    steps = [difference(a, b) for a, b in itertools.pairwise(readings)]
    measured = [d for d in steps if not d.get("reset")]
    if not measured:
        return None
    total = {f: sum(d[f] for d in measured) for f in (*COUNT_FIELDS, "errors")}
    return {**total, "resets": len(steps) - len(measured),
            "queue_max": _counts(readings[-1]["backend"]).queue_max,
            "queue_max_rose": any(d["queue_max_rose"] for d in measured)}


def summarize(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The witness of a workflow: its whole span, its runs and its visits; None if the LB
    was never read."""
    rs = runs(events)
    if not rs:
        return None
    marks = _marks(events)
    source = next((m["counters"]["source"] for m in marks if "counters" in m), None)
    summary: dict[str, Any] = {"source": source, "runs": rs, "visits": visits(events)}
    total = span(marks)
    if total is None:
        summary["unavailable"] = next((r.get("unavailable") for r in rs
                                       if r.get("unavailable")), "the counters were reset")
        return summary
    summary.update(total)
    summary["complete"] = total["resets"] == 0 and all(
        r["complete"] and "unavailable" not in r for r in rs)
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
        text += " (incomplete: a run of zdt ended without its last reading, or the LB's " \
                "counters restarted)"
    return text

"""Starting and finishing workflows: domain + request → plan → lock → journal → engine.

Everything that can be refused is refused before the journal gets a workflow and before
any node is touched: bad input (exit 2), an unmet precondition (exit 3), a lock (exit 4).
A request is prepared once (`prepare`): the plan shown is the plan that runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from zdt import adapters as adapter_factory
from zdt import domain as domain_model
from zdt import preview
from zdt.domain import Domain
from zdt.errors import ConfigError, ZdtError
from zdt.steps import Context, hooks
from zdt.steps.analysis import settings_of
from zdt.waiting import REAL_TIME, Timing
from zdt.witness import Witness, require_counters
from zdt.workflow import kinds
from zdt.workflow import plan as planner
from zdt.workflow.admission import (
    RESUMABLE,
    REVERTIBLE,
    check_state,
    fingerprint,
    open_journal,
    refuse_if_held,
    refuse_if_held_now,
    refuse_if_superseded,
    same_servers,
)
from zdt.workflow.engine import Engine, Observer, Policy
from zdt.workflow.journal import Journal, Lock, store_of
from zdt.workflow.kinds import Inputs, Kind, Note
from zdt.workflow.request import RolloutRequest, from_journal, new_id


@dataclass(frozen=True)
class Prepared:
    """A request checked against the domain file and the inputs, with no side effect."""

    domain: Domain
    plan: planner.Plan
    request: RolloutRequest
    kind: Kind
    inputs: Inputs
    notes: tuple[Note, ...] = ()     # what the kind found on the nodes (kind.narrow)

    def estimate(self, journal: Journal | None) -> dict[str, Any]:
        """Preview's estimate of this plan, from `journal`'s history when given."""
        gated = any(s.name == "analysis" for s in self.plan.steps)
        return preview.estimate(self.plan, journal, {
            "shutdown_timeout": self.request.timeout,
            "delay_between_nodes": self.request.delay_between_nodes,
            "analysis_window": settings_of(self.domain).window if gated else 0.0})

    def digest(self) -> str:
        """What a preview was made for: the request as prepared, the plan and the inputs'
        digests. A start that names it runs nothing else (the console's Start)."""
        data = {"request": self.request.flat(), "domain": self.domain.source,
                "plan": [asdict(s) for s in self.plan.steps],
                "archive": self.inputs.manifest.sha256 if self.inputs.manifest else None,
                "apps": [asdict(a) for a in self.inputs.apps]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def recorded(self) -> dict[str, object]:
        """What the journal keeps: the request as given, and what was prepared from it."""
        return {**self.request.flat(),
                "change": asdict(self.inputs.change) if self.inputs.change else None,
                "app_changes": [asdict(a) for a in self.inputs.apps]}


def prepare(domain_path: Path, request: RolloutRequest) -> Prepared:
    kind = kinds.get(request.kind)
    request.validate_common()
    kind.validate(request)
    request = kind.normalised(kind.with_defaults(request))
    domain = domain_model.load(domain_path)
    inputs = kind.prepare(request, domain)
    plan = planner.build(kind.shape(request), domain, request.targets,
                         allow_downtime=request.allow_downtime,
                         partitions=request.get("partitions", ()), batch=request.batch,
                         min_in_service=request.min_in_service,
                         pause_after=request.pause_after,
                         analysis=analysis_on(request, domain))
    return Prepared(domain, plan, request, kind, inputs)


def analysis_on(request: RolloutRequest, domain: Domain) -> bool:
    """--analysis / --no-analysis, else the domain's [analysis] (when it has one)."""
    if request.analysis is not None:
        return request.analysis
    return domain.analysis is not None and domain.analysis.enabled


def context(domain: Domain, request: RolloutRequest, inputs: Inputs,
            adapters: adapter_factory.Adapters, timing: Timing, workflow: str,
            witness: Witness | None = None) -> Context:
    """What the steps of this workflow may use."""
    return Context(domain, adapters.services, adapters.lb, request.options(), timing,
                   adapters.transports, workflow, inputs.change, request.get("runtime_home"),
                   inputs.apps, witness, request.params)


@dataclass
class Wiring:
    """A domain and how its workflows are run: clock, ids, timing and the observer are
    injected for tests and displays, the adapters' factory for benches."""

    domain_path: Path
    clock: Callable[[], float] = time.time
    ids: Callable[[], str] = new_id
    timing: Timing = REAL_TIME
    observer: Observer | None = None       # told of every step's state change (a display)
    on_run: Callable[[str, str], None] | None = None   # (id, action) once a run is under way
    connect: adapter_factory.Connect = field(default_factory=adapter_factory.Connect)
    build_adapters: Callable[[Domain, adapter_factory.Connect], adapter_factory.Adapters] = \
        adapter_factory.build


@dataclass
class Runner(Wiring):
    """Runs workflows of one domain."""

    def prepare(self, request: RolloutRequest) -> Prepared:
        kind = kinds.get(request.kind)
        if kind.narrows(request):       # it must ask the nodes first: App.plan does
            raise ConfigError(f"this {request.kind} request asks the nodes before it is "
                              "planned: prepare it with App.plan")
        return prepare(self.domain_path, request)

    async def rollout(self, request: RolloutRequest | Prepared) -> str:
        """Run a new workflow to its end (or its pause); return the workflow id.

        Nothing is created (state dir, journal, lock) before the request is accepted: the
        input valid, the domain not held, every precondition met on the live domain."""
        p = request if isinstance(request, Prepared) else self.prepare(request)
        wid = self.ids()
        seen = refuse_if_held_now(p.domain, self.clock)
        adapters = self.build_adapters(p.domain, self.connect)
        try:
            check = context(p.domain, p.request, p.inputs, adapters, self.timing, "preview")
            warnings = await preview.require(check, p.plan, p.inputs.manifest)
            if p.request.fail_on_lb_errors:
                await require_counters(adapters.lb)
            store = store_of(p.domain)
            lock = store.lock()
            lock.acquire(f"{p.request.kind} workflow {wid}")
            try:
                journal = store.open(self.clock)
                try:
                    refuse_if_held(journal)
                    if fingerprint(journal) != seen:   # a workflow ran meanwhile: again
                        warnings = await preview.require(check, p.plan, p.inputs.manifest)
                    journal.create(wid, p.request.kind, p.domain.source, p.recorded(),
                                   p.plan.steps)
                    for c in warnings:
                        journal.event(wid, "warning", c.line(), data=asdict(c))
                    for n in p.notes:
                        journal.event(wid, "note", n.message, data=dict(n.data))
                    _journal_estimate(journal, wid, p)
                    await self._run(p.domain, journal, p.request, p.kind, p.inputs, wid,
                                    "run", adapters, lock)
                finally:
                    journal.close()
            finally:
                lock.release()
        finally:
            await adapters.close()
        return wid

    async def resume(self, wid: str) -> str:
        """Go on with a failed, stopped or interrupted workflow from its first step not done."""
        return await self._again(wid, "resume", RESUMABLE)

    async def revert(self, wid: str) -> str:
        """Revert a workflow's completed steps, last first; also after it succeeded."""
        return await self._again(wid, "revert", REVERTIBLE)

    async def _again(self, wid: str, action: str, allowed: tuple[str, ...]) -> str:
        domain = domain_model.load(self.domain_path)
        journal = open_journal(self.domain_path)   # refuses a domain with no journal yet
        try:
            wf = journal.workflow(wid)             # an unknown id: exit 2, nothing touched
            same_servers(domain, journal.steps(wid), wid)
        finally:
            journal.close()
        kind = kinds.get(wf.kind)
        request = from_journal(wf.request, kind.field_names())
        inputs = kind.restore(wf.request)
        if action == "revert":
            refuse_if_superseded(self.domain_path, wf)
        store = store_of(domain)
        lock = store.lock()
        lock.acquire(f"{action} of workflow {wid}")
        try:
            journal = store.open(self.clock)
            try:
                check_state(journal, journal.workflow(wid), action, allowed)
                if action == "resume" and any(e["kind"] == "pause" for e in
                                              journal.events(wid)):
                    request = replace(request, pause_after=None)   # the canary was seen
                adapters = self.build_adapters(domain, self.connect)
                try:
                    return await self._run(domain, journal, request, kind, inputs, wid,
                                           action, adapters, lock)
                finally:
                    await adapters.close()
            finally:
                journal.close()
        finally:
            lock.release()

    async def _run(self, domain: Domain, journal: Journal, request: RolloutRequest, kind: Kind,
                   inputs: Inputs, wid: str, action: str,
                   adapters: adapter_factory.Adapters, lock: Lock) -> str:
        if self.on_run is not None:       # accepted: locked, journaled, about to act
            self.on_run(wid, action)
        witness = Witness(adapters.lb, journal, wid, action,
                          fail_on_errors=request.fail_on_lb_errors)
        ctx = context(domain, request, inputs, adapters, self.timing, wid, witness)
        policy = Policy(retries=request.retries, retry_delay=request.retry_delay,
                        auto_revert=request.auto_revert,
                        delay_between_nodes=request.delay_between_nodes,
                        pause_after=request.pause_after if action != "revert" else None,
                        parallel=self.connect.parallel)
        engine = Engine(journal, lambda spec: kind.step(spec.name)(ctx, spec),
                        policy=policy, timing=self.timing, observer=self.observer,
                        still_locked=lock.verify)
        await witness.mark("start")
        if action == "revert":
            state = await engine.revert(wid)
        else:
            state = await (engine.resume(wid) if action == "resume" else engine.run(wid))
        await witness.mark("end")
        await _final_hooks(ctx, journal, wid, state)
        return state


def _journal_estimate(journal: Journal, wid: str, p: Prepared) -> None:
    """What preview would estimate now, kept beside the workflow: its report shows the
    estimate against the time it took."""
    e = p.estimate(journal)
    journal.event(wid, "estimate", e["basis"], data={k: e[k] for k in (
        "learned", "total_seconds", "total_p90_seconds", "batches")})


async def _final_hooks(ctx: Context, journal: Journal, wid: str, state: str) -> None:
    """`success` / `error` hooks, once, on the node the workflow began with. They report;
    a failing one is journaled and does not change the workflow's end."""
    phase = {"succeeded": "success", "failed": "error", "reverted": "error",
             "revert-failed": "error"}.get(state)
    steps = journal.steps(wid)
    if phase is None or not steps or not ctx.domain.hooks.at(phase):
        return
    first = steps[0]
    try:
        ran = await hooks.run_phase(ctx, first.node, first.servers, phase)
        journal.event(wid, "hook", f"{phase} hooks ran on {first.node}", data={"hooks": ran})
    except ZdtError as exc:
        journal.event(wid, "hook", f"{phase} hook failed on {first.node}: {exc}")

"""Starting and finishing workflows: domain + request → plan → lock → journal → engine.

Everything that can be refused is refused before the journal gets a workflow and before
any node is touched: bad input (exit 2), an unmet precondition (exit 3), a lock (exit 4).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from zdt import adapters as adapter_factory
from zdt import domain as domain_model
from zdt import plan as planner
from zdt import preview
from zdt.domain import Domain
from zdt.engine import Engine, Observer, Policy
from zdt.errors import ConfigError, LockedError, NotFoundError, PreconditionError
from zdt.journal import DomainLock, Journal, StepRecord, WorkflowRecord
from zdt.steps import Context, Options, restart
from zdt.waiting import REAL_TIME, Timing


@dataclass(frozen=True)
class RestartRequest:
    targets: tuple[str, ...]
    shutdown_timeout: float = 30.0
    retries: int = 2
    retry_delay: float = 1.0
    delay_between_nodes: float = 0.0
    auto_revert: bool = True
    allow_downtime: bool = False

    def validate(self) -> None:
        for name in ("shutdown_timeout", "retry_delay", "delay_between_nodes"):
            value = getattr(self, name)
            if not 0 <= value <= 86400:
                raise ConfigError(f"--{name.replace('_', '-')}: {value:g} is not between 0 "
                                  "and 86400 seconds")
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"--retries: {self.retries} is not between 0 and 100")


def new_id(clock: Callable[[], float] = time.time) -> str:
    """Sortable and short: 20261121-224500-3f9a."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock())) + "-" + secrets.token_hex(2)


@dataclass
class Runner:
    """Wires one workflow run; clock, ids and observer are injected for tests and the UI."""

    domain_path: Path
    clock: Callable[[], float] = time.time
    ids: Callable[[], str] = new_id
    timing: Timing = REAL_TIME
    observer: Observer | None = None

    def prepare_restart(self, request: RestartRequest) -> tuple[Domain, planner.Plan]:
        """Everything that can refuse, with no side effect at all."""
        request.validate()
        domain = domain_model.load(self.domain_path)
        plan = planner.restart(domain, request.targets, allow_downtime=request.allow_downtime)
        return domain, plan

    async def restart(self, request: RestartRequest) -> str:
        """Run a rolling restart to its end; return the workflow id."""
        domain, plan = self.prepare_restart(request)
        lock = DomainLock(domain.state_dir)
        wid = self.ids()
        lock.acquire(f"restart workflow {wid}")
        try:
            journal = Journal(domain.state_dir, self.clock)
            try:
                _refuse_if_held(journal)
                await self._run(domain, journal, request, wid, "run", plan)
            finally:
                journal.close()
        finally:
            lock.release()
        return wid

    async def resume(self, wid: str) -> str:
        """Go on with a failed, stopped or interrupted workflow from its first step not done."""
        return await self._again(wid, "resume", ("pending", "failed", "stopped", "running"))

    async def revert(self, wid: str) -> str:
        """Revert a workflow's completed steps, last first; also after it succeeded."""
        return await self._again(wid, "revert",
                                 ("pending", "failed", "stopped", "running", "reverting",
                                  "revert-failed", "succeeded"))

    async def _again(self, wid: str, action: str, allowed: tuple[str, ...]) -> str:
        domain = domain_model.load(self.domain_path)
        journal = open_journal(self.domain_path)   # refuses a domain with no journal yet
        try:
            journal.workflow(wid)                  # an unknown id: exit 2, nothing touched
            _same_servers(domain, journal.steps(wid), wid)
        finally:
            journal.close()
        lock = DomainLock(domain.state_dir)
        lock.acquire(f"{action} of workflow {wid}")
        try:
            journal = Journal(domain.state_dir, self.clock)
            try:
                wf = journal.workflow(wid)
                if wf.state not in allowed:
                    raise PreconditionError(f"workflow {wid} is {wf.state}: nothing to {action}")
                holder = journal.holder()
                if holder is not None and holder.id != wid:
                    raise LockedError(f"the domain is held by workflow {holder.id} "
                                      f"({holder.state}); finish that one first")
                request = RestartRequest(**{**wf.request, "targets": tuple(wf.request["targets"])})
                return await self._run(domain, journal, request, wid, action)
            finally:
                journal.close()
        finally:
            lock.release()

    async def _run(self, domain: Domain, journal: Journal, request: RestartRequest,
                   wid: str, action: str, plan: planner.Plan | None = None) -> str:
        adapters = adapter_factory.build(domain)
        options = Options(shutdown_timeout=request.shutdown_timeout)
        ctx = Context(domain, adapters.services, adapters.lb, options, self.timing)
        policy = Policy(retries=request.retries, retry_delay=request.retry_delay,
                        auto_revert=request.auto_revert,
                        delay_between_nodes=request.delay_between_nodes)
        engine = Engine(journal, lambda spec: restart.build(ctx, spec), policy=policy,
                        timing=self.timing, observer=self.observer)
        try:
            if plan is not None:      # a new workflow: check the live domain, then record it
                await preview.require(ctx, plan)
                journal.create(wid, "restart", domain.source, asdict(request), plan.steps)
            if action == "revert":
                return await engine.revert(wid)
            return await (engine.resume(wid) if action == "resume" else engine.run(wid))
        finally:
            await adapters.close()


def _same_servers(domain: Domain, steps: list[StepRecord], wid: str) -> None:
    """Resume and revert work on the servers the workflow began with: all still declared."""
    known = {s.name: s.node for s in domain.servers}
    missing = sorted({f"{name} on {s.node}" for s in steps for name in s.servers
                      if known.get(name) != s.node})
    if missing:
        raise ConfigError(f"{domain.source}: workflow {wid} worked on servers this domain file "
                          f"no longer declares: {', '.join(missing)}; restore them in the file "
                          "to resume or revert")


def _refuse_if_held(journal: Journal) -> None:
    holder = journal.holder()
    if holder is not None:
        raise LockedError(
            f"the domain is held by workflow {holder.id} ({holder.kind}, {holder.state}); "
            f"finish it with `zdt resume {holder.id}` or `zdt revert {holder.id}`")


def open_journal(domain_path: Path, clock: Callable[[], float] = time.time) -> Journal:
    """The domain's journal for reading; refuses (exit 2, creating nothing) when none exists."""
    domain = domain_model.load(domain_path)
    if not (domain.state_dir / "journal.db").exists():
        raise NotFoundError(f"{domain.state_dir}: no journal yet (no workflow has run in "
                            f"this domain); see `zdt rollout --help`")
    return Journal(domain.state_dir, clock)


def request_stop(domain_path: Path, wid: str) -> str:
    """Ask a running workflow to stop after its current step; returns its state now."""
    journal = open_journal(domain_path)
    try:
        wf = journal.workflow(wid)
        if wf.state not in ("running", "pending"):
            raise PreconditionError(f"workflow {wid} is {wf.state}, not running: nothing to stop")
        if not DomainLock(journal.state_dir).held_by_other():
            raise PreconditionError(
                f"workflow {wid} is {wf.state} in the journal but no zdt process runs it (it "
                f"was interrupted): finish it with `zdt resume {wid}` or `zdt revert {wid}`")
        if not journal.request_stop(wid):
            raise PreconditionError(f"workflow {wid} ended while asking it to stop")
        return wf.state
    finally:
        journal.close()


def interrupted(journal: Journal, wf: WorkflowRecord) -> bool:
    """The journal says the workflow is under way but no live zdt process holds the lock."""
    return wf.state in ("pending", "running", "reverting") and \
        not DomainLock(journal.state_dir).held_by_other()

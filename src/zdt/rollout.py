"""Starting and finishing workflows: domain + request → plan → lock → journal → engine.

Everything that can be refused is refused before the journal gets a workflow and before
any node is touched: bad input (exit 2), an unmet precondition (exit 3), a lock (exit 4).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from zdt import adapters as adapter_factory
from zdt import apps as apps_spec
from zdt import archive as archives
from zdt import domain as domain_model
from zdt import nodepath, preview
from zdt import plan as planner
from zdt.apps import AppChange
from zdt.domain import Domain
from zdt.engine import Engine, Observer, Policy
from zdt.errors import ConfigError, LockedError, NotFoundError, PreconditionError, ZdtError
from zdt.journal import Journal, StepRecord, WorkflowRecord
from zdt.lock import DomainLock
from zdt.steps import Context, HomeChange, Options, catalog, hooks
from zdt.waiting import REAL_TIME, Timing
from zdt.witness import Witness, require_counters

KINDS = ("restart", "home", "runtime", "apps", "update")
DEFAULT_SHUTDOWN_TIMEOUT = 30.0


@dataclass(frozen=True)
class RolloutRequest:
    """What an operator asked for; journaled as is, so resume and revert can rebuild it."""

    targets: tuple[str, ...]
    shutdown_timeout: float | None = None
    retries: int = 2
    retry_delay: float = 1.0
    delay_between_nodes: float = 0.0
    auto_revert: bool = True
    allow_downtime: bool = False
    kind: str = "restart"
    archive: str | None = None
    backup_dir: str | None = None
    rollback: bool = False
    session_compatible: bool = True
    pause_after: int | None = None
    health_timeout: float = 30.0
    start_timeout: float = 30.0
    runtime_home: str | None = None
    apps: str | None = None              # the apps.json of an apps rollout (local path)
    partitions: tuple[str, ...] = ()     # a restart of these partitions only
    fail_on_lb_errors: bool = False      # errors the LB saw during a visit fail its ready

    def options(self) -> Options:
        return Options(shutdown_timeout=self.timeout, start_timeout=self.start_timeout,
                       health_timeout=self.health_timeout)

    @property
    def timeout(self) -> float:
        return DEFAULT_SHUTDOWN_TIMEOUT if self.shutdown_timeout is None else self.shutdown_timeout

    def validate(self) -> None:
        for name in ("shutdown_timeout", "retry_delay", "delay_between_nodes",
                     "health_timeout", "start_timeout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 86400:
                raise ConfigError(f"--{name.replace('_', '-')}: {value:g} is not between 0 "
                                  "and 86400 seconds")
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"--retries: {self.retries} is not between 0 and 100")
        if self.pause_after is not None and self.pause_after < 1:
            raise ConfigError(f"--pause-after: {self.pause_after} is not a number of nodes ≥ 1")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown rollout kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind == "home" and not self.archive:
            raise ConfigError("--archive: a home rollout needs the archive of the patched home")
        if self.kind == "update" and not (self.archive or self.runtime_home or self.apps):
            raise ConfigError("an update needs at least one of --archive, --runtime-home and "
                              "--apps")
        if self.kind == "apps" and not self.apps:
            raise ConfigError("--apps: an apps rollout needs the apps.json spec")
        if self.rollback and self.apps:
            raise ConfigError("--rollback cannot be combined with an application update: "
                              "roll the applications back with their own apps.json")
        if self.kind == "runtime" or self.runtime_home is not None:
            _node_path("--runtime-home", self.runtime_home or "", "the new runtime's "
                       "absolute path, the same on every node", in_scripts=True)
        if self.backup_dir is not None:
            _node_path("--backup-dir", self.backup_dir, "an absolute node path")
        if not self.session_compatible and self.shutdown_timeout is None:
            raise ConfigError("--no-session-compatible: the new version cannot serve old "
                              "sessions, so give --shutdown-timeout (how long sessions may "
                              "run on before their server stops)")

    @classmethod
    def from_journal(cls, data: dict[str, Any]) -> RolloutRequest:
        fields = {k: v for k, v in data.items() if k not in ("change", "app_changes")}
        return cls(**{**fields, "targets": tuple(data["targets"]),
                      "partitions": tuple(data.get("partitions") or ())})


def _normal(path: str | None) -> str | None:
    return None if path is None else nodepath.normalise(path)


def _node_path(option: str, value: str, what: str, *, in_scripts: bool = False) -> None:
    """A node path given on the command line: ConfigError (exit 2) naming the option."""
    try:
        nodepath.normalise(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}; give {what}") from None
    if in_scripts and not re.fullmatch(r"[A-Za-z0-9._/+@:,=~-]+", value):
        raise ConfigError(f"{option} {value!r}: only letters, digits and . _ / + @ : , = ~ -"
                          " are allowed (quotes, '$', spaces, ';' and the like would be read "
                          "by the shell in the nodes' scripts); give " + what)


def new_id(clock: Callable[[], float] = time.time) -> str:
    """Sortable and short: 20261121-224500-3f9a."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock())) + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Prepared:
    """A request checked against the domain file and the inputs, with no side effect."""

    domain: Domain
    plan: planner.Plan
    request: RolloutRequest
    change: HomeChange | None
    manifest: archives.Manifest | None
    apps: tuple[AppChange, ...] = ()


def prepare(domain_path: Path, request: RolloutRequest) -> Prepared:
    request.validate()
    # one spelling of each node path, journaled as such
    request = replace(request, runtime_home=_normal(request.runtime_home),
                      backup_dir=_normal(request.backup_dir))
    domain = domain_model.load(domain_path)
    change, manifest = None, None
    if request.kind in ("home", "update") and request.archive:
        manifest = archives.verify(Path(request.archive))
        change = HomeChange(str(Path(request.archive).resolve()), manifest.sha256,
                            manifest.version, request.backup_dir, request.rollback)
    if request.runtime_home and domain.runtime is None:
        raise ConfigError(f"{domain.source}: a runtime rollout needs a [runtime] section (the "
                          "runtime in use and the globs of the scripts that name it)")
    if request.backup_dir is not None:
        home, backups = domain.domain.home, nodepath.normalise(request.backup_dir)
        if nodepath.inside(backups, home):
            raise ConfigError(f"--backup-dir {request.backup_dir}: inside the home {home}; "
                              "a backup must live beside it")
    app_changes = apps_spec.load(Path(request.apps), domain) if request.apps else ()
    parts = [p for p, given in (("home", request.archive), ("runtime", request.runtime_home),
                                ("apps", request.apps)) if given]
    plan = planner.build(request.kind, domain, request.targets,
                         allow_downtime=request.allow_downtime, parts=parts,
                         partitions=request.partitions)
    return Prepared(domain, plan, request, change, manifest, app_changes)


@dataclass
class Runner:
    """Wires one workflow run; clock, ids and observer are injected for tests and the UI."""

    domain_path: Path
    clock: Callable[[], float] = time.time
    ids: Callable[[], str] = new_id
    timing: Timing = REAL_TIME
    observer: Observer | None = None
    connect: adapter_factory.Connect = field(default_factory=adapter_factory.Connect)
    build_adapters: Callable[[Domain, adapter_factory.Connect], adapter_factory.Adapters] = \
        adapter_factory.build

    def prepare(self, request: RolloutRequest) -> Prepared:
        return prepare(self.domain_path, request)

    async def rollout(self, request: RolloutRequest) -> str:
        """Run a new workflow to its end (or its pause); return the workflow id.

        Nothing is created (state dir, journal, lock) before the request is accepted: the
        input valid, the domain not held, every precondition met on the live domain."""
        p = self.prepare(request)
        wid = self.ids()
        seen = _refuse_if_held_now(p.domain, self.clock)
        adapters = self.build_adapters(p.domain, self.connect)
        try:
            check = Context(p.domain, adapters.services, adapters.lb, request.options(),
                            self.timing, adapters.transports, "preview", p.change,
                            request.runtime_home, p.apps)
            warnings = await preview.require(check, p.plan, p.manifest)
            if request.fail_on_lb_errors:
                await require_counters(adapters.lb)
            lock = DomainLock(p.domain.state_dir)
            lock.acquire(f"{request.kind} workflow {wid}")
            try:
                journal = Journal(p.domain.state_dir, self.clock)
                try:
                    _refuse_if_held(journal)
                    if _fingerprint(journal) != seen:   # a workflow ran meanwhile: the
                        warnings = await preview.require(check, p.plan, p.manifest)  # again
                    recorded = {**asdict(request),
                                "change": asdict(p.change) if p.change else None,
                                "app_changes": [asdict(a) for a in p.apps]}
                    journal.create(wid, request.kind, p.domain.source, recorded, p.plan.steps)
                    for c in warnings:
                        journal.event(wid, "warning", c.line(), data=asdict(c))
                    await self._run(p.domain, journal, request, wid, "run", p.change, p.apps,
                                    adapters)
                finally:
                    journal.close()
            finally:
                lock.release()
        finally:
            await adapters.close()
        return wid

    async def preview(self, request: RolloutRequest) -> dict[str, Any]:
        """Validate, check the preconditions, plan and estimate; change nothing."""
        p = self.prepare(request)
        adapters = self.build_adapters(p.domain, self.connect)
        ctx = Context(p.domain, adapters.services, adapters.lb,
                      request.options(), self.timing,
                      adapters.transports, "preview", p.change, request.runtime_home, p.apps)
        try:
            checks = await preview.preconditions(ctx, p.plan, p.manifest)
            rewrites = (await preview.runtime_changes(ctx, p.plan)
                        if request.runtime_home else None)
        finally:
            await adapters.close()
        journal = None
        if (p.domain.state_dir / "journal.db").exists():
            journal = Journal(p.domain.state_dir, self.clock)
        try:
            estimates = preview.estimate(p.plan, journal, {
                "shutdown_timeout": request.timeout,
                "delay_between_nodes": request.delay_between_nodes})
        finally:
            if journal is not None:
                journal.close()
        if p.manifest is not None:
            estimates["disk_per_node_bytes"] = preview.disk_needed(ctx, p.manifest)
        return {"kind": request.kind, "targets": list(p.plan.targets), "domain": p.domain.source,
                "request": asdict(request),
                "archive": None if p.manifest is None else {
                    "path": request.archive, "sha256": p.manifest.sha256,
                    "version": p.manifest.version, "size": p.manifest.size,
                    "unpacked": p.manifest.unpacked, "rollback": request.rollback},
                "preconditions": preview.as_dict(checks), "runtime_changes": rewrites,
                "ok": all(c.ok for c in checks),
                "plan": _plan_dict(p.plan), "estimates": estimates}

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
            wf = journal.workflow(wid)             # an unknown id: exit 2, nothing touched
            _same_servers(domain, journal.steps(wid), wid)
        finally:
            journal.close()
        request = RolloutRequest.from_journal(wf.request)
        change = HomeChange(**wf.request["change"]) if wf.request.get("change") else None
        app_changes = tuple(AppChange(**{**a, "nodes": tuple(a["nodes"])})
                            for a in wf.request.get("app_changes") or ())
        if action == "revert":
            _refuse_if_superseded(journal_path=self.domain_path, wf=wf)
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
                if action == "resume" and any(e["kind"] == "pause" for e in
                                              journal.events(wid)):
                    request = replace(request, pause_after=None)   # the canary was seen
                adapters = self.build_adapters(domain, self.connect)
                try:
                    return await self._run(domain, journal, request, wid, action, change,
                                           app_changes, adapters)
                finally:
                    await adapters.close()
            finally:
                journal.close()
        finally:
            lock.release()

    async def _run(self, domain: Domain, journal: Journal, request: RolloutRequest,
                   wid: str, action: str, change: HomeChange | None,
                   app_changes: tuple[AppChange, ...],
                   adapters: adapter_factory.Adapters) -> str:
        witness = Witness(adapters.lb, journal, wid, action,
                          fail_on_errors=request.fail_on_lb_errors)
        ctx = Context(domain, adapters.services, adapters.lb,
                      request.options(), self.timing,
                      adapters.transports, wid, change, request.runtime_home, app_changes,
                      witness)
        policy = Policy(retries=request.retries, retry_delay=request.retry_delay,
                        auto_revert=request.auto_revert,
                        delay_between_nodes=request.delay_between_nodes,
                        pause_after=request.pause_after if action != "revert" else None)
        engine = Engine(journal, lambda spec: catalog.build(request.kind, ctx, spec),
                        policy=policy, timing=self.timing, observer=self.observer)
        await witness.mark("start")
        if action == "revert":
            state = await engine.revert(wid)
        else:
            state = await (engine.resume(wid) if action == "resume" else engine.run(wid))
        await witness.mark("end")
        await _final_hooks(ctx, journal, wid, state)
        return state


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


def _plan_dict(plan: planner.Plan) -> list[dict[str, Any]]:
    return [{"node": node, "servers": sorted({x for s in plan.for_group(g) for x in s.servers}),
             "steps": [s.name for s in plan.for_group(g)]} for g, node in enumerate(plan.nodes)]


def _refuse_if_superseded(journal_path: Path, wf: WorkflowRecord) -> None:
    """Going back from a home that later workflows moved on from would strand them: their
    backups name the home this one put in place. Revert those first, newest first."""
    changing = ("home", "runtime", "apps", "update")
    if wf.kind not in changing:
        return
    journal = open_journal(journal_path)
    try:
        later = [w for w in journal.history() if w.kind in changing
                 and w.created > wf.created and w.state != "reverted"]
    finally:
        journal.close()
    if later:
        names = ", ".join(f"{w.id} ({w.state})" for w in later)
        raise PreconditionError(f"workflow {wf.id} was followed by home workflow(s) {names}: "
                                "revert them first, newest first")


def _same_servers(domain: Domain, steps: list[StepRecord], wid: str) -> None:
    """Resume and revert work on the servers the workflow began with: all still declared."""
    known = {s.name: s.node for s in domain.servers}
    missing = sorted({f"{name} on {s.node}" for s in steps for name in s.servers
                      if known.get(name) != s.node})
    if missing:
        raise ConfigError(f"{domain.source}: workflow {wid} worked on servers this domain file "
                          f"no longer declares: {', '.join(missing)}; restore them in the file "
                          "to resume or revert")


def _refuse_if_held_now(domain: Domain, clock: Callable[[], float]) -> tuple[Any, ...]:
    """Before the preconditions are checked on the nodes: a domain locked by a live zdt or
    held by a workflow half-way is refused at once (exit 4), by looking, creating nothing.
    Returns what the journal says now, to tell whether a workflow ran before the lock."""
    state_dir = domain.state_dir
    DomainLock(state_dir).refuse_if_held()
    if not (state_dir / "journal.db").exists():
        return ()
    journal = Journal(state_dir, clock)
    try:
        _refuse_if_held(journal)
        return _fingerprint(journal)
    finally:
        journal.close()


def _fingerprint(journal: Journal) -> tuple[Any, ...]:
    """The workflows recorded and the newest one's state: any workflow that starts or ends
    changes it."""
    workflows = journal.history()
    if not workflows:
        return ()
    newest = workflows[0]
    return (len(workflows), newest.id, newest.state, newest.ended)


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
    """Ask a running workflow to stop once its node visit under way is done; its state now."""
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

"""The application layer: everything an operator can do with a domain, for every front end.

The command line, the demo, the benches and the console call only this. Requests are plain
dataclasses (`RolloutRequest`), results are plain data (a workflow's report as the journal
tells it). A request is prepared once: `prepare` checks it and plans it, `preview` and
`start` take what it returned, so the plan shown is the plan that runs.

    app = App(Path("domain.toml"))
    prepared = app.prepare(RolloutRequest.of("home", ("cluster1",), archive="v2.tar.gz"))
    outcome = await app.start(prepared)          # or: await app.preview(prepared)
    await app.revert(outcome.id)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from zdt import adapters as adapter_factory
from zdt import archive as archives
from zdt import domain as domain_model
from zdt import inventory, previewed, report, staging, stale_fleet
from zdt import preview as checks
from zdt.adapters import Connect
from zdt.archive import manifest_path
from zdt.domain import Domain
from zdt.errors import NotFoundError
from zdt.live import client
from zdt.live import host as live_host_ops
from zdt.live import operations as live_ops
from zdt.live import remote as live_remote
from zdt.live.journal import LiveJournal
from zdt.live.operations import LiveRequest
from zdt.live.supervisor import LiveConfig
from zdt.workflow import admission, kinds
from zdt.workflow.admission import interrupted, open_journal, request_stop
from zdt.workflow.journal import Journal, store_of
from zdt.workflow.kinds import Field, Kind, Note
from zdt.workflow.request import OPTIONS, Option, RolloutRequest
from zdt.workflow.runner import Prepared, Runner, Wiring, context, prepare

UNDER_WAY = ("pending", "running", "reverting")

__all__ = ["OPTIONS", "App", "Connect", "Field", "Kind", "LiveConfig", "LiveRequest", "Option",
           "Outcome", "Prepared", "RolloutRequest", "manifest_path"]



@dataclass(frozen=True)
class Outcome:
    """How a workflow run (a start, a resume, a revert) ended, and its report."""

    id: str
    state: str
    report: dict[str, Any]


@dataclass
class App(Wiring):
    """Everything an operator does with one domain (and, below, with this host)."""

    def _runner(self) -> Runner:
        return Runner(**{f.name: getattr(self, f.name) for f in fields(Wiring)})

    # -- workflows ---------------------------------------------------------------------

    @staticmethod
    def workflow_kind(name: str) -> Kind:
        """One workflow kind (bad input naming the known ones if there is none)."""
        return kinds.get(name)

    @staticmethod
    def workflow_kinds() -> list[Kind]:
        """The workflow kinds, with the fields each one's request takes."""
        return kinds.every()

    def domain(self) -> Domain:
        """The domain file, read and checked (exit 2 naming file, line and field)."""
        return domain_model.load(self.domain_path)

    def prepare(self, request: RolloutRequest) -> Prepared:
        """Check the request against the domain and its inputs and plan it; change nothing
        (exit 2 for bad input, 3 for a plan that cannot be done without downtime)."""
        return self._runner().prepare(request)

    async def plan(self, request: RolloutRequest) -> Prepared:
        """`prepare`, once a kind that asks the nodes first has narrowed the request (a
        restart's --stale: exactly the servers running stale code). NothingToDo (exit 0)
        when that leaves nothing to do."""
        kind = kinds.get(request.kind)
        notes: tuple[Note, ...] = ()
        if kind.narrows(request):
            domain = domain_model.load(self.domain_path)
            adapters = self.build_adapters(domain, self.connect)
            try:
                request, notes = await kind.narrow(request, domain, adapters)
            finally:
                await adapters.close()
        prepared = await asyncio.to_thread(prepare, self.domain_path, request)   # hashes
        return replace(prepared, notes=notes)

    async def preview(self, request: RolloutRequest | Prepared) -> dict[str, Any]:
        """Validate, check the preconditions on the nodes, plan and estimate; change
        nothing. `ok` says whether a start would be accepted now."""
        p = request if isinstance(request, Prepared) else await self.plan(request)
        adapters = self.build_adapters(p.domain, self.connect)
        ctx = context(p.domain, p.request, p.inputs, adapters, self.timing, "preview")
        runtime_home = p.request.get("runtime_home")
        try:
            found = await checks.preconditions(ctx, p.plan, p.inputs.manifest)
            rewrites = await checks.runtime_changes(ctx, p.plan) if runtime_home else None
        finally:
            await adapters.close()
        estimates = self._estimate(p)
        m = p.inputs.manifest
        if m is not None:
            estimates["disk_per_node_bytes"] = checks.disk_needed(ctx, m)
        return {"kind": p.request.kind, "targets": list(p.plan.targets),
                "domain": p.domain.source, "request": p.request.flat(),
                "archive": None if m is None else {
                    "path": p.request.get("archive"), "sha256": m.sha256,
                    "version": m.version, "size": m.size, "unpacked": m.unpacked,
                    "rollback": bool(p.request.get("rollback", False))},
                "preconditions": checks.as_dict(found), "runtime_changes": rewrites,
                "ok": all(c.ok for c in found), "plan": previewed.plan_rows(p.plan),
                "notes": [{"message": n.message, **n.data} for n in p.notes],
                "capacity": previewed.capacity_of(p),
                "analysis": previewed.analysis_of(p), "estimates": estimates,
                "digest": p.digest()}

    def _estimate(self, p: Prepared) -> dict[str, Any]:
        """From earlier runs of the kind when the journal has some."""
        journal = None
        store = store_of(p.domain)
        if store.exists():
            journal = store.open(self.clock)
        try:
            return p.estimate(journal)
        finally:
            if journal is not None:
                journal.close()

    async def start(self, request: RolloutRequest | Prepared) -> Outcome:
        """Run a new workflow to its end (or its canary pause, or an operator's stop)."""
        p = request if isinstance(request, Prepared) else await self.plan(request)
        wid = await self._runner().rollout(p)
        return self._outcome(wid)

    async def resume(self, wid: str) -> Outcome:
        """Go on with a failed, stopped or interrupted workflow from its first step not done."""
        await self._runner().resume(wid)
        return self._outcome(wid)

    async def revert(self, wid: str) -> Outcome:
        """Revert a workflow's completed steps, last first (also one that succeeded)."""
        await self._runner().revert(wid)
        return self._outcome(wid)

    def stop(self, wid: str) -> str:
        """Ask a running workflow (in any process) to stop once its node visit under way is
        done; returns its state now."""
        return request_stop(self.domain_path, wid)

    async def distribute(self, archive: Path) -> dict[str, str]:
        """Copy a verified archive to every node's staging dir (skipping nodes that hold
        it); what was done per node."""
        domain = domain_model.load(self.domain_path)
        transports = adapter_factory.transports(domain, self.connect)
        try:
            return await staging.distribute(domain, archive, transports,
                                            parallel=self.connect.parallel)
        finally:
            for t in transports.values():
                await t.close()

    async def stale(self) -> dict[str, Any]:
        """Every server of the domain whose processes still run code from files deleted or
        replaced since they loaded them, node by node (`zdt stale -d`)."""
        domain = domain_model.load(self.domain_path)
        adapters = self.build_adapters(domain, self.connect)
        try:
            found = await stale_fleet.scan(domain, adapters)
            return {**found, "blind": stale_fleet.blind(found)}
        finally:
            await adapters.close()

    async def live_on_node(self, node: str, args: list[str],
                           files: dict[str, Path] | None = None) -> live_remote.Answer:
        """`zdt live ARGS` run on one of the domain's nodes, its files staged there first."""
        domain = domain_model.load(self.domain_path)
        transports = adapter_factory.transports(domain, self.connect)
        try:
            return await live_remote.run(domain, transports, node, args, files or {})
        finally:
            for t in transports.values():
                await t.close()

    async def inventory(self) -> dict[str, Any]:
        """The domain as it is now: each node's home and version, each server's process
        and its state in the load balancer, and the workflow holding the domain if any."""
        domain = domain_model.load(self.domain_path)
        adapters = self.build_adapters(domain, self.connect)
        try:
            found = await inventory.read(domain, adapters)
        finally:
            await adapters.close()
        found["workflow"] = None
        store = store_of(domain)
        if store.exists():
            journal = store.open(self.clock)
            try:
                holder = journal.holder()
                found["workflow"] = report.brief(holder) if holder else None
            finally:
                journal.close()
        return found

    def actions(self, wid: str) -> dict[str, dict[str, Any] | None]:
        """Which of stop, resume and revert the workflow allows now: None, or the error the
        CLI would give (exit code, message)."""
        return admission.actions(self.domain_path, wid)

    def _outcome(self, wid: str) -> Outcome:
        summary = self.status(wid)
        return Outcome(wid, summary["state"], summary)

    # -- reading -----------------------------------------------------------------------

    def status(self, wid: str | None = None) -> dict[str, Any]:
        """A workflow's report (the newest one's when no id is given), and whether it is
        interrupted: under way in the journal, but no zdt process runs it."""
        journal = open_journal(self.domain_path, self.clock)
        try:
            return _status(journal, wid or _newest(journal))
        finally:
            journal.close()

    def history(self) -> list[dict[str, Any]]:
        """Every workflow of the domain, newest first."""
        journal = open_journal(self.domain_path, self.clock)
        try:
            return [report.brief(w) for w in journal.history()]
        finally:
            journal.close()

    async def watch(self, wid: str | None = None, *, after: int = 0, patience: float = 2.0,
                    follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        """A workflow's journal events as they are written, from the one after `after`,
        until its run is over: its end state and what its process writes after it (the
        last witness reading, hooks), or a run that died half-way. With `follow`, on past
        its end: a later resume or revert (from any process) streams on, until the caller
        stops reading. Woken by the journal's commits and the lock's release, in this
        process or another; `patience` only bounds how long a process that died without a
        word goes unnoticed."""
        journal = open_journal(self.domain_path, self.clock)
        try:
            wid = wid or _newest(journal)
            journal.workflow(wid)                      # an unknown id: exit 2
            with journal.store.changes() as changes:
                while True:
                    for event in journal.events(wid, after):
                        after = event["id"]
                        yield event
                    if not follow and not _being_run(journal, wid):
                        for event in journal.events(wid, after):
                            yield event      # written before its process let go
                        return
                    await changes.wait(patience)
        finally:
            journal.close()


def _being_run(journal: Journal, wid: str) -> bool:
    """Whether a live zdt process is running this workflow now: it holds the domain's lock
    and the workflow is under way, or it just ended it there (the process that wrote the
    end still holds the lock, and no later workflow has begun since)."""
    lock = journal.store.lock()
    if not lock.held():
        return False
    wf = journal.workflow(wid)
    if wf.state in UNDER_WAY:
        return True
    return lock.held_by(wf.host, wf.pid) and journal.history()[0].id == wid


def _status(journal: Journal, wid: str) -> dict[str, Any]:
    summary = report.workflow(journal, wid)
    summary["interrupted"] = interrupted(journal, journal.workflow(wid))
    return summary


def _newest(journal: Journal) -> str:
    workflows = journal.history()
    if not workflows:
        raise NotFoundError(f"no workflow has run in {journal.store.where} yet")
    return workflows[0].id


# -- one host: live updates (AIX Live Update's role) and stale processes -------------------

def live_state_dir(name: str, given: str | None = None) -> Path:
    """A workload's state dir: the one given, or ~/.local/state/zdt/live/NAME."""
    return client.state_dir(name, given)


def live_run(config: LiveConfig, *, detach: bool = False, timeout: float = 35.0
             ) -> dict[str, Any] | None:
    """Run a workload under a live supervisor that holds its sockets: in this process
    until it stops, or (`detach`) in the background once it is ready (its status)."""
    client.check_config(config)
    if not detach:
        client.run(config)
        return None
    return client.detach(client.run_argv(config), Path(config.state_dir), timeout=timeout)


def live_adopt(name: str, state_dir: str | None = None, *, detach: bool = False,
               timeout: float = 35.0) -> dict[str, Any] | None:
    """A supervisor for the workload a dead one left serving (`zdt live run --adopt`)."""
    directory = client.state_dir(name, state_dir)
    if not detach:
        client.run_adopted(directory)
        return None
    return client.detach(["--adopt", "--name", name, "--state-dir", str(directory)],
                         directory, timeout=timeout)


def live_update(request: LiveRequest) -> dict[str, Any]:
    """Move a workload onto a new home: surrogate, checkpoint, restore, retire."""
    return live_ops.update(request)


def live_revert(name: str, state_dir: str | None = None) -> dict[str, Any]:
    """Back to the workload's previous home, by the same handoff."""
    return live_ops.update(LiveRequest(name, state_dir=state_dir), "revert")


def live_preview(request: LiveRequest) -> dict[str, Any]:
    return live_ops.preview(request)


def live_status(name: str, state_dir: str | None = None) -> dict[str, Any]:
    return live_ops.status(name, state_dir)


def live_updates(name: str, state_dir: str | None = None) -> list[dict[str, Any]]:
    """The workload's updates, newest first, each with its phases and its true end."""
    directory = client.state_dir(name, state_dir)
    if not (directory / "updates.db").exists():
        return []                              # no update yet: nothing is made to say so
    journal = LiveJournal(directory)
    try:
        return journal.updates()
    finally:
        journal.close()


def live_workloads(limit: int = 20) -> list[dict[str, Any]]:
    """This host's workloads under the state root, each with its newest updates."""
    return [{"name": n, "updates": live_updates(n)[:limit]}
            for n, d in live_host_ops.names() if (d / "updates.db").is_file()]


def live_host() -> list[dict[str, Any]]:
    """Every live workload of this host (the state root): running or not, its status."""
    return live_host_ops.listing()


def live_update_all(data: Path | None, home_dir: str | None, archive: str | None,
                    every: bool, timeouts: dict[str, float | None]) -> dict[str, Any]:
    """Several workloads as one operation; those done are reverted if a later one fails."""
    return live_host_ops.update_all(*live_host_ops.requests_of(data, home_dir, archive,
                                                               every, timeouts))


def live_stop(name: str, state_dir: str | None = None) -> None:
    live_ops.stop(name, state_dir)


def stale_processes() -> dict[str, Any]:
    """Processes of this host still using files deleted or replaced since they loaded them."""
    return stale_fleet.this_host()


# -- archives ------------------------------------------------------------------------------

def create_archive(home: Path, output: Path, version: str | None = None) -> archives.Manifest:
    """A deterministic, checksummed archive of a patched home (manifest beside it)."""
    return archives.create(home, output, version=version)


def verify_archive(path: Path) -> archives.Manifest:
    """An archive checked against its manifest member by member; reads only."""
    return archives.verify(path)

"""Whether a workflow may start, resume, revert or stop now: the domain's lock and the
journal's holder, the servers a workflow began with, later workflows that a revert would
strand. Each refusal creates nothing and names what to do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zdt import domain as domain_model
from zdt.domain import Domain
from zdt.errors import ConfigError, LockedError, NotFoundError, PreconditionError, ZdtError
from zdt.workflow import kinds
from zdt.workflow.journal import Journal, StepRecord, WorkflowRecord, store_of

RESUMABLE = ("pending", "failed", "stopped", "running")
REVERTIBLE = ("pending", "failed", "stopped", "running", "reverting", "revert-failed",
              "succeeded")


def check_state(journal: Journal, wf: WorkflowRecord, action: str,
                allowed: tuple[str, ...]) -> None:
    """A resume or revert of `wf` now, as the journal tells (the CLI's errors and codes)."""
    if wf.state not in allowed:
        raise PreconditionError(f"workflow {wf.id} is {wf.state}: nothing to {action}")
    holder = journal.holder()
    if holder is not None and holder.id != wf.id:
        raise LockedError(f"the domain is held by workflow {holder.id} "
                          f"({holder.state}); finish that one first")


def check_stop(journal: Journal, wf: WorkflowRecord) -> None:
    if wf.state not in ("running", "pending"):
        raise PreconditionError(f"workflow {wf.id} is {wf.state}, not running: nothing to stop")
    if not journal.store.lock().held_by_other():
        raise PreconditionError(
            f"workflow {wf.id} is {wf.state} in the journal but no zdt process runs it (it "
            f"was interrupted): finish it with `zdt resume {wf.id}` or `zdt revert {wf.id}`")


def actions(domain_path: Path, wid: str) -> dict[str, dict[str, Any] | None]:
    """Which of stop, resume and revert the workflow allows now: None, or the error (exit
    code and message) the CLI would give for it — by the very checks the CLI makes."""
    domain = domain_model.load(domain_path)
    journal = open_journal(domain_path)
    try:
        wf = journal.workflow(wid)
        checks: dict[str, Callable[[], None]] = {
            "stop": lambda: check_stop(journal, wf),
            "resume": lambda: _again(domain, journal, wf, "resume", RESUMABLE),
            "revert": lambda: _again(domain, journal, wf, "revert", REVERTIBLE)}
        found: dict[str, dict[str, Any] | None] = {}
        for action, check in checks.items():
            try:
                check()
                found[action] = None
            except ZdtError as exc:
                found[action] = {"exit_code": exc.exit_code, "message": str(exc)}
        return found
    finally:
        journal.close()


def _again(domain: Domain, journal: Journal, wf: WorkflowRecord, action: str,
           allowed: tuple[str, ...]) -> None:
    same_servers(domain, journal.steps(wf.id), wf.id)
    if action == "revert":
        refuse_if_superseded(Path(domain.source), wf)
    journal.store.lock().refuse_if_held()
    check_state(journal, wf, action, allowed)


def refuse_if_superseded(journal_path: Path, wf: WorkflowRecord) -> None:
    """Going back from a home that later workflows moved on from would strand them: their
    backups name the home this one put in place. Revert those first, newest first."""
    if not kinds.changes_nodes(wf.kind):
        return
    journal = open_journal(journal_path)
    try:
        later = [w for w in journal.history() if kinds.changes_nodes(w.kind)
                 and w.created > wf.created and w.state != "reverted"]
    finally:
        journal.close()
    if later:
        names = ", ".join(f"{w.id} ({w.state})" for w in later)
        raise PreconditionError(f"workflow {wf.id} was followed by home workflow(s) {names}: "
                                "revert them first, newest first")


def same_servers(domain: Domain, steps: list[StepRecord], wid: str) -> None:
    """Resume and revert work on the servers the workflow began with: all still declared."""
    known = {s.name: s.node for s in domain.servers}
    missing = sorted({f"{name} on {s.node}" for s in steps for name in s.servers
                      if known.get(name) != s.node})
    if missing:
        raise ConfigError(f"{domain.source}: workflow {wid} worked on servers this domain file "
                          f"no longer declares: {', '.join(missing)}; restore them in the file "
                          "to resume or revert")


def refuse_if_held_now(domain: Domain, clock: Callable[[], float]) -> tuple[Any, ...]:
    """Before the preconditions are checked on the nodes: a domain locked by a live zdt or
    held by a workflow half-way is refused at once (exit 4), by looking, creating nothing.
    Returns what the journal says now, to tell whether a workflow ran before the lock."""
    store = store_of(domain)
    store.lock().refuse_if_held()
    if not store.exists():
        return ()
    journal = store.open(clock)
    try:
        refuse_if_held(journal)
        return fingerprint(journal)
    finally:
        journal.close()


def fingerprint(journal: Journal) -> tuple[Any, ...]:
    """The workflows recorded and the newest one's state: any workflow that starts or ends
    changes it."""
    workflows = journal.history()
    if not workflows:
        return ()
    newest = workflows[0]
    return (len(workflows), newest.id, newest.state, newest.ended)


def refuse_if_held(journal: Journal) -> None:
    holder = journal.holder()
    if holder is not None:
        raise LockedError(
            f"the domain is held by workflow {holder.id} ({holder.kind}, {holder.state}); "
            f"finish it with `zdt resume {holder.id}` or `zdt revert {holder.id}`")


def open_journal(domain_path: Path, clock: Callable[[], float] = time.time) -> Journal:
    """The domain's journal for reading; refuses (exit 2, creating nothing) when none exists."""
    store = store_of(domain_model.load(domain_path))
    if not store.exists():
        raise NotFoundError(f"{store.where}: no journal yet (no workflow has run in "
                            f"this domain); see `zdt rollout --help`")
    return store.open(clock)


def request_stop(domain_path: Path, wid: str) -> str:
    """Ask a running workflow to stop once its node visit under way is done; its state now."""
    journal = open_journal(domain_path)
    try:
        wf = journal.workflow(wid)
        check_stop(journal, wf)
        if not journal.request_stop(wid):
            raise PreconditionError(f"workflow {wid} ended while asking it to stop")
        return wf.state
    finally:
        journal.close()


def interrupted(journal: Journal, wf: WorkflowRecord) -> bool:
    """The journal says the workflow is under way but no live zdt process holds the lock."""
    return wf.state in ("pending", "running", "reverting") and \
        not journal.store.lock().held_by_other()

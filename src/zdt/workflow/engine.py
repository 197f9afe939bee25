"""Runs a workflow's steps: retry, auto-revert in reverse order, stop / resume / revert.

The journal is the only memory: the engine reads the steps from it and commits every
state change before acting on the next one, so `resume` and `revert` after a crash start
from what the journal says. The engine knows steps only through the `Step` protocol.

States of a workflow: pending → running → succeeded | failed | stopped | reverting →
reverted | revert-failed. `failed` and `stopped` wait for an operator's resume or revert;
`revert-failed` only for a revert (resuming would redo steps already reverted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zdt.errors import StepError, ZdtError
from zdt.steps import Step, StepSpec
from zdt.waiting import REAL_TIME, Timing
from zdt.workflow.journal import Journal, StepRecord

StepFactory = Callable[[StepSpec], Step]
Observer = Callable[[StepRecord, str], None]   # (step, new state) → show it somewhere


@dataclass(frozen=True)
class Policy:
    retries: int = 2
    retry_delay: float = 1.0
    auto_revert: bool = True
    delay_between_nodes: float = 0.0
    pause_after: int | None = None     # node visits done before a canary pause
    parallel: int = 8                  # node visits of a batch worked on at once


def _quiet(record: StepRecord, state: str) -> None:
    return None


class Engine:
    def __init__(self, journal: Journal, build: StepFactory, *, policy: Policy = Policy(),
                 timing: Timing = REAL_TIME, observer: Observer | None = None,
                 still_locked: Callable[[], None] | None = None) -> None:
        self.journal = journal
        self.build = build
        self.policy = policy
        self.timing = timing
        self.observer = observer or _quiet
        # raises when this process no longer holds the domain's lock (a shared journal's
        # lock session lost): checked before every step, so nothing acts unlocked
        self.still_locked = still_locked or (lambda: None)

    async def run(self, wid: str) -> str:
        """Run (or resume) the workflow from its first step not done; return its end state.

        Batch by batch: the node visits of a batch run side by side (at most `parallel` at
        once), each visit's steps in order. A failure in one visit stops the batch's other
        visits at their next step boundary; then the workflow fails (and reverts)."""
        self.journal.set_state(wid, "running")
        previous: list[StepRecord] | None = None
        for batch in _batches(self.journal.steps(wid)):
            if all(r.state == "done" for r in batch):
                previous = batch
                continue
            if previous is not None:
                if _pauses_before(previous, batch, self.policy.pause_after):
                    self.journal.event(wid, "pause", f"paused after {batch[0].group} node "
                                       "visit(s), as asked; `zdt resume` goes on")
                    self.journal.set_state(wid, "stopped")
                    return "stopped"
                if batch[0].group != previous[-1].group:
                    await self._between_nodes(wid)
            # an operator's stop is honoured between batches only: a batch under way is
            # finished, so no node is left drained or stopped
            if self.journal.workflow(wid).stop_requested:
                self.journal.set_state(wid, "stopped")
                return "stopped"
            previous = batch
            failure = await self._batch(wid, batch)
            if failure is not None:
                return await self._failed(wid, *failure)
        self.journal.set_state(wid, "succeeded")
        return "succeeded"

    async def _batch(self, wid: str, batch: list[StepRecord]) -> tuple[StepRecord, str] | None:
        """The batch's node visits side by side; the first failure, if any."""
        failures: list[tuple[StepRecord, str]] = []
        broken: list[BaseException] = []    # the journal or the lock failed: no step may
        gate = asyncio.Semaphore(max(1, self.policy.parallel))   # follow, in any visit

        async def visit(records: list[StepRecord]) -> None:
            async with gate:
                for record in records:
                    if failures or broken:   # another visit of the batch failed: stop here
                        return
                    if record.state == "done":
                        continue
                    try:
                        error = await self._forward(wid, record)
                    except BaseException as exc:
                        broken.append(exc)
                        raise
                    if error is not None:
                        failures.append((record, error))
                        return

        by_visit: dict[int, list[StepRecord]] = {}
        for record in batch:
            by_visit.setdefault(record.group, []).append(record)
        # every visit ends (at its next step boundary) before this returns or raises: no
        # step runs on after the workflow let go of the journal and the lock
        await asyncio.gather(*(visit(records) for records in by_visit.values()),
                             return_exceptions=True)
        if broken:
            raise broken[0]
        return failures[0] if failures else None

    async def resume(self, wid: str) -> str:
        """An operator's resume: a stop asked for earlier no longer applies."""
        self.journal.clear_stop(wid)
        return await self.run(wid)

    async def revert(self, wid: str) -> str:
        """Revert every step that did (or may have done) something, last first."""
        self.journal.set_state(wid, "reverting")
        for record in reversed(self.journal.steps(wid)):
            if record.state in ("pending", "reverted"):
                continue
            error = await self._attempts(wid, record, backward=True)
            if error is not None:
                self.journal.set_state(
                    wid, "revert-failed", f"revert of step {record.index} ({record.name} on "
                    f"{record.node}) failed: {error}; fix the cause and run `zdt revert {wid}`")
                return "revert-failed"
        self.journal.set_state(wid, "reverted")
        return "reverted"

    async def _failed(self, wid: str, record: StepRecord, error: str) -> str:
        message = f"step {record.index} ({record.name} on {record.node}) failed: {error}"
        self.journal.set_state(wid, "failed", message)
        if not self.policy.auto_revert:
            return "failed"
        self.journal.event(wid, "auto-revert", "reverting the completed steps, last first")
        return await self.revert(wid)

    async def _between_nodes(self, wid: str) -> None:
        if self.policy.delay_between_nodes > 0:
            self.journal.event(wid, "delay", f"waiting {self.policy.delay_between_nodes:g} s "
                               "before the next node")
            await self.timing.sleep(self.policy.delay_between_nodes)

    async def _forward(self, wid: str, record: StepRecord) -> str | None:
        return await self._attempts(wid, record, backward=False)

    async def _attempts(self, wid: str, record: StepRecord, *, backward: bool) -> str | None:
        """Try a step (or its revert) up to 1 + retries times; None on success."""
        busy, done = ("reverting", "reverted") if backward else ("running", "done")
        tries = 1 + max(0, self.policy.retries)
        for attempt in range(1, tries + 1):
            self.still_locked()
            self._set(wid, record, busy, attempt=True)
            try:
                facts = await self._once(record, backward)
            except StepError as exc:
                error, retryable = str(exc), exc.retryable
            except ZdtError as exc:       # bad input or an unmet precondition: trying again
                error, retryable = str(exc), False   # changes nothing
            except Exception as exc:
                error, retryable = f"{type(exc).__name__}: {exc}", True
            else:
                if facts:
                    self.journal.event(wid, "facts", record.name, step=record.index, data=facts)
                self._set(wid, record, done)
                return None
            self._set(wid, record, "failed", error=error)
            if not retryable or attempt == tries:
                return error
            self.journal.event(wid, "retry", f"attempt {attempt + 1} of {tries} in "
                               f"{self.policy.retry_delay:g} s", step=record.index)
            await self.timing.sleep(self.policy.retry_delay)
        return "unreachable"

    async def _once(self, record: StepRecord, backward: bool) -> dict[str, Any] | None:
        step = self.build(record.spec())
        if backward:
            return await step.revert()
        if await step.check():
            return {"already": True}
        return await step.execute()

    def _set(self, wid: str, record: StepRecord, state: str, *, error: str | None = None,
             attempt: bool = False) -> None:
        self.journal.set_step(wid, record.index, state, error=error, attempt=attempt)
        try:
            self.observer(record, state)
        except Exception as exc:  # a broken display must not stop a rollout
            self.observer = _quiet
            self.journal.event(wid, "display", f"progress display turned off: {exc!r}")


def _batches(records: list[StepRecord]) -> list[list[StepRecord]]:
    """The steps in index order, cut where the batch changes."""
    out: list[list[StepRecord]] = []
    for record in records:
        if out and out[-1][-1].batch == record.batch:
            out[-1].append(record)
        else:
            out.append([record])
    return out


def _pauses_before(previous: list[StepRecord], batch: list[StepRecord],
                   pause_after: int | None) -> bool:
    """A canary pause after N node visits falls between these batches: the previous one
    ended the Nth visit (groups count from 0) and this one begins a later one."""
    if pause_after is None:
        return False
    return previous[0].group < pause_after <= batch[0].group and \
        previous[-1].group != batch[0].group

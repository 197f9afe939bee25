"""The engine with batches: node visits side by side, a failure stopping the batch's other
visits at their next step boundary, exact journals for resume and revert with several
visits in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import planning
import pytest

from zdt import domain as dm
from zdt.errors import StepError
from zdt.steps import StepSpec
from zdt.waiting import Timing
from zdt.workflow.engine import Engine, Policy
from zdt.workflow.journal import Journal, StepRecord, Store

VISIT = ("drain", "stop", "start", "health", "ready")


class Visits:
    """Fake steps that take a few turns of the event loop each and record which node
    visits were busy at once; `fail` names (node, step) pairs that fail every time."""

    def __init__(self, fail: set[tuple[str, str]] | None = None) -> None:
        self.fail = fail or set()
        self.calls: list[tuple[str, str, str]] = []      # (op, node, step)
        self.busy: set[str] = set()
        self.most = 0
        self.effects: set[int] = set()

    def __call__(self, spec: StepSpec) -> Any:
        return _Step(self, spec)


class _Step:
    def __init__(self, visits: Visits, spec: StepSpec) -> None:
        self.v, self.spec = visits, spec

    async def check(self) -> bool:
        return self.spec.index in self.v.effects

    async def execute(self) -> dict[str, Any] | None:
        self.v.calls.append(("execute", self.spec.node, self.spec.name))
        self.v.busy.add(self.spec.node)
        self.v.most = max(self.v.most, len(self.v.busy))
        for _ in range(3):
            await asyncio.sleep(0)
        self.v.busy.discard(self.spec.node)
        if (self.spec.node, self.spec.name) in self.v.fail:
            raise StepError(f"injected failure on {self.spec.node}", retryable=False)
        self.v.effects.add(self.spec.index)
        return None

    async def revert(self) -> dict[str, Any] | None:
        self.v.calls.append(("revert", self.spec.node, self.spec.name))
        self.v.effects.discard(self.spec.index)
        return None


async def _no_sleep(seconds: float) -> None:
    return None


def setup(tmp_path: Path, clock: Callable[[], float], store: Callable[[Path], Store],
          nodes: int, batch: str, **options: Any) -> Journal:
    path = tmp_path / "domain.toml"
    path.write_text(planning.fleet(nodes))
    domain = dm.load(path)
    p = planning.build("restart", domain, ["web"], batch=batch, **options)
    journal = store(domain.state_dir).open(clock)
    journal.create("wf", "restart", str(path), {"targets": ["web"]}, p.steps)
    return journal


def engine(journal: Journal, visits: Visits, **policy: Any) -> Engine:
    return Engine(journal, visits, policy=Policy(retries=0, **policy),
                  timing=Timing(sleep=_no_sleep))


def states(journal: Journal) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in journal.steps("wf"):
        out.setdefault(s.node, []).append(s.state)
    return out


async def test_a_batch_runs_its_visits_side_by_side(tmp_path: Path, clock: Any,
                                                     stores: Any) -> None:
    journal = setup(tmp_path, clock, stores, 6, "3")
    visits = Visits()
    assert await engine(journal, visits).run("wf") == "succeeded"
    assert visits.most == 3
    for node in (f"node{i}" for i in range(1, 7)):   # each visit's steps in order
        assert [n for _, x, n in visits.calls if x == node] == list(VISIT)
    # batch 2 began only once batch 1 was over
    first_of_2 = visits.calls.index(("execute", "node4", "drain"))
    assert {x for _, x, _ in visits.calls[:first_of_2]} == {"node1", "node2", "node3"}


async def test_parallel_bounds_the_visits_at_once(tmp_path: Path, clock: Any,
                                                   stores: Any) -> None:
    journal = setup(tmp_path, clock, stores, 6, "3")
    visits = Visits()
    assert await engine(journal, visits, parallel=2).run("wf") == "succeeded"
    assert visits.most == 2
    assert all(st == ["done"] * 5 for st in states(journal).values())


@pytest.mark.parametrize("failing", ["drain", "stop", "start", "ready"])
async def test_a_failure_stops_the_batch_and_reverts_every_node_touched(
        tmp_path: Path, clock: Any, stores: Any, failing: str) -> None:
    journal = setup(tmp_path, clock, stores, 6, "3")
    visits = Visits(fail={("node4", failing)})
    assert await engine(journal, visits).run("wf") == "reverted"
    at = VISIT.index(failing)
    executed = {node: [n for op, x, n in visits.calls if op == "execute" and x == node]
                for node in ("node4", "node5", "node6")}
    # the failing visit's neighbours in the batch ran side by side up to the same step
    # boundary, then stopped: none went past the step under way when node4 failed
    assert executed == {n: list(VISIT[:at + 1]) for n in ("node4", "node5", "node6")}
    # the revert covered every step that did (or may have done) something, last first
    touched = [s for s in journal.steps("wf") if s.attempts > 0]
    reverts = [(x, n) for op, x, n in visits.calls if op == "revert"]
    assert reverts == [(s.node, s.name) for s in reversed(touched)]
    assert {s.state for s in touched} == {"reverted"}
    assert {n for n, _ in reverts} == {f"node{i}" for i in range(1, 7)}
    assert visits.effects == set()


async def test_resume_after_a_crash_with_three_visits_in_flight(tmp_path: Path,
                                                                clock: Any, stores: Any) -> None:
    """A crash left batch 2 with node4 done to its stop, node5 in its start, node6 in its
    drain: a resume re-checks the steps under way and goes on from each visit's first
    step not done, the three side by side."""
    journal = setup(tmp_path, clock, stores, 6, "3")
    steps = journal.steps("wf")
    visits = Visits()
    for s in steps[:15]:                                   # batch 1 done
        journal.set_step("wf", s.index, "done")
        visits.effects.add(s.index)
    node = {n: [s for s in steps if s.node == n] for n in ("node4", "node5", "node6")}
    for s in node["node4"][:2] + node["node5"][:2]:
        journal.set_step("wf", s.index, "done")
        visits.effects.add(s.index)
    journal.set_step("wf", node["node5"][2].index, "running", attempt=True)
    visits.effects.add(node["node5"][2].index)             # its start had taken effect
    journal.set_step("wf", node["node6"][0].index, "running", attempt=True)
    journal.set_state("wf", "running")

    assert await engine(journal, visits).resume("wf") == "succeeded"
    executed = {n: [x for op, m, x in visits.calls if op == "execute" and m == n]
                for n in node}
    assert executed == {"node4": ["start", "health", "ready"], "node5": ["health", "ready"],
                        "node6": list(VISIT)}
    assert visits.most == 3
    assert all(st == ["done"] * 5 for st in states(journal).values())


async def test_a_stop_asked_during_a_batch_finishes_it(tmp_path: Path, clock: Any,
                                                        stores: Any) -> None:
    journal = setup(tmp_path, clock, stores, 6, "3")
    visits = Visits()

    def stop_at_node2_start(record: StepRecord, state: str) -> None:
        if (record.node, record.name, state) == ("node2", "start", "running"):
            journal.request_stop("wf")

    eng = Engine(journal, visits, timing=Timing(sleep=_no_sleep),
                 observer=stop_at_node2_start)
    assert await eng.run("wf") == "stopped"
    got = states(journal)
    assert [got[f"node{i}"] for i in (1, 2, 3)] == [["done"] * 5] * 3
    assert [got[f"node{i}"] for i in (4, 5, 6)] == [["pending"] * 5] * 3
    assert await eng.resume("wf") == "succeeded"


async def test_a_canary_pause_then_the_ramp(tmp_path: Path, clock: Any, stores: Any) -> None:
    journal = setup(tmp_path, clock, stores, 6, "1,3", pause_after=1)
    visits = Visits()
    assert await engine(journal, visits, pause_after=1).run("wf") == "stopped"
    got = states(journal)
    assert got["node1"] == ["done"] * 5 and got["node2"] == ["pending"] * 5
    assert await engine(journal, visits).resume("wf") == "succeeded"
    assert visits.most == 3


async def test_delay_between_batches_not_between_visits_of_one(tmp_path: Path,
                                                               clock: Any, stores: Any) -> None:
    journal = setup(tmp_path, clock, stores, 6, "3")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    eng = Engine(journal, Visits(), policy=Policy(delay_between_nodes=2.0),
                 timing=Timing(sleep=sleep))
    assert await eng.run("wf") == "succeeded"
    assert slept == [2.0]      # two batches, one gap


def broken(journal: Journal, index: int) -> Journal:
    """The journal, with its write of step `index`'s `running` failing (a database gone
    mid-batch)."""
    write = journal.set_step

    def set_step(wid: str, step: int, state: str, **kw: Any) -> None:
        if (step, state) == (index, "running"):
            raise OSError("the journal's database is gone")
        write(wid, step, state, **kw)

    journal.set_step = set_step      # this test's journal only
    return journal


async def test_a_journal_failure_mid_batch_leaves_no_visit_running(
        tmp_path: Path, clock: Any, stores: Any) -> None:
    """node5's second step cannot be journaled: the error goes up only once node4 and node6
    have stopped at their step boundary; nothing runs after run() has raised."""
    journal = setup(tmp_path, clock, stores, 6, "3")
    node5_stop = next(s.index for s in journal.steps("wf")
                      if (s.node, s.name) == ("node5", "stop"))
    visits = Visits()
    eng = Engine(broken(journal, node5_stop), visits, policy=Policy(retries=0),
                 timing=Timing(sleep=_no_sleep))
    with pytest.raises(OSError, match="database is gone"):
        await eng.run("wf")
    calls = len(visits.calls)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(visits.calls) == calls and visits.busy == set()
    after = {n: [x for op, m, x in visits.calls if op == "execute" and m == n]
             for n in ("node4", "node5", "node6")}
    assert after["node5"] == ["drain"]
    assert all(len(after[n]) <= 2 for n in ("node4", "node6")), after

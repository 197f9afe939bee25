"""The engine with a fake step library: a failing step injected at every index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import planning
import pytest

from zdt import domain as dm
from zdt.errors import StepError
from zdt.steps import StepSpec
from zdt.waiting import Timing
from zdt.workflow import plan
from zdt.workflow.engine import Engine, Policy
from zdt.workflow.journal import Journal, StepRecord, Store


class Recorder:
    """Builds fake steps that log every call; `fail` maps a step index to failures left."""

    def __init__(self, fail: dict[int, int] | None = None, permanent: bool = False,
                 fail_revert: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = dict(fail or {})
        self.permanent = permanent
        self.fail_revert = fail_revert
        self.effects: set[int] = set()

    def __call__(self, spec: StepSpec) -> FakeStep:
        return FakeStep(self, spec.index)


class FakeStep:
    def __init__(self, rec: Recorder, index: int) -> None:
        self.rec, self.index = rec, index

    async def check(self) -> bool:
        self.rec.calls.append(("check", self.index))
        return self.index in self.rec.effects

    async def execute(self) -> dict[str, Any] | None:
        self.rec.calls.append(("execute", self.index))
        if self.rec.fail.get(self.index, 0) > 0:
            self.rec.fail[self.index] -= 1
            raise StepError(f"injected failure at {self.index}", retryable=not self.rec.permanent)
        self.rec.effects.add(self.index)
        return None

    async def revert(self) -> dict[str, Any] | None:
        self.rec.calls.append(("revert", self.index))
        if self.index == self.rec.fail_revert:
            raise StepError("revert refused")
        self.rec.effects.discard(self.index)
        return None


class FakeSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


Setup = tuple[Journal, plan.Plan]


@pytest.fixture
def setup(domain_file: Path, clock: Callable[[], float],
          stores: Callable[[Path], Store]) -> Iterator[Setup]:
    domain = dm.load(domain_file)
    p = planning.build("restart", domain, ["web"])
    journal = stores(domain.state_dir).open(clock)
    journal.create("wf-1", "restart", str(domain_file), {"targets": ["web"]}, p.steps)
    yield journal, p
    journal.close()


def engine(journal: Journal, rec: Recorder, sleep: FakeSleep, **policy: Any) -> Engine:
    return Engine(journal, rec, policy=Policy(**policy), timing=Timing(sleep=sleep))


async def test_all_steps_succeed(setup: Setup) -> None:
    journal, _p = setup
    rec, sleep = Recorder(), FakeSleep()
    assert await engine(journal, rec, sleep).run("wf-1") == "succeeded"
    assert [c for c in rec.calls if c[0] == "execute"] == [("execute", i) for i in range(15)]
    assert {s.state for s in journal.steps("wf-1")} == {"done"}
    assert journal.workflow("wf-1").state == "succeeded"
    assert sleep.slept == []


@pytest.mark.parametrize("k", range(15))
async def test_failure_at_every_index_reverts_in_reverse(setup: Setup, k: int) -> None:
    journal, _p = setup
    rec, sleep = Recorder(fail={k: 99}), FakeSleep()
    assert await engine(journal, rec, sleep, retries=2, retry_delay=0.5).run("wf-1") == "reverted"
    executes = [i for op, i in rec.calls if op == "execute"]
    assert executes == [*range(k), k, k, k]           # 1 try + 2 retries at k, nothing after
    assert [i for op, i in rec.calls if op == "revert"] == list(range(k, -1, -1))
    assert sleep.slept == [0.5, 0.5]
    states = [s.state for s in journal.steps("wf-1")]
    assert states == ["reverted"] * (k + 1) + ["pending"] * (14 - k)
    assert journal.steps("wf-1")[k].attempts == 3 + 1  # three forward tries and one revert
    wf = journal.workflow("wf-1")
    assert wf.state == "reverted"
    assert f"step {k} " in (wf.error or "")
    assert rec.effects == set()


@pytest.mark.parametrize("k", [0, 7, 14])
async def test_failure_without_auto_revert_waits_in_failed(setup: Setup, k: int) -> None:
    journal, _ = setup
    rec, sleep = Recorder(fail={k: 99}), FakeSleep()
    eng = engine(journal, rec, sleep, auto_revert=False)
    assert await eng.run("wf-1") == "failed"
    states = [s.state for s in journal.steps("wf-1")]
    assert states == ["done"] * k + ["failed"] + ["pending"] * (14 - k)
    assert not [c for c in rec.calls if c[0] == "revert"]
    # once the cause is gone, resume retries from the failed step and finishes
    rec.fail.clear()
    rec.calls.clear()
    assert await eng.run("wf-1") == "succeeded"
    assert [i for op, i in rec.calls if op == "execute"] == list(range(k, 15))


async def test_transient_failure_is_retried(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(fail={3: 2}), FakeSleep()
    assert await engine(journal, rec, sleep, retries=2).run("wf-1") == "succeeded"
    assert journal.steps("wf-1")[3].attempts == 3
    assert [e["message"] for e in journal.events("wf-1") if e["kind"] == "retry"] == [
        "attempt 2 of 3 in 1 s", "attempt 3 of 3 in 1 s"]


async def test_not_retryable_fails_at_once(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(fail={2: 1}, permanent=True), FakeSleep()
    assert await engine(journal, rec, sleep, retries=5).run("wf-1") == "reverted"
    assert [i for op, i in rec.calls if op == "execute"] == [0, 1, 2]
    assert sleep.slept == []


async def test_zero_retries(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(fail={4: 1}), FakeSleep()
    assert await engine(journal, rec, sleep, retries=0).run("wf-1") == "reverted"
    assert [i for op, i in rec.calls if op == "execute"] == [0, 1, 2, 3, 4]


async def test_revert_after_success_reverts_everything(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(), FakeSleep()
    eng = engine(journal, rec, sleep)
    await eng.run("wf-1")
    rec.calls.clear()
    assert await eng.revert("wf-1") == "reverted"
    assert [i for op, i in rec.calls if op == "revert"] == list(range(14, -1, -1))
    assert rec.effects == set()


async def test_failing_revert_leaves_failed_and_can_be_run_again(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(fail={6: 99}, fail_revert=3), FakeSleep()
    eng = engine(journal, rec, sleep, retries=0)
    assert await eng.run("wf-1") == "revert-failed"
    assert "revert of step 3" in (journal.workflow("wf-1").error or "")
    rec.fail_revert = None
    rec.calls.clear()
    assert await eng.revert("wf-1") == "reverted"
    assert [i for op, i in rec.calls if op == "revert"] == [3, 2, 1, 0]


async def test_check_skips_steps_already_in_place(setup: Setup) -> None:
    """A crash after a step's effect but before its journal entry: resume does not redo it."""
    journal, _ = setup
    rec, sleep = Recorder(), FakeSleep()
    rec.effects = {0, 1}
    assert await engine(journal, rec, sleep).run("wf-1") == "succeeded"
    assert [i for op, i in rec.calls if op == "execute"][:2] == [2, 3]


@pytest.mark.parametrize("asked_at", [0, 1, 4])
async def test_stop_request_finishes_the_node_visit(setup: Setup, asked_at: int) -> None:
    """Before: a stop asked during a visit stopped after the current step, leaving the node
    drained or stopped. Now the visit under way ends first (steps 0-4 are node1's)."""
    journal, _ = setup
    rec, sleep = Recorder(), FakeSleep()

    def stop_during_node1(record: StepRecord, state: str) -> None:
        if record.index == asked_at and state == "running":
            journal.request_stop("wf-1")

    eng = Engine(journal, rec, timing=Timing(sleep=sleep), observer=stop_during_node1)
    assert await eng.run("wf-1") == "stopped"
    assert [s.state for s in journal.steps("wf-1")][:6] == ["done"] * 5 + ["pending"]
    assert await eng.run("wf-1") == "stopped"      # the stop holds until an operator resumes
    assert await eng.resume("wf-1") == "succeeded"


async def test_delay_between_nodes(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(), FakeSleep()
    await engine(journal, rec, sleep, delay_between_nodes=2.5).run("wf-1")
    assert sleep.slept == [2.5, 2.5]  # three nodes, two gaps


async def test_pause_after_a_canary_node(setup: Setup) -> None:
    journal, _ = setup
    rec, sleep = Recorder(), FakeSleep()
    eng = engine(journal, rec, sleep, pause_after=1)
    assert await eng.run("wf-1") == "stopped"
    assert [s.state for s in journal.steps("wf-1")] == ["done"] * 5 + ["pending"] * 10
    assert [e["kind"] for e in journal.events("wf-1")].count("pause") == 1
    assert await engine(journal, rec, sleep).resume("wf-1") == "succeeded"

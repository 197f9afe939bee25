"""The witness inside the steps: a drain opens a visit's window, a ready closes it, and with
--fail-on-lb-errors the ready fails on errors the LB counted meanwhile — or when it cannot
tell. A scripted LB, a real journal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zdt import domain as dm
from zdt.adapters.lb import Counters, Counts, LbState
from zdt.errors import PreconditionError, StepError
from zdt.steps import Context, Options, StepSpec, servers
from zdt.waiting import Timing
from zdt.witness import Witness, require_counters
from zdt.workflow.journal import Journal
from zdt.workflow.journal.sqlite import SqliteJournal


def build(ctx: Context, spec: StepSpec) -> Any:
    """A rolling restart's step object."""
    return servers.RESTART[spec.name](ctx, spec)


class ScriptedLB:
    """Each counters() call takes the next reading (a Counters, or a reason it has none)."""

    def __init__(self, readings: list[Counters | str]) -> None:
        self.readings = iter(readings)
        self.admin = "ready"

    async def counters(self) -> Counters | str:
        return next(self.readings)

    async def state(self, server: dm.Server) -> LbState:
        return LbState(self.admin, "UP", 0, 0)

    async def drain(self, servers: list[dm.Server]) -> None:
        self.admin = "drain"

    async def ready(self, servers: list[dm.Server]) -> None:
        self.admin = "ready"

    async def close(self) -> None:
        pass


def counted(requests: int, http_5xx: int = 0) -> Counters:
    c = Counts(requests=requests, http_5xx=http_5xx)
    return Counters("HAProxy backend app", c, {"s1": c}, ("s1",), "pid 7")


@pytest.fixture
def journal(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Journal]:
    j = SqliteJournal(tmp_path, clock)
    j.create("w1", "restart", "d", {}, ())
    yield j
    j.close()


async def visit(domain_file: Path, journal: Journal, readings: list[Counters | str],
                fail_on_errors: bool) -> Witness:
    """A drain then a ready of s1 on node1, the witness reading between them."""
    lb = ScriptedLB(readings)
    witness = Witness(lb, journal, "w1", fail_on_errors=fail_on_errors)
    # drain and ready use the LB only: no service manager is needed
    ctx = Context(dm.load(domain_file), None, lb, Options(),  # type: ignore[arg-type]
                  Timing(), witness=witness)
    for name in ("drain", "ready"):
        await build(ctx, StepSpec(0, 0, "node1", name, ("s1",))).execute()
    return witness


async def test_errors_during_the_visit_fail_its_ready_with_the_flag(
        domain_file: Path, journal: Journal) -> None:
    with pytest.raises(StepError, match=r"node1: the load balancer saw 3 error\(s\)") as err:
        await visit(domain_file, journal, [counted(10), counted(90, 3)], fail_on_errors=True)
    assert not err.value.retryable
    marks = [e["data"]["at"] for e in journal.events("w1") if e["kind"] == "witness"]
    assert marks == ["drain", "ready"]       # both readings journaled before the verdict


async def test_without_errors_or_without_the_flag_the_visit_passes(
        domain_file: Path, journal: Journal) -> None:
    w = await visit(domain_file, journal, [counted(10), counted(90)], fail_on_errors=True)
    assert (w.visit(0) or {})["errors"] == 0
    w = await visit(domain_file, journal, [counted(90), counted(95, 2)], fail_on_errors=False)
    assert (w.visit(0) or {})["errors"] == 2


async def test_a_visit_the_lb_could_not_count_fails_with_the_flag(
        domain_file: Path, journal: Journal) -> None:
    with pytest.raises(StepError, match="cannot tell whether clients saw errors"):
        await visit(domain_file, journal, [counted(10), "no counters"], fail_on_errors=True)


async def test_a_retried_drain_keeps_the_window_open_from_the_first(
        journal: Journal) -> None:
    w = Witness(ScriptedLB([counted(10), counted(50, 4), counted(60, 4)]), journal, "w1")
    await w.mark("drain", node="node1", group=0, out=["s1"])
    await w.mark("drain", node="node1", group=0, out=["s1"])     # a retry
    await w.mark("ready", node="node1", group=0)
    assert (w.visit(0) or {})["errors"] == 4


async def test_the_flag_is_refused_for_an_lb_without_counters(journal: Journal) -> None:
    with pytest.raises(PreconditionError, match="--fail-on-lb-errors: open-source nginx"):
        await require_counters(ScriptedLB(["open-source nginx keeps none"]))

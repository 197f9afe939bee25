"""The restart steps' check / execute against scripted service-manager and LB states."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdt import domain as dm
from zdt.adapters.lb import LbState
from zdt.adapters.services import ProcessState
from zdt.errors import StepError
from zdt.steps import Context, Options, StepSpec, servers
from zdt.steps import lb as lb_steps
from zdt.waiting import Timing


def build(ctx: Context, spec: StepSpec) -> Any:
    """A rolling restart's step object."""
    return servers.RESTART[spec.name](ctx, spec)


def proc(state: str, pid: int | None = 10) -> ProcessState:
    return ProcessState(running=state == "RUNNING", pid=pid if state == "RUNNING" else None,
                        state=state, exit_status=1 if state in ("EXITED", "FATAL") else None)


class Services:
    """Each server's states as a script: every state() call takes the next one (the last
    one repeats)."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = {k: iter(v) for k, v in scripts.items()}
        self.last: dict[str, ProcessState] = {}
        self.calls: list[tuple[str, str]] = []

    async def state(self, server: dm.Server) -> ProcessState:
        nxt = next(self.scripts[server.name], None)
        if nxt is not None:
            self.last[server.name] = proc(nxt)
        return self.last[server.name]

    async def start(self, server: dm.Server) -> None:
        self.calls.append(("start", server.name))

    async def stop(self, server: dm.Server, timeout: float) -> bool:
        self.calls.append(("stop", server.name))
        return True

    async def close(self) -> None:
        pass


class Balancer:
    def __init__(self, states: dict[str, list[LbState]]) -> None:
        self.scripts = {k: iter(v) for k, v in states.items()}
        self.last: dict[str, LbState] = {}
        self.calls: list[tuple[str, str]] = []

    async def state(self, server: dm.Server) -> LbState:
        nxt = next(self.scripts[server.name], None)
        if nxt is not None:
            self.last[server.name] = nxt
        return self.last[server.name]

    async def drain(self, servers: list[dm.Server]) -> None:
        self.calls += [("drain", s.name) for s in servers]

    async def ready(self, servers: list[dm.Server]) -> None:
        self.calls += [("ready", s.name) for s in servers]

    async def close(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def domain(domain_file: Path) -> dm.Domain:
    return dm.load(domain_file)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()


def ctx(domain: dm.Domain, services: Services, balancer: Balancer, clock: FakeClock,
        **options: float) -> Context:
    return Context(domain, services, balancer, Options(**options),
                   Timing(clock=clock, sleep=clock.sleep))


def spec(name: str) -> StepSpec:
    return StepSpec(0, 0, "node1", name, ("s1",))


@pytest.mark.parametrize(("state", "stopped"), [
    ("STOPPED", True), ("EXITED", True), ("FATAL", True),
    ("RUNNING", False), ("STOPPING", False), ("STARTING", False), ("BACKOFF", False),
])
async def test_stop_check_only_trusts_a_settled_down_state(
        domain: dm.Domain, clock: FakeClock, state: str, stopped: bool) -> None:
    step = build(ctx(domain, Services({"s1": [state]}), Balancer({}), clock),
                         spec("stop"))
    assert await step.check() is stopped


async def test_start_waits_through_starting_and_backoff(
        domain: dm.Domain, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async def accepts(server: dm.Server) -> bool:
        return True

    monkeypatch.setattr(servers, "_accepts", accepts)
    services = Services({"s1": ["STARTING", "STARTING", "BACKOFF", "STARTING", "RUNNING"]})
    step = build(ctx(domain, services, Balancer({}), clock), spec("start"))
    assert await step.execute() == {"pids": {"s1": 10}}
    assert services.calls == [("start", "s1")]


@pytest.mark.parametrize("end", ["EXITED", "FATAL"])
async def test_start_fails_at_once_when_the_process_is_down(
        domain: dm.Domain, clock: FakeClock, end: str) -> None:
    services = Services({"s1": ["STARTING", end]})
    step = build(ctx(domain, services, Balancer({}), clock, start_timeout=30),
                         spec("start"))
    with pytest.raises(StepError, match=f"s1 on node1 did not start: {end}"):
        await step.execute()
    assert clock.now < 1.0                    # no waiting for the 30 s timeout


async def test_start_times_out_when_it_never_runs(domain: dm.Domain, clock: FakeClock) -> None:
    step = build(ctx(domain, Services({"s1": ["STARTING"]}), Balancer({}), clock,
                             start_timeout=5), spec("start"))
    with pytest.raises(StepError, match="did not start: STARTING"):
        await step.execute()
    assert 5.0 <= clock.now < 5.2


def lb(admin: str, status: str, sessions: int = 0, queued: int = 0) -> LbState:
    return LbState(admin, status, sessions, queued)


@pytest.mark.parametrize(("states", "drained", "left", "seconds"), [
    ([lb("drain", "DRAIN", 2), lb("drain", "DRAIN", 1), lb("drain", "DRAIN", 0)], True, {}, 0.1),
    ([lb("drain", "DRAIN", 0, 3), lb("drain", "DRAIN", 0, 0)], True, {}, 0.1),
    ([lb("drain", "DOWN", 5)], True, {}, 0.0),            # a DOWN server has nothing to drain
    ([lb("maint", "MAINT", 1)], True, {}, 0.0),           # nor one in maintenance
    ([lb("drain", "DRAIN", 4)], False, {"s1": 4}, 2.0),   # sessions stuck: the timeout ends it
], ids=["sessions-end", "queue-ends", "down", "maint", "timeout"])
async def test_drain_never_hangs(domain: dm.Domain, clock: FakeClock, states: list[LbState],
                                 drained: bool, left: dict[str, int], seconds: float) -> None:
    balancer = Balancer({"s1": states})
    c = ctx(domain, Services({}), balancer, clock, shutdown_timeout=2)
    facts = await lb_steps.drain(c, [domain.server("s1")])
    assert facts == ({"sessions_left": left} if left else {})
    assert balancer.calls == [("drain", "s1")]
    assert clock.now <= seconds + 0.01
    assert await lb_steps.drained(c, [domain.server("s1")]) is drained


@pytest.mark.parametrize(("state", "in_rotation"), [
    (lb("ready", "UP"), True), (lb("ready", "UP 1/2"), True), (lb("ready", "no check"), True),
    (lb("ready", "DOWN"), False), (lb("drain", "DRAIN"), False), (lb("maint", "MAINT"), False),
])
async def test_ready_check(domain: dm.Domain, clock: FakeClock, state: LbState,
                           in_rotation: bool) -> None:
    step = build(ctx(domain, Services({}), Balancer({"s1": [state]}), clock),
                         spec("ready"))
    assert await step.check() is in_rotation


async def test_ready_waits_for_the_lb_check(domain: dm.Domain, clock: FakeClock) -> None:
    balancer = Balancer({"s1": [lb("ready", "DOWN"), lb("ready", "DOWN"), lb("ready", "UP")]})
    step = build(ctx(domain, Services({}), balancer, clock), spec("ready"))
    await step.execute()
    assert balancer.calls == [("ready", "s1")]


async def test_ready_fails_when_never_up(domain: dm.Domain, clock: FakeClock) -> None:
    step = build(ctx(domain, Services({}), Balancer({"s1": [lb("ready", "DOWN")]}),
                             clock, ready_timeout=3), spec("ready"))
    with pytest.raises(StepError, match=r"not UP in the load balancer after 3 s: s1 \(DOWN\)"):
        await step.execute()

"""`zdt.app` alone drives every workflow, and a new workflow kind or load balancer kind
plugs in through its registry, touching no other module. A real sandbox, under load."""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from conftest import (
    assert_lossless,
    capacity_load,
    fresh_sandbox,
    served,
    step_reached,
    zdt_background,
)
from zdt.adapters.lb.haproxy import HAProxy
from zdt.adapters.transport import Transport
from zdt.app import App, RolloutRequest
from zdt.domain import Domain, LbConfig, Server, adapter_config
from zdt.errors import ConfigError
from zdt.previewed import plan_rows
from zdt.steps import Context, StepClass, StepSpec, nodefs, servers
from zdt.workflow import kinds
from zdt.workflow.journal import StepRecord
from zdt.workflow.kinds import Field, Kind

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    with fresh_sandbox(admin=False) as info:
        yield info


def homes(sb: dict[str, Any]) -> dict[str, str]:
    return {n["name"]: (Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]}


def ends(events: list[dict[str, Any]]) -> tuple[str, str]:
    """The workflow's last state and the last event, as a watch saw them."""
    states = [e["message"] for e in events if e["kind"] == "workflow"]
    return states[-1], events[-1]["message"]


async def test_a_home_rollout_stopped_resumed_and_reverted_through_the_app_alone(
        sb: dict[str, Any]) -> None:
    wid = "20261202-000000-app1"
    watched: list[asyncio.Task[list[dict[str, Any]]]] = []

    async def watch() -> list[dict[str, Any]]:
        return [e async for e in app.watch(wid, patience=3600)]

    def operator(record: StepRecord, state: str) -> None:
        """Watches the run from its first step; stops it once node1 is back in rotation."""
        if not watched:
            watched.append(asyncio.get_running_loop().create_task(watch()))
        if (record.node, record.name, state) == ("node1", "ready", "done"):
            assert app.stop(wid) == "running"

    app = App(Path(sb["domain"]), ids=lambda: wid, observer=operator)
    prepared = app.prepare(RolloutRequest.of("home", ("domain",), archive=sb["archives"]["v2"],
                                             shutdown_timeout=10.0, retry_delay=0.1))
    assert [row["node"] for row in plan_rows(prepared.plan)] == ["node1", "node2", "node3"]
    async with capacity_load(sb["lb_url"]) as load:
        stopped = await app.start(prepared)
        assert (stopped.id, stopped.state, homes(sb)) == (
            wid, "stopped", {"node1": "v2", "node2": "v1", "node3": "v1"})
        events = await asyncio.wait_for(watched[0], 60)    # ended by the stop, in order
        assert ends(events) == ("stopped", "end")     # the witness's last reading too
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        app.observer = None
        resumed = await app.resume(wid)
        assert (resumed.state, set(homes(sb).values())) == ("succeeded", {"v2"})
        assert await served(sb) == {"v2"}
        reverted = await app.revert(wid)
        assert (reverted.state, set(homes(sb).values())) == ("reverted", {"v1"})
    assert_lossless(load.stats, reverted.report)
    assert app.history()[0]["id"] == wid and app.status()["state"] == "reverted"


async def test_a_watch_from_another_process_is_woken_by_its_commits(
        sb: dict[str, Any]) -> None:
    """The rollout runs in a zdt process of its own; the watch here has no patience to fall
    back on (an hour), so each event it sees was a wake-up from the journal's file."""
    app = App(Path(sb["domain"]))
    earlier = await app.start(RolloutRequest.of("restart", ("cluster1",),
                                                shutdown_timeout=10.0))

    async def everything(of: str) -> list[dict[str, Any]]:
        return [e async for e in app.watch(of, patience=3600)]

    proc = zdt_background("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1",
                          "--shutdown-timeout", "10")
    try:
        wid = await step_reached(sb, "node1", "drain", {"running", "done"}, proc)
        # a workflow that ended is not waited on while another one holds the domain
        assert ends(await asyncio.wait_for(everything(earlier.id), 30)) == ("succeeded",
                                                                            "end")
        events = await asyncio.wait_for(everything(wid), 120)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert ends(events) == ("succeeded", "end")
    done = {e["step"] for e in events if (e["kind"], e["message"]) == ("step", "done")}
    assert done == set(range(len(app.status(wid)["steps"])))


class Touch:
    """A toy step: a file beside the home of the node, written and removed again."""

    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        self.t: Transport = ctx.transport(spec.node)
        self.path = posixpath.join(posixpath.dirname(ctx.domain.domain.home),
                                   f"touched-{spec.node}")
        self.note = str(ctx.params["note"])

    async def check(self) -> bool:
        return await nodefs.kind(self.t, self.path) == "file"

    async def execute(self) -> dict[str, Any] | None:
        await nodefs.write_text(self.t, self.path, self.note)
        return None

    async def revert(self) -> dict[str, Any] | None:
        await nodefs.remove(self.t, self.path)
        return None


class TouchKind(Kind):
    name = "touch"
    help = "A toy: a file beside each targeted node's home, with the node out of rotation."
    fields = (Field("note", "What the file says.", required=True),)
    visit_steps = ("drain", "stop", "touch", "start", "health", "ready")
    steps: ClassVar[Mapping[str, StepClass]] = {**servers.AROUND_CHANGE, "touch": Touch}


@pytest.fixture
def touch_kind() -> Iterator[None]:
    kinds.register(TouchKind())
    yield
    kinds.unregister("touch")


async def test_a_toy_kind_plugs_in_through_the_registry(sb: dict[str, Any],
                                                        touch_kind: None) -> None:
    app = App(Path(sb["domain"]))
    with pytest.raises(ConfigError, match="--note: required by `zdt rollout touch`"):
        app.prepare(RolloutRequest.of("touch", ("cluster1",)))
    files = {n["name"]: Path(n["home"]).parent / f"touched-{n['name']}" for n in sb["nodes"]}
    # a new connection per request here (the home rollout above: keep-alive clients)
    async with capacity_load(sb["lb_url"], keep_alive=False) as load:
        done = await app.start(RolloutRequest.of("touch", ("cluster1",), note="hello",
                                                 shutdown_timeout=10.0))
        assert done.state == "succeeded", done.report["error"]
        assert {n: p.read_text() for n, p in files.items() if p.exists()} == {
            n["name"]: "hello" for n in sb["nodes"]}
        assert done.report["request"]["note"] == "hello"
        back = await app.revert(done.id)
    assert back.state == "reverted" and not any(p.exists() for p in files.values())
    assert_lossless(load.stats, back.report)


class CountingConfig(LbConfig):
    """The toy kind's own `[lb]` keys: an HAProxy admin socket and backend."""

    kind: Literal["counting"] = "counting"
    socket: str
    backend: str = "app"
    local_paths = ("socket",)


class CountingLB(HAProxy):
    """A toy LB kind: HAProxy, counting the drains and readies it was asked for."""

    asked: ClassVar[list[tuple[str, str]]] = []

    async def drain(self, servers: Sequence[Server]) -> None:
        CountingLB.asked.extend(("drain", s.name) for s in servers)
        await super().drain(servers)

    async def ready(self, servers: Sequence[Server]) -> None:
        CountingLB.asked.extend(("ready", s.name) for s in servers)
        await super().ready(servers)


def _counting(config: CountingConfig, domain: Domain, transports: Mapping[str, Transport]
              ) -> CountingLB:
    return CountingLB(config.socket, config.backend)


@pytest.fixture
def counting_lb() -> Iterator[None]:
    adapter_config.register("lb", CountingConfig, _counting)
    yield
    adapter_config.unregister("lb", "counting")


async def test_a_toy_lb_kind_plugs_in_through_the_registry(sb: dict[str, Any],
                                                           counting_lb: None) -> None:
    original = Path(sb["domain"])
    toy = original.with_name("counting.toml")      # beside it: the same state dir
    toy.write_text(original.read_text().replace('kind = "haproxy"', 'kind = "counting"'))
    CountingLB.asked = []
    done = await App(toy).start(RolloutRequest.of("restart", ("cluster1",),
                                                  shutdown_timeout=10.0))
    assert done.state == "succeeded", done.report["error"]
    names = [s.name for s in App(toy).prepare(
        RolloutRequest.of("restart", ("cluster1",))).domain.servers]
    assert sorted(CountingLB.asked) == sorted(
        [(a, n) for n in names for a in ("drain", "ready")])

"""The `zdt` command end to end on a real sandbox: slow requests in flight, kill -9 of the
rollout process then resume or revert, an operator's stop then resume, --json output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import recorded_workflows

from conftest import (
    assert_lossless,
    capacity_load,
    running_sandbox,
    step_reached,
    zdt,
    zdt_background,
)
from zdt import domain as dm
from zdt.adapters.lb.haproxy import HAProxy
from zdt.lab.load import Load

pytestmark = pytest.mark.integration



@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False) as info:
        yield info



async def all_in_rotation(info: dict[str, Any]) -> dict[str, tuple[str, str]]:
    states = await HAProxy(info["haproxy_socket"], "app").servers()
    return {name: (st.admin, st.status) for name, st in states.items()}


def both_loads(info: dict[str, Any]) -> tuple[Load, Load]:
    # steady short requests, plus 300 ms requests so that every drain has sessions to wait for
    return (capacity_load(info["lb_url"]),
            Load(info["lb_url"] + "slow?ms=300", concurrency=3, rate_per_worker=10,
                 process=True))


async def test_slow_requests_in_flight_are_drained_not_cut(sb: dict[str, Any]) -> None:
    fast, slow = both_loads(sb)
    async with fast, slow:
        await asyncio.sleep(0.5)
        result = await asyncio.to_thread(zdt, "rollout", "restart", "-d", sb["domain"],
                                         "--targets", "cluster1", "--json")
        await asyncio.sleep(0.3)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "succeeded"
    assert (fast.stats.failed, slow.stats.failed) == (0, 0), (fast.stats.errors,
                                                              slow.stats.errors)
    assert slow.stats.requests >= 20
    drains = [s for s in report["steps"] if s["name"] == "drain"]
    assert len(drains) == 3 and all(s["state"] == "done" for s in drains)
    # no 300 ms request was cut: each drain waited for those in flight on its node (how
    # long it waited is a timing, measured in bench/, not asserted here)
    assert len(report["nodes"]) == 3 and all(n["out_of_rotation"] > 0 for n in report["nodes"])


# The rollout kills itself (kill -9) the instant the journal has the state: the same
# point every run, however loaded the machine (a poll from outside could miss a step that
# lasts milliseconds).
KILL_POINTS = [("drain", "running"), ("stop", "done"), ("start", "running"),
               ("ready", "running")]
CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]


@pytest.mark.parametrize("then", ["resume", "revert"])
@pytest.mark.parametrize(("step", "state"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
async def test_kill_9_mid_rollout_then_resume_or_revert(
        sb: dict[str, Any], then: str, step: str, state: str) -> None:
    fast, slow = both_loads(sb)
    async with fast, slow:
        await asyncio.sleep(0.3)
        crashed = await asyncio.to_thread(
            subprocess.run, [*CRASH, sb["domain"], "restart", "node2", step, state],
            capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -9, crashed.stderr
        wid = crashed.stdout.split()[0]
        status = json.loads(zdt("status", wid, "-d", sb["domain"], "--json").stdout)
        assert status["state"] == "running"       # the journal says where it was cut
        # the domain is held: a new rollout is refused and names the holder
        refused = zdt("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1")
        assert refused.returncode == 4 and wid in refused.stderr
        result = await asyncio.to_thread(zdt, then, wid, "-d", sb["domain"], "--json")
        await asyncio.sleep(0.3)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == ("succeeded" if then == "resume" else "reverted")
    assert (fast.stats.failed, slow.stats.failed) == (0, 0), (fast.stats.errors,
                                                              slow.stats.errors)
    assert_lossless(fast.stats, report)      # the killed run, then the resume or revert
    assert [r["action"] for r in report["witness"]["runs"]] == ["run", then]
    assert report["witness"]["runs"][0]["complete"] is False
    expected = {"done"} if then == "resume" else {"reverted", "pending"}
    assert {s["state"] for s in report["steps"]} <= expected
    assert await all_in_rotation(sb) == {f"node{i}-s1": ("ready", "UP") for i in (1, 2, 3)}


async def test_operator_stop_then_resume(sb: dict[str, Any]) -> None:
    proc = zdt_background("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1",
                 "--delay-between-nodes", "1", "--json")
    wid = await step_reached(sb, "node1", "ready", {"done"}, proc)
    stopped = zdt("stop", wid, "-d", sb["domain"])
    assert stopped.returncode == 0, stopped.stderr
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 5
    report = json.loads(out)
    assert report["state"] == "stopped"
    # stopped between node visits: each node's steps all done or all pending, never half
    # (node2's visit runs to its end when the stop comes after the 1 s between nodes)
    for n in ("node1", "node2", "node3"):
        assert len({s["state"] for s in report["steps"] if s["node"] == n}) == 1, report
    assert {s["state"] for s in report["steps"] if s["node"] == "node3"} == {"pending"}
    resumed = zdt("resume", wid, "-d", sb["domain"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert {s["state"] for s in json.loads(resumed.stdout)["steps"]} == {"done"}
    history = json.loads(zdt("history", "-d", sb["domain"], "--json").stdout)
    assert [(h["id"], h["state"]) for h in history] == [(wid, "succeeded")]


def test_sandbox_cli_json(short_dir: Path) -> None:
    d = short_dir / "cli"
    up = zdt("sandbox", "up", "--dir", str(d), "--nodes", "2", "--servers-per-node", "1",
             "--json")
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert {"dir", "domain", "lb_url", "haproxy_socket", "nodes"} <= set(info)
        assert info == json.loads((d / "sandbox.json").read_text())
        node = info["nodes"][0]
        assert {"name", "root", "home", "servers"} <= set(node)
        assert {"name", "port", "url"} <= set(node["servers"][0])
        again = zdt("sandbox", "up", "--dir", str(d), "--json")
        assert again.returncode == 2 and again.stdout == ""
    finally:
        down = zdt("sandbox", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr


async def test_kill_9_during_the_auto_revert_then_revert(sb: dict[str, Any]) -> None:
    home = Path(next(n["home"] for n in sb["nodes"] if n["name"] == "node2"))
    (home / "FAIL_STARTS").write_text("3")
    fast, slow = both_loads(sb)
    async with fast, slow:
        await asyncio.sleep(0.3)
        proc = zdt_background("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1",
                     "--retry-delay", "0.1", "--json")
        wid = await step_reached(sb, "node2", "start", {"reverting"}, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert json.loads(zdt("status", wid, "-d", sb["domain"], "--json").stdout)[
            "state"] == "reverting"
        result = await asyncio.to_thread(zdt, "revert", wid, "-d", sb["domain"], "--json")
        await asyncio.sleep(0.3)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["state"] == "reverted"
    assert (fast.stats.failed, slow.stats.failed) == (0, 0), (fast.stats.errors,
                                                              slow.stats.errors)
    assert await all_in_rotation(sb) == {f"node{i}-s1": ("ready", "UP") for i in (1, 2, 3)}


async def test_preconditions_refuse_and_change_nothing(sb: dict[str, Any]) -> None:
    """A server already out of rotation: exit 3 naming it; no workflow, no pid changed."""
    haproxy = HAProxy(sb["haproxy_socket"], "app")
    server = dm.load(sb["domain"]).server("node3-s1")
    await haproxy.drain([server])
    before = await all_in_rotation(sb)
    result = zdt("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "node3: node3-s1: not in rotation in the load balancer (drain, DRAIN)" in \
        result.stderr
    assert await all_in_rotation(sb) == before
    assert recorded_workflows(sb["domain"]) == []
    await haproxy.ready([server])


def test_resume_of_an_unknown_workflow_touches_nothing(sb: dict[str, Any]) -> None:
    state_dir = dm.load(sb["domain"]).state_dir
    for action in ("resume", "revert"):
        result = zdt(action, "no-such-id", "-d", sb["domain"])
        assert result.returncode == 2
        assert "no journal yet" in result.stderr
        assert list(state_dir.iterdir()) == []

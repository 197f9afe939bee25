"""Two HAProxies in front of one sandbox (an HA pair: `[[lb]]` twice, the second's Runtime
API over TCP), the load split across both: every drain and ready reaches both, the
witness adds up what both counted, and one of them unreachable fails the step — the
workflow ends with every server in rotation on both, never in on one and out on the
other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    fresh_sandbox,
    lossless_split,
    served,
    split_load,
    step_reached,
    zdt,
    zdt_background,
    zdt_under_split_load,
)
from zdt import domain as dm
from zdt.adapters import load_balancer
from zdt.adapters.lb.every import EveryLB
from zdt.adapters.lb.haproxy import HAProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    with fresh_sandbox(nodes=3, servers_per_node=1, admin=False, lbs=2) as info:
        yield info


def both(sb: dict[str, Any]) -> EveryLB:
    lb = load_balancer(dm.load(sb["domain"]), {})
    assert isinstance(lb, EveryLB) and len(lb.lbs) == 2
    return lb


async def rotation(sb: dict[str, Any]) -> list[dict[str, tuple[str, str]]]:
    """Each HAProxy's view: server → (admin, status)."""
    out = []
    for lb in both(sb).lbs:
        assert isinstance(lb, HAProxy)
        states = await lb.servers()
        out.append({name: (st.admin, st.status) for name, st in states.items()})
    return out


async def all_ready(sb: dict[str, Any]) -> bool:
    views = await rotation(sb)
    return all(set(v.values()) == {("ready", "UP")} for v in views)


async def test_a_home_rollout_through_both_then_its_revert(sb: dict[str, Any]) -> None:
    args = ["rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
            sb["archives"]["v2"], "--shutdown-timeout", "10", "--json"]
    loads = split_load(sb)
    async with loads[0], loads[1]:
        await asyncio.sleep(0.2)
        proc = zdt_background(*args)
        await step_reached(sb, "node2", "drain", {"done"}, proc)
        views = await rotation(sb)          # node2 is out on both LBs, the others in
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        await asyncio.sleep(0.2)
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    lossless_split(loads, report)
    for view in views:
        assert view["node2-s1"][0] == "drain", views
        assert {view[s][0] for s in ("node1-s1", "node3-s1")} == {"ready"}, views
    assert await all_ready(sb)
    for url in sb["lb_urls"]:
        assert await served({"lb_url": url}) == {"v2"}
    await zdt_under_split_load(sb, "revert", report["id"], "-d", sb["domain"])
    for url in sb["lb_urls"]:
        assert await served({"lb_url": url}) == {"v1"}
    assert await all_ready(sb)


async def test_one_lb_unreachable_fails_the_step_and_both_end_in_rotation(
        sb: dict[str, Any]) -> None:
    """The first HAProxy's admin socket is moved away once node1 is back: node2's drain
    reaches the second LB only and fails (retried, then reverted). Once the socket is back,
    a revert leaves every server in rotation on both."""
    sock = Path(sb["haproxy_socket"])
    hidden = sock.with_name("moved.sock")
    loads = split_load(sb)
    async with loads[0], loads[1]:
        await asyncio.sleep(0.2)
        proc = zdt_background("rollout", "restart", "-d", sb["domain"], "--targets",
                              "cluster1", "--retries", "1", "--retry-delay", "0.2",
                              "--shutdown-timeout", "5", "--delay-between-nodes", "0.5",
                              "--json")
        wid = await step_reached(sb, "node1", "ready", {"done"}, proc)
        sock.rename(hidden)
        try:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=120)
        finally:
            hidden.rename(sock)
        report = json.loads(out)
        assert proc.returncode == 1 and report["state"] in ("reverted", "revert-failed"), out
        assert "1 of 2 load balancers failed: lb[0] (haproxy)" in report["error"], report
        assert str(sock) in report["error"]
        node2 = [s for s in report["steps"] if s["node"] == "node2"]
        assert [s["name"] for s in node2 if s["attempts"]] == ["drain"]   # never stopped
        if report["state"] == "revert-failed":
            back = await asyncio.to_thread(zdt, "revert", wid, "-d", sb["domain"], "--json")
            assert back.returncode == 0, back.stdout + back.stderr
        await asyncio.sleep(0.2)
    assert [load.stats.failed for load in loads] == [0, 0]
    assert await all_ready(sb)

"""A rolling restart of a real sandbox (supervisord + HAProxy) under load through the LB."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, running_sandbox
from zdt import domain as dm
from zdt import http, report
from zdt.adapters.lb.haproxy import HAProxy
from zdt.app import App, RolloutRequest
from zdt.workflow.journal import Journal
from zdt.workflow.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.integration


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 2) as info:
        yield info


@pytest.fixture
def sb1(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 1) as info:
        yield info


async def pids(info: dict[str, Any]) -> dict[str, int]:
    found = {}
    for node in info["nodes"]:
        for server in node["servers"]:
            body = json.loads((await http.get(server["url"])).body)
            found[server["name"]] = body["pid"]
    return found


async def lb_states(info: dict[str, Any]) -> dict[str, tuple[str, str]]:
    states = await HAProxy(info["haproxy_socket"], "app").servers()
    return {name: (st.admin, st.status) for name, st in states.items()}


def journal_of(info: dict[str, Any]) -> Journal:
    import time

    return SqliteJournal(dm.load(info["domain"]).state_dir, time.time)


async def restart_under_load(info: dict[str, Any], request: RolloutRequest
                             ) -> tuple[str, Any]:
    async with capacity_load(info["lb_url"]) as load:
        await asyncio.sleep(0.3)
        wid = (await App(Path(info["domain"])).start(request)).id
        await asyncio.sleep(0.3)
    return wid, load.stats


async def test_rolling_restart_loses_no_request(sb: dict[str, Any]) -> None:
    before = await pids(sb)
    wid, stats = await restart_under_load(sb, RolloutRequest.of("restart", ("domain",),
                                                                shutdown_timeout=10))
    journal = journal_of(sb)
    try:
        assert_lossless(stats, report.workflow(journal, wid))
    finally:
        journal.close()
    assert set(stats.versions) == {"v1"}
    after = await pids(sb)
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before), (before, after)
    lb_servers = [s["name"] for n in sb["nodes"] for s in n["servers"] if s["name"] != "admin"]
    assert await lb_states(sb) == {name: ("ready", "UP") for name in lb_servers}
    journal = journal_of(sb)
    try:
        assert journal.workflow(wid).state == "succeeded"
        steps = journal.steps(wid)
        assert {s.state for s in steps} == {"done"}
        assert [s.node for s in steps if s.name == "drain"] == ["node1", "node2", "node3"]
        assert steps[0].servers == ("admin",)
    finally:
        journal.close()


async def test_failed_start_is_retried_then_reverted(sb1: dict[str, Any]) -> None:
    """node2's server fails to start three times (1 try + 2 retries): the workflow reverts
    node2 and node1, leaves node3 alone, and traffic never sees a failure."""
    home = Path(next(n["home"] for n in sb1["nodes"] if n["name"] == "node2"))
    (home / "FAIL_STARTS").write_text("3")
    before = await pids(sb1)
    request = RolloutRequest.of("restart", ("cluster1",), shutdown_timeout=10, retries=2,
                                retry_delay=0.2)
    wid, stats = await restart_under_load(sb1, request)
    assert stats.failed == 0, stats.errors
    assert (home / "FAIL_STARTS").read_text().strip() == "0"
    journal = journal_of(sb1)
    try:
        wf = journal.workflow(wid)
        assert wf.state == "reverted"
        assert "node2-s1 on node2 did not start" in (wf.error or "")
        by = {(s.node, s.name): s for s in journal.steps(wid)}
        assert by[("node2", "start")].attempts == 3 + 1      # 3 forward tries, 1 revert
        states = {key: s.state for key, s in by.items()}
        assert {v for (node, _), v in states.items() if node == "node1"} == {"reverted"}
        assert [states[("node2", n)] for n in ("drain", "stop", "start", "health", "ready")] == \
            ["reverted", "reverted", "reverted", "pending", "pending"]
        assert {v for (node, _), v in states.items() if node == "node3"} == {"pending"}
        retries = [e for e in journal.events(wid) if e["kind"] == "retry"]
        assert len(retries) == 2
    finally:
        journal.close()
    after = await pids(sb1)
    assert after["node3-s1"] == before["node3-s1"]      # never touched
    assert after["node1-s1"] != before["node1-s1"]      # restarted before the failure
    assert await lb_states(sb1) == {n: ("ready", "UP") for n in before if n != "admin"}

"""The LB's witness in real rollouts: what HAProxy counted, errors that fail a visit with
--fail-on-lb-errors, and the listen-backlog check naming a server that cannot take a burst."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, running_sandbox, zdt
from zdt import domain as dm
from zdt import report
from zdt.app import App, RolloutRequest
from zdt.workflow.journal import StepRecord
from zdt.workflow.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.integration


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 1) as info:
        yield info


def summary(info: dict[str, Any], wid: str) -> dict[str, Any]:
    journal = SqliteJournal(dm.load(info["domain"]).state_dir, lambda: 0.0)
    try:
        return report.workflow(journal, wid)
    finally:
        journal.close()


def fail_through_lb(url: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "fail", timeout=5)


async def test_the_witness_counts_what_the_clients_sent_and_sees_no_error(
        sb: dict[str, Any]) -> None:
    async with capacity_load(sb["lb_url"]) as load:
        await asyncio.sleep(0.3)
        wid = (await App(Path(sb["domain"])).start(
            RolloutRequest.of("restart", ("cluster1",), shutdown_timeout=10.0))).id
        await asyncio.sleep(0.3)
    s = summary(sb, wid)
    assert s["state"] == "succeeded"
    assert_lossless(load.stats, s)
    w = s["witness"]
    assert w["source"] == "HAProxy backend app" and w["complete"] is True
    assert [(v["node"], v["in_rotation"], v["backend_servers"], v["errors"])
            for v in w["visits"]] == [("node1", 2, 3, 0), ("node2", 2, 3, 0), ("node3", 2, 3, 0)]
    assert all(v["requests"] > 0 for v in w["visits"])


async def test_errors_the_lb_saw_during_a_visit_fail_it_with_fail_on_lb_errors(
        sb: dict[str, Any]) -> None:
    """Three 500s through the LB while node2 is out: its ready fails (not retried), the
    rollout reverts, and the witness names node2."""
    def on_step(record: StepRecord, state: str) -> None:
        if (record.node, record.name, state) == ("node2", "stop", "done"):
            fail_through_lb(sb["lb_url"], 3)

    runner = App(Path(sb["domain"]), observer=on_step)
    request = RolloutRequest.of("restart", ("cluster1",), shutdown_timeout=10.0, retry_delay=0.1,
                                fail_on_lb_errors=True)
    wid = (await runner.start(request)).id
    s = summary(sb, wid)
    assert s["state"] == "reverted"
    ready = next(st for st in s["steps"] if (st["node"], st["name"]) == ("node2", "ready"))
    journal = SqliteJournal(dm.load(sb["domain"]).state_dir, lambda: 0.0)
    try:
        retries = [e for e in journal.events(wid) if e["kind"] == "retry"]
    finally:
        journal.close()
    assert (ready["state"], retries) == ("reverted", [])     # failed once, not retried
    assert "node2: the load balancer saw 3 error(s) while the node was out" in s["error"]
    assert "3 5xx" in s["error"]
    w = s["witness"]
    assert (w["http_5xx"], w["error_visits"]) == (3, ["node2"])
    assert [v["errors"] for v in w["visits"]] == [0, 3]


async def test_without_the_flag_errors_are_reported_not_fatal(sb: dict[str, Any]) -> None:
    def on_step(record: StepRecord, state: str) -> None:
        if (record.node, record.name, state) == ("node3", "stop", "done"):
            fail_through_lb(sb["lb_url"], 2)

    wid = (await App(Path(sb["domain"]), observer=on_step).start(
        RolloutRequest.of("restart", ("cluster1",), shutdown_timeout=10.0))).id
    s = summary(sb, wid)
    assert (s["state"], s["witness"]["http_5xx"], s["witness"]["error_visits"]) == (
        "succeeded", 2, ["node3"])
    shown = zdt("status", wid, "-d", sb["domain"])
    assert "2 5xx" in shown.stdout and "(errors while node3 was out)" in shown.stdout


def test_a_small_listen_backlog_is_named_with_the_fix_and_nothing_is_refused(
        sb: dict[str, Any]) -> None:
    home = Path(next(n["home"] for n in sb["nodes"] if n["name"] == "node2"))
    (home / "BACKLOG").write_text("5\n")
    restarted = zdt("rollout", "restart", "-d", sb["domain"], "--targets", "node2-s1")
    assert restarted.returncode == 0, restarted.stderr
    result = zdt("preview", "-d", sb["domain"], "rollout", "restart", "--targets", "cluster1",
                 "--json")
    assert result.returncode == 0, result.stderr
    checks = {c["server"]: c for c in json.loads(result.stdout)["preconditions"]
              if c["name"] == "listen backlog"}
    assert {k: (c["ok"], c["warn"]) for k, c in checks.items()} == {
        "node1-s1": (True, False), "node2-s1": (True, True), "node3-s1": (True, False)}
    assert checks["node2-s1"]["detail"].startswith("listen backlog 5 < 128")
    assert "net.core.somaxconn on node2" in checks["node2-s1"]["detail"]
    assert checks["node1-s1"]["detail"] == "1024"
    table = zdt("preview", "-d", sb["domain"], "rollout", "restart", "--targets", "cluster1")
    assert table.returncode == 0 and "warn" in table.stdout
    rollout = zdt("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1", "--json")
    assert rollout.returncode == 0, rollout.stderr
    [warning] = json.loads(rollout.stdout)["warnings"]
    assert warning.startswith("node2: node2-s1: listen backlog 5 < 128")

"""Metric gates on a real sandbox of 3 nodes behind HAProxy, under load at capacity: a
release that passes its health check but answers 20 % of its requests with 500 is judged
after its first node's ready, taken out at once and reverted — the only failed requests
are its own answers in its window, which the report counts, as the clients and HAProxy
counted them too; a slow release is reverted with 0 failed requests; the good release
passes the same gate on every node."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import capacity_load, running_sandbox, zdt, zdt_under_load

pytestmark = pytest.mark.integration

GATE = """
[analysis]
window = 4
interval = 1
failure_limit = 2
"""


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, nodes=3, admin=False) as info:
            domain = Path(info["domain"])
            domain.write_text(domain.read_text() + GATE)
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def homes(sb: dict[str, Any]) -> list[str]:
    return [(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]]


def home_args(sb: dict[str, Any], version: str, *extra: str) -> list[str]:
    return ["rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
            sb["archives"][version], "--shutdown-timeout", "10", *extra]


async def test_a_release_that_serves_500s_is_reverted_by_the_gate(sb: dict[str, Any]) -> None:
    async with capacity_load(sb["lb_url"]) as load:
        await asyncio.sleep(0.2)
        result = await asyncio.to_thread(zdt, *home_args(sb, "degraded", "--json"))
        await asyncio.sleep(0.2)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "reverted"
    assert homes(sb) == ["v1", "v1", "v1"]
    [verdict] = report["analysis"]
    assert (verdict["node"], verdict["verdict"], verdict["failed_checks"]) == ("node1",
                                                                               "failed", 2)
    failing = [m for c in verdict["checks"] for m in c["measurements"] if m["ok"] is False]
    assert {m["name"] for m in failing} == {"5xx ratio"}
    assert all(0.15 < m["value"] < 0.25 for m in failing), failing   # every 5th request
    # the only failed requests are the degraded server's 500s, as the report counts them,
    # as the clients saw them and as HAProxy counted them
    bad = verdict["served"]["http_5xx"]
    assert bad > 0 and load.stats.failed == bad, (load.stats.as_dict(), verdict["served"])
    assert set(load.stats.errors) == {"HTTP 500"}, load.stats.errors
    w = report["witness"]
    assert (w["http_5xx"], w["errors"], w["connection_errors"]) == (bad, bad, 0), w
    assert "with a 5xx" in verdict["sentence"] and "analysis failed" in report["error"]
    # node1 judged and reverted; node2 and node3 never touched
    assert [(s["node"], s["state"]) for s in report["steps"] if s["name"] == "analysis"] == [
        ("node1", "reverted"), ("node2", "pending"), ("node3", "pending")]
    print(verdict["sentence"], load.stats.as_dict())


async def test_a_slow_release_is_reverted_with_no_failed_request(sb: dict[str, Any]) -> None:
    result = await zdt_under_load(sb["lb_url"], *home_args(sb, "degraded-slow", "--json"))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "reverted" and homes(sb) == ["v1", "v1", "v1"]
    [verdict] = report["analysis"]
    assert verdict["verdict"] == "failed"
    failing = {m["name"] for c in verdict["checks"] for m in c["measurements"]
               if m["ok"] is False}
    assert failing == {"response time ms"}, verdict


async def test_the_good_release_passes_the_same_gate(sb: dict[str, Any]) -> None:
    result = await zdt_under_load(sb["lb_url"], *home_args(sb, "v2", "--json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert homes(sb) == ["v2", "v2", "v2"]
    assert [(v["node"], v["verdict"]) for v in report["analysis"]] == [
        ("node1", "passed"), ("node2", "passed"), ("node3", "passed")]
    assert all(v["served"]["http_5xx"] == 0 for v in report["analysis"])
    # the text report shows every verdict
    shown = zdt("status", report["id"], "-d", sb["domain"])
    assert shown.stdout.count("analysis passed") == 3, shown.stdout
    back = zdt("revert", report["id"], "-d", sb["domain"])
    assert back.returncode == 0 and homes(sb) == ["v1", "v1", "v1"], back.stdout


async def test_no_analysis_leaves_the_gate_out(sb: dict[str, Any]) -> None:
    result = zdt("preview", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
                 sb["archives"]["v2"], "--no-analysis", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [v for v in json.loads(result.stdout)["plan"] if "analysis" in v["steps"]]
    gated = json.loads(zdt("preview", "home", "-d", sb["domain"], "--targets", "cluster1",
                           "--archive", sb["archives"]["v2"], "--json").stdout)
    assert [(v["node"], v["steps"][-2:]) for v in gated["plan"]] == [
        (n, ["ready", "analysis"]) for n in ("node1", "node2", "node3")]

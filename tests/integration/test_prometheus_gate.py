"""The metric gate with a real Prometheus (Debian's package, on a free port) scraping the
sandbox's HAProxy through its built-in exporter every second, and the gate judging by a
PromQL query alone (lb_counters = false): preview asks Prometheus and refuses a bad query
with nothing changed; a release serving 20 % of 500s is reverted under load after its
first node; the good release passes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import capacity_load, running_sandbox, zdt, zdt_under_load
from zdt.lab.prometheus import Prometheus

pytestmark = pytest.mark.integration

# the 5xx share of the judged servers' answers, as HAProxy's exporter counts them
RATIO = ('sum(rate(haproxy_server_http_responses_total{proxy="app",server=~"$servers",'
         'code="5xx"}[3s])) / sum(rate(haproxy_server_http_responses_total{proxy="app",'
         'server=~"$servers"}[3s]))')


def gate(url: str, query: str) -> str:
    return f"""
[analysis]
window = 4
interval = 2
failure_limit = 2
lb_counters = false

[[analysis.prometheus]]
name = "5xx share"
url = "{url}"
query = '{query}'
max = 0.05
"""


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, nodes=3, admin=False) as info, \
                Prometheus(info["metrics_urls"]) as prometheus:
            domain = Path(info["domain"])
            plain = domain.read_text()
            domain.write_text(plain + gate(prometheus.url, RATIO))
            bad = domain.with_name("bad-query.toml")
            bad.write_text(plain + gate(prometheus.url, "sum(rate(haproxy_server_http_"))
            info["bad_domain"] = str(bad)
            info["prometheus"] = prometheus
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def homes(sb: dict[str, Any]) -> list[str]:
    return [(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]]


def digests(sb: dict[str, Any]) -> dict[str, str]:
    state = Path(sb["domain"]).parent / "state"
    files = [*state.rglob("*"), *(Path(n["home"]) / "VERSION" for n in sb["nodes"])]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def home_args(domain: str, sb: dict[str, Any], version: str, *extra: str) -> list[str]:
    return ["home", "-d", domain, "--targets", "cluster1", "--archive",
            sb["archives"][version], "--shutdown-timeout", "10", "--json", *extra]


def test_preview_asks_prometheus_and_refuses_a_bad_query(sb: dict[str, Any]) -> None:
    good = zdt("preview", *home_args(sb["domain"], sb, "v2"))
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    [check] = [c for c in report["preconditions"] if c["name"] == "analysis: 5xx share"]
    assert check["ok"] and sb["prometheus"].url in check["detail"]
    assert report["analysis"]["sources"] == ["prometheus 5xx share"]
    before = digests(sb)
    for command in ("preview", "rollout"):
        bad = zdt(command, *home_args(sb["bad_domain"], sb, "v2"))
        assert bad.returncode == 3, bad.stdout + bad.stderr
        assert "analysis: 5xx share" in bad.stdout + bad.stderr
        assert "400" in bad.stdout + bad.stderr            # Prometheus's own parse error
    assert digests(sb) == before


async def test_a_release_serving_500s_is_reverted_by_a_promql_gate(sb: dict[str, Any]) -> None:
    async with capacity_load(sb["lb_url"]) as load:
        await asyncio.sleep(0.2)
        result = await asyncio.to_thread(zdt, "rollout", *home_args(sb["domain"], sb,
                                                                     "degraded"))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "reverted" and homes(sb) == ["v1", "v1", "v1"]
    [verdict] = report["analysis"]
    assert (verdict["node"], verdict["verdict"]) == ("node1", "failed")
    failing = [m for c in verdict["checks"] for m in c["measurements"] if m["ok"] is False]
    assert {m["name"] for m in failing} == {"5xx share"}
    assert all(0.1 < m["value"] < 0.3 for m in failing), failing
    # the degraded server's 500s are the only failed requests, and the report counts them
    assert load.stats.failed == verdict["served"]["http_5xx"] > 0, load.stats.as_dict()


async def test_the_good_release_passes_the_promql_gate(sb: dict[str, Any]) -> None:
    result = await zdt_under_load(sb["lb_url"], "rollout",
                                  *home_args(sb["domain"], sb, "v2"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [(v["node"], v["verdict"]) for v in report["analysis"]] == [
        ("node1", "passed"), ("node2", "passed"), ("node3", "passed")]
    assert homes(sb) == ["v2", "v2", "v2"]
    back = zdt("revert", report["id"], "-d", sb["domain"])
    assert back.returncode == 0 and homes(sb) == ["v1", "v1", "v1"], back.stdout

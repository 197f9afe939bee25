"""A fleet as it really stands: 8 nodes, each a host of its own reached over SSH, behind
two HAProxies on hosts of their own (an HA pair, their Runtime API reached over each LB
host's SSH connection), the load split across both. A home rollout at `--batch 25%`
drains and readies every server on both together: 0 failed requests, as the clients and
both LBs counted them; then its revert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import fresh_sandbox, needs_isolation, served, zdt_under_split_load
from zdt.adapters.lb.haproxy import HAProxy

pytestmark = [pytest.mark.integration, needs_isolation]


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, Any]]:
    with fresh_sandbox(nodes=8, servers_per_node=1, admin=False, isolated=True,
                       lbs=2) as info:
        yield info


def homes(sb: dict[str, Any]) -> set[str]:
    return {(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]}


async def all_ready(sb: dict[str, Any]) -> bool:
    views = [await HAProxy(sock, "app").servers() for sock in sb["haproxy_sockets"]]
    return all({(s.admin, s.status) for s in v.values()} == {("ready", "UP")} for v in views)


async def test_a_batch_rollout_of_eight_hosts_through_two_remote_lbs(
        fleet: dict[str, Any]) -> None:
    text = Path(fleet["domain"]).read_text()
    assert 'node = "lb1"' in text and 'node = "lb2"' in text   # reached over SSH
    report = await zdt_under_split_load(
        fleet, "rollout", "home", "-d", fleet["domain"], "--targets", "cluster1",
        "--archive", fleet["archives"]["v2"], "--batch", "25%", "--shutdown-timeout", "10")
    assert [v["batch"] for v in report["nodes"]] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert homes(fleet) == {"v2"} and await all_ready(fleet)
    for url in fleet["lb_urls"]:
        assert await served({"lb_url": url}) == {"v2"}
    await zdt_under_split_load(fleet, "revert", report["id"], "-d", fleet["domain"])
    assert homes(fleet) == {"v1"} and await all_ready(fleet)


async def test_two_remote_nginx_with_the_lua_peer_list() -> None:
    """nginx on two LB hosts of their own: zdt edits each one's upstream file over SSH and
    tells its Lua peer list through the forwarded admin socket; a restart under load split
    across both: 0 failed, as the clients and both nginx counted."""
    with fresh_sandbox(nodes=3, servers_per_node=1, admin=False, isolated=True, lbs=2,
                       lb="nginx") as sb:
        text = Path(sb["domain"]).read_text()
        assert 'kind = "nginx"' in text and 'node = "lb2"' in text
        report = await zdt_under_split_load(
            sb, "rollout", "restart", "-d", sb["domain"], "--targets", "cluster1",
            "--shutdown-timeout", "10")
        assert "nginx on lb1" in report["witness"]["source"]
        for node in sb["lb_nodes"]:     # each file as zdt left it: every server up
            upstream = Path(sb["dir"], "nodes", node, "srv", "nginx", "upstream.conf")
            assert " down;" not in upstream.read_text()

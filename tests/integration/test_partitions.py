"""Partition restarts: only the named partitions (supervisord groups) are restarted, one
node at a time, each drained and checked on its own; the rest keep their pids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import capacity_load, running_sandbox, zdt
from zdt import http

pytestmark = pytest.mark.integration



@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False, partitions=("p1", "p2")) as info:
        yield info



async def pids(sb: dict[str, Any]) -> dict[str, int]:
    out = {}
    for node in sb["nodes"]:
        for s in node["servers"]:
            out[s["name"]] = json.loads((await http.get(s["url"])).body)["pid"]
    return out


async def test_only_the_named_partitions_restart(sb: dict[str, Any]) -> None:
    before = await pids(sb)
    async with capacity_load(sb["lb_url"]) as load:
        await asyncio.sleep(0.2)
        done = await asyncio.to_thread(zdt, "rollout", "restart", "-d", sb["domain"],
                                       "--targets", "cluster1", "--partitions", "p1", "--json")
        await asyncio.sleep(0.2)
    assert done.returncode == 0, done.stderr
    assert load.stats.failed == 0, load.stats.errors
    after = await pids(sb)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"node1-s1-p1", "node2-s1-p1", "node3-s1-p1"}
    steps = json.loads(done.stdout)["steps"]
    assert {s["node"]: s["servers"] for s in steps if s["name"] == "drain"} == {
        "node1": ["node1-s1-p1"], "node2": ["node2-s1-p1"], "node3": ["node3-s1-p1"]}


@pytest.mark.parametrize(("args", "words"), [
    (["--partitions", "p9"], "no partition p9"),
    (["--partitions", "p1", "--targets", "admin"], "names no admin server"),
])
def test_unknown_partitions_are_refused(sb: dict[str, Any], args: list[str],
                                        words: str) -> None:
    base = ["rollout", "restart", "-d", sb["domain"], "--targets", "cluster1"]
    result = zdt(*base, *args)
    assert result.returncode == 2 and words in result.stderr, result.stderr

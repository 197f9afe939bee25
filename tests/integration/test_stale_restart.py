"""Stale processes across the fleet drive a targeted restart: six servers (one per node)
load a shared library from their home; it is replaced under two of them (as an upgrade of
a library package does: a new file renamed over the old); `zdt stale -d` names exactly
those two with the file; `zdt rollout restart --stale` restarts only them, under load with
0 failed requests; then nothing is stale and `--stale` has nothing to restart (exit 0)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_sandbox, zdt, zdt_under_load

pytestmark = pytest.mark.integration

LIBRARY = sorted(glob.glob("/usr/lib/*/libz.so.1") + glob.glob("/lib/*/libz.so.1"))[0]


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, nodes=6, admin=False) as info:
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def native(node: dict[str, Any]) -> Path:
    return Path(node["home"]) / "lib" / "native" / "libapp.so"


def upgrade(path: Path) -> None:
    """What a package upgrade does to a file: a new copy renamed over it."""
    fresh = path.with_name(path.name + ".new")
    shutil.copyfile(LIBRARY, fresh)
    os.replace(fresh, path)


def scan(sb: dict[str, Any]) -> dict[str, Any]:
    result = zdt("stale", "-d", sb["domain"], "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    assert all("error" not in n for n in found["nodes"]), found["nodes"]
    return found


def pids(found: dict[str, Any]) -> dict[str, int]:
    return {r["server"]: r["pid"] for r in found["servers"]}


async def test_stale_servers_are_found_and_restarted_exactly(sb: dict[str, Any]) -> None:
    for node in sb["nodes"]:
        native(node).parent.mkdir()
        shutil.copyfile(LIBRARY, native(node))
    loaded = zdt("rollout", "restart", "-d", sb["domain"], "--targets", "cluster1",
                 "--batch", "3", "--shutdown-timeout", "10")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert scan(sb)["stale"] == []
    for node in sb["nodes"][:2]:
        upgrade(native(node))
    found = scan(sb)
    assert found["stale"] == ["node1-s1", "node2-s1"]
    for row in found["servers"][:2]:
        [process] = row["stale"]
        assert process["pid"] == row["pid"]
        assert process["files"] == [{"path": str(native(sb["nodes"][int(row["node"][4:]) - 1])),
                                     "why": "replaced", "package": None}]
    text = zdt("stale", "-d", sb["domain"]).stdout
    assert "node1-s1 on node1" in text and "2 server(s) to restart" in text
    before = pids(found)
    preview = zdt("preview", "restart", "-d", sb["domain"], "--stale", "--json")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    shown = json.loads(preview.stdout)
    assert [v["node"] for v in shown["plan"]] == ["node1", "node2"]
    assert "restarting node1-s1, node2-s1" in shown["notes"][0]["message"]
    assert "replaced" in shown["notes"][0]["message"]
    result = await zdt_under_load(sb["lb_url"], "rollout", "restart", "-d", sb["domain"],
                                  "--stale", "--shutdown-timeout", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["request"]["targets"] == ["node1-s1", "node2-s1"]
    assert {s["node"] for s in report["steps"]} == {"node1", "node2"}
    assert report["notes"][0]["servers"][0]["server"] == "node1-s1"
    after = scan(sb)
    assert after["stale"] == []
    changed = {s for s in before if before[s] != pids(after)[s]}
    assert changed == {"node1-s1", "node2-s1"}, (before, pids(after))
    # nothing stale: nothing to restart, and no workflow
    history = zdt("history", "-d", sb["domain"], "--json").stdout
    again = zdt("rollout", "restart", "-d", sb["domain"], "--stale")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to restart" in again.stdout
    assert zdt("history", "-d", sb["domain"], "--json").stdout == history

"""A live update driven from the control host: a counter runs under `zdt live` on node1 of
the isolated sandbox (its own network namespace, reached over SSH); `zdt live update -d
domain.toml --node node1 web --archive A` copies the archive (and its manifest) to the
node, verified there, and the node's zdt hands the workload over under load: 0 failed,
every increment kept; `zdt live status -d` lists every node's workloads; a bad archive
is refused with nothing changed."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_isolation, running_sandbox, zdt
from zdt import http
from zdt.app import App
from zdt.lab.load import Load
from zdt.lab.sandbox.layout import IMPORT_ROOT

pytestmark = [pytest.mark.integration, needs_isolation]

PORT = 9100


@pytest.fixture
def isb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 2, 1, admin=False, isolated=True) as info:
        domain = Path(info["domain"])
        # the nodes' zdt: this one, its state root private to each node (/srv is)
        domain.write_text(domain.read_text() + "\n[live]\nzdt = " + json.dumps(
            ["/usr/bin/env", f"PYTHONPATH={IMPORT_ROOT}", "XDG_STATE_HOME=/srv/live/state",
             sys.executable, "-m", "zdt.cli"]) + "\n")
        root = Path(info["nodes"][0]["home"]).parents[2]
        (root / "srv" / "live" / "v1").mkdir(parents=True)
        (root / "srv" / "live" / "v1" / "VERSION").write_text("v1\n")
        address = info["nodes"][0]["address"]
        started = asyncio.run(App(domain).live_on_node("node1", [
            "run", "--name", "web", "--listen", f"{address}:{PORT}", "--home", "/srv/live/v1",
            "--detach", "--", sys.executable, "-m", "zdt.lab.counter"]))
        assert started.returncode == 0, started.stdout + started.stderr
        info["live_url"] = f"http://{address}:{PORT}/"
        try:
            yield info
        finally:
            asyncio.run(App(domain).live_on_node("node1", ["stop", "web"]))


def archive_of(base: Path, version: str) -> Path:
    home = base / version
    home.mkdir()
    (home / "VERSION").write_text(version + "\n")
    made = zdt("archive", "create", str(home), str(base / f"{version}.tar.gz"))
    assert made.returncode == 0, made.stderr
    return base / f"{version}.tar.gz"


async def test_a_live_update_on_a_node_driven_from_here(isb: dict[str, Any],
                                                       short_dir: Path) -> None:
    v2 = archive_of(short_dir, "v2")
    before = json.loads((await http.get(isb["live_url"])).body)
    incr = Load(isb["live_url"] + "incr", concurrency=3, rate_per_worker=100, method="POST")
    reads = Load(isb["live_url"], concurrency=8, rate_per_worker=0, keep_alive=False)
    async with incr, reads:
        await asyncio.sleep(0.3)
        done = await asyncio.to_thread(zdt, "live", "update", "-d", isb["domain"], "--node",
                                       "node1", "web", "--archive", str(v2), "--json")
        await asyncio.sleep(0.3)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "checkpoint" and result["home"].startswith("/srv/live/state/")
    after = json.loads((await http.get(isb["live_url"])).body)
    assert after["version"] == "v2" and after["pid"] == result["surrogate_pid"]
    assert after["count"] == before["count"] + incr.stats.requests
    assert (incr.stats.failed, reads.stats.failed) == (0, 0), (incr.stats.errors,
                                                               reads.stats.errors)
    listed = json.loads(zdt("live", "status", "-d", isb["domain"], "--json").stdout)
    assert [(r["name"], r["version"]) for r in listed["node1"]] == [("web", "v2")]
    assert listed["node2"] == []
    shown = zdt("live", "status", "-d", isb["domain"])
    assert "node1:" in shown.stdout and "web: pid" in shown.stdout
    # an archive whose manifest does not match is refused on the node: nothing changes
    bad = archive_of(short_dir, "v3")
    shutil.copyfile(v2.with_suffix(".gz.json"), bad.with_suffix(".gz.json"))
    refused = zdt("live", "update", "-d", isb["domain"], "--node", "node1", "web",
                  "--archive", str(bad))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "zdt: node1:" in refused.stderr
    assert json.loads((await http.get(isb["live_url"])).body)["pid"] == after["pid"]
    unknown = zdt("live", "status", "-d", isb["domain"], "--node", "node9", "web")
    assert unknown.returncode == 2 and "no such node" in unknown.stderr

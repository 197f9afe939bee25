"""A combined update (home and runtime in one workflow) on a real sandbox, under load:
each node is drained exactly once; revert, and kill -9 mid-way then resume or revert."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_sandbox, zdt, zdt_under_load
from zdt import http

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 2) as info:
        yield info



def state(sb: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(version, JAVA_HOME line, app version) of every node."""
    out = set()
    for n in sb["nodes"]:
        home = Path(n["home"])
        java = next(line for line in (home / "bin/setenv.sh").read_text().splitlines()
                    if line.startswith("JAVA_HOME="))
        app = (Path(n["root"]) / "srv/app/apps/shop/APP_VERSION").read_text().strip()
        out.add(((home / "VERSION").read_text().strip(), java, app))
    return out


async def under_load(sb: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    return await zdt_under_load(sb["lb_url"], *argv)


async def test_one_drain_per_node_then_revert(sb: dict[str, Any]) -> None:
    done = await under_load(sb, "rollout", "update", "-d", sb["domain"], "--archive",
                            sb["archives"]["v2"], "--runtime-home", sb["runtime_home"],
                            "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    drains = Counter(s["node"] for s in report["steps"] if s["name"] == "drain")
    assert drains == {"node1": 1, "node2": 1, "node3": 1}
    assert {s["name"] for s in report["steps"]} >= {"extract", "switch", "rewrite"}
    assert state(sb) == {("v2", "JAVA_HOME=/opt/runtime-2", "1")}
    versions = {json.loads((await http.get(sb["lb_url"])).body)["version"] for _ in range(8)}
    assert versions == {"v2"}
    back = await under_load(sb, "revert", report["id"], "-d", sb["domain"], "--json")
    assert back.returncode == 0, back.stderr
    assert state(sb) == {("v1", "JAVA_HOME=/opt/runtime-1", "1")}


@pytest.mark.parametrize("then", ["resume", "revert"])
@pytest.mark.parametrize("step", ["rewrite", "apps"])
async def test_kill_9_mid_way_then_resume_or_revert(sb: dict[str, Any], then: str,
                                                    step: str) -> None:
    target = f"update:{sb['archives']['v2']}:{sb['runtime_home']}:{sb['apps']}"
    crashed = subprocess.run([*CRASH, sb["domain"], target, "node2", step, "done"],
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    wid = crashed.stdout.split()[0]
    result = await under_load(sb, then, wid, "-d", sb["domain"], "--json")
    assert result.returncode == 0, result.stderr
    want = ("v2", "JAVA_HOME=/opt/runtime-2", "2") if then == "resume" else \
        ("v1", "JAVA_HOME=/opt/runtime-1", "1")
    assert state(sb) == {want}


@pytest.mark.parametrize(("args", "code", "words"), [
    ([], 2, "at least one of --archive, --runtime-home and --apps"),
    (["--runtime-home", "rel/path"], 2, "--runtime-home"),
    (["--runtime-home", "/opt/none"], 3, "/opt/none is missing"),
    (["--archive", "/nonexistent.tar.gz"], 2, "/nonexistent.tar.gz"),
])
def test_bad_update_inputs_change_nothing(sb: dict[str, Any], args: list[str], code: int,
                                          words: str) -> None:
    before = state(sb)
    result = zdt("rollout", "update", "-d", sb["domain"], *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr
    assert state(sb) == before

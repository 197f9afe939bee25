"""Home rollouts of a real sandbox under load through HAProxy: v1 → v2, revert, a broken
release, stop / pause / resume, the lock, a symlinked home, and kill -9 at every step."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, running_sandbox, served, zdt
from zdt.adapters.lb.haproxy import HAProxy
from zdt.lab.load import Load

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False) as info:
        yield info


@pytest.fixture
def sb_link(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False, home_link=True) as info:
        yield info



def rollout(sb: dict[str, Any], archive: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return zdt("rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
               sb["archives"][archive], "--shutdown-timeout", "10", "--json", *extra)


def homes(sb: dict[str, Any]) -> dict[str, str]:
    return {n["name"]: (Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]}


def tree(root: Path) -> dict[str, str]:
    """Digest of every file and link under a node's /srv/app: what a rollout may touch."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def node_trees(sb: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {n["name"]: tree(Path(n["home"]).parent) for n in sb["nodes"]}


def homes_only(trees: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Leave out what a rollout keeps beside the homes: the staged archive and the (now
    empty) releases dir."""
    return {n: {k: v for k, v in t.items() if not k.startswith("staging") and k != "releases"}
            for n, t in trees.items()}


async def all_ready(sb: dict[str, Any]) -> bool:
    states = await HAProxy(sb["haproxy_socket"], "app").servers()
    return all((st.admin, st.status) == ("ready", "UP") for st in states.values())


def loads(sb: dict[str, Any]) -> tuple[Load, Load]:
    return (capacity_load(sb["lb_url"]),
            Load(sb["lb_url"] + "slow?ms=200", concurrency=2, rate_per_worker=10,
                 process=True))


async def under_load(sb: dict[str, Any], *commands: list[str]
                     ) -> list[subprocess.CompletedProcess[str]]:
    fast, slow = loads(sb)
    results = []
    async with fast, slow:
        await asyncio.sleep(0.3)
        for argv in commands:
            results.append(await asyncio.to_thread(zdt, *argv))
        await asyncio.sleep(0.3)
    assert (fast.stats.failed, slow.stats.failed) == (0, 0), (fast.stats.errors,
                                                              slow.stats.errors)
    for r in results:       # and what HAProxy itself counted during each workflow
        if "--json" in r.args and r.returncode in (0, 1, 5):
            assert_lossless(fast.stats, json.loads(r.stdout))
    return results


def home_args(sb: dict[str, Any], archive: str, *extra: str) -> list[str]:
    return ["rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
            sb["archives"][archive], "--shutdown-timeout", "10", "--json", *extra]


async def test_v1_to_v2_then_revert_under_load(sb: dict[str, Any]) -> None:
    before = node_trees(sb)
    [done] = await under_load(sb, home_args(sb, "v2"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "succeeded" and report["kind"] == "home"
    assert await served(sb) == {"v2"}
    assert set(homes(sb).values()) == {"v2"}
    assert len(report["nodes"]) == 3
    [back] = await under_load(sb, ["revert", report["id"], "-d", sb["domain"], "--json"])
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["state"] == "reverted"
    assert await served(sb) == {"v1"}
    # every byte of every home is back; only the staged archive remains beside it
    assert homes_only(node_trees(sb)) == homes_only(before)
    assert await all_ready(sb)


async def test_broken_release_is_reverted_automatically(sb: dict[str, Any]) -> None:
    before = node_trees(sb)
    [done] = await under_load(sb, home_args(sb, "broken", "--health-timeout", "1",
                                            "--retries", "1", "--retry-delay", "0.1"))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["state"] == "reverted"
    assert "health" in report["error"] and "answered 500" in report["error"]
    assert await served(sb) == {"v1"}
    assert homes_only(node_trees(sb)) == homes_only(before)
    assert await all_ready(sb)


async def test_no_auto_revert_waits_then_operator_reverts(sb: dict[str, Any]) -> None:
    [done] = await under_load(sb, home_args(sb, "broken", "--no-auto-revert",
                                            "--health-timeout", "1", "--retries", "0"))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["state"] == "failed"
    assert homes(sb) == {"node1": "broken", "node2": "v1", "node3": "v1"}
    # the domain is held until the failed workflow is finished
    locked = rollout(sb, "v2")
    assert locked.returncode == 4 and report["id"] in locked.stderr
    [back] = await under_load(sb, ["revert", report["id"], "-d", sb["domain"], "--json"])
    assert back.returncode == 0, back.stderr
    assert set(homes(sb).values()) == {"v1"} and await served(sb) == {"v1"}
    assert await all_ready(sb)


async def test_canary_pause_then_resume(sb: dict[str, Any]) -> None:
    [paused] = await under_load(sb, home_args(sb, "v2", "--pause-after", "1"))
    assert paused.returncode == 5, paused.stderr
    report = json.loads(paused.stdout)
    assert report["state"] == "stopped"
    assert homes(sb) == {"node1": "v2", "node2": "v1", "node3": "v1"}
    assert await served(sb) == {"v1", "v2"}
    locked = rollout(sb, "v2")
    assert locked.returncode == 4 and report["id"] in locked.stderr
    [resumed] = await under_load(sb, ["resume", report["id"], "-d", sb["domain"], "--json"])
    assert resumed.returncode == 0, resumed.stderr
    assert set(homes(sb).values()) == {"v2"} and await served(sb) == {"v2"}


async def test_symlinked_home_is_switched_atomically(sb_link: dict[str, Any]) -> None:
    sb = sb_link
    home = Path(sb["nodes"][0]["home"])
    assert home.is_symlink()
    [done] = await under_load(sb, home_args(sb, "v2"))
    assert done.returncode == 0, done.stderr
    assert home.is_symlink() and str(home.readlink()).startswith("releases/v2-")
    assert await served(sb) == {"v2"}
    wid = json.loads(done.stdout)["id"]
    assert (home.parent / f"home.bak-{wid}").readlink() == Path("releases/v1")
    [back] = await under_load(sb, ["revert", wid, "-d", sb["domain"], "--json"])
    assert back.returncode == 0, back.stderr
    assert home.readlink() == Path("releases/v1")
    assert await served(sb) == {"v1"}
    assert [p.name for p in (home.parent / "releases").iterdir()] == ["v1"]


def make_archive(sb: dict[str, Any], version: str, base: Path) -> str:
    home = base / version
    shutil.copytree(Path(sb["nodes"][0]["home"]), home, symlinks=True)
    (home / "VERSION").write_text(version + "\n")
    made = zdt("archive", "create", str(home), str(base / f"{version}.tar.gz"))
    assert made.returncode == 0, made.stderr
    return str(base / f"{version}.tar.gz")


async def test_a_superseded_workflow_is_reverted_only_after_the_later_one(
        sb: dict[str, Any], tmp_path: Path) -> None:
    v3 = make_archive(sb, "v3", tmp_path)
    first = rollout(sb, "v2")
    assert first.returncode == 0, first.stderr
    second = zdt("rollout", "home", "-d", sb["domain"], "--targets", "cluster1",
                 "--archive", v3, "--json")
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout)["id"], json.loads(second.stdout)["id"]
    refused = zdt("revert", a, "-d", sb["domain"])
    assert refused.returncode == 3 and b in refused.stderr
    assert set(homes(sb).values()) == {"v3"}
    [back_b, back_a] = await under_load(sb, ["revert", b, "-d", sb["domain"]],
                                        ["revert", a, "-d", sb["domain"]])
    assert (back_b.returncode, back_a.returncode) == (0, 0), back_b.stderr + back_a.stderr
    assert set(homes(sb).values()) == {"v1"} and await served(sb) == {"v1"}


async def test_rolling_out_the_installed_release_again(sb: dict[str, Any]) -> None:
    first = rollout(sb, "v2")
    [again] = await under_load(sb, home_args(sb, "v2"))
    assert (first.returncode, again.returncode) == (0, 0), again.stderr
    second = json.loads(again.stdout)["id"]
    assert set(homes(sb).values()) == {"v2"}
    undo = zdt("revert", second, "-d", sb["domain"])
    assert undo.returncode == 0, undo.stderr
    assert set(homes(sb).values()) == {"v2"}          # it was on v2 before that workflow
    undo = zdt("revert", json.loads(first.stdout)["id"], "-d", sb["domain"])
    assert undo.returncode == 0, undo.stderr
    assert set(homes(sb).values()) == {"v1"} and await served(sb) == {"v1"}

"""Batches on a real sandbox of 6 nodes behind HAProxy, under load at capacity: a ramp
`1,2,3` rolled and reverted, the capacity guard refusing in preview with nothing changed,
a failure on one node of a batch stopping its neighbours and reverting everything, and
kill -9 of zdt with three visits in flight, then resume or revert."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, running_sandbox, served, zdt, zdt_under_load
from zdt import domain as dm
from zdt.adapters.lb.haproxy import HAProxy
from zdt.workflow.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]
NODES = [f"node{i}" for i in range(1, 7)]
GATE = "#!/bin/sh\necho \"refused on $ZDT_NODE\" >&2\nexit 3\n"


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, nodes=6, admin=False) as info:
            home = base / "v1-home"
            shutil.copytree(Path(info["nodes"][0]["home"]), home, symlinks=True)
            made = zdt("archive", "create", str(home), str(base / "v1.tar.gz"))
            assert made.returncode == 0, made.stderr
            info["archives"]["v1"] = str(base / "v1.tar.gz")
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def homes(sb: dict[str, Any]) -> list[str]:
    return [(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]]


async def all_ready(sb: dict[str, Any]) -> bool:
    states = await HAProxy(sb["haproxy_socket"], "app").servers()
    return {(s.admin, s.status) for s in states.values()} == {("ready", "UP")}


def journal_digest(sb: dict[str, Any]) -> str | None:
    path = dm.load(sb["domain"]).state_dir / "journal.db"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def home_args(sb: dict[str, Any], version: str, *extra: str, domain: str | None = None
              ) -> list[str]:
    return ["rollout", "home", "-d", domain or sb["domain"], "--targets", "cluster1",
            "--archive", sb["archives"][version], "--shutdown-timeout", "10", "--json",
            *extra]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def other(version: str) -> str:
    return "v2" if version == "v1" else "v1"


@pytest.mark.parametrize(("batch", "minimum", "fragment"), [
    ("4", "50%", "batch 1 (node1, node2, node3, node4) would take 4 of the 6 server(s) of "
     "cluster cluster1 behind the load balancer out of rotation, leaving 2; "
     "--min-in-service 50% keeps at least 3, so at most 3 may be out at once"),
    ("2,4", "50%", "batch 2 (node3, node4, node5, node6) would take 4"),
    ("2", "80%", "--min-in-service 80% keeps at least 5, so at most 1 may be out"),
])
def test_the_guard_refuses_in_preview_and_rollout_changing_nothing(
        sb: dict[str, Any], batch: str, minimum: str, fragment: str) -> None:
    before = journal_digest(sb), homes(sb)
    for command in (["preview"], ["rollout"]):
        args = home_args(sb, other(homes(sb)[0]), "--batch", batch, "--min-in-service",
                         minimum)
        result = zdt(*command, *args[1:])
        assert result.returncode == 3, result.stdout + result.stderr
        assert fragment in " ".join(result.stderr.split()), result.stderr
    assert (journal_digest(sb), homes(sb)) == before


def test_preview_shows_the_batches_and_the_arithmetic(sb: dict[str, Any]) -> None:
    result = zdt("preview", *home_args(sb, other(homes(sb)[0]), "--batch", "1,2,3")[1:])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(v["batch"], v["node"]) for v in report["plan"]] == [
        (1, "node1"), (2, "node2"), (2, "node3"), (3, "node4"), (3, "node5"), (3, "node6")]
    (cluster,) = report["capacity"]["clusters"]
    assert (cluster["in_lb"], cluster["required"], cluster["may_be_out"],
            cluster["largest_out"], cluster["largest_batch"]) == (6, 3, 3, 3, 3)
    assert report["estimates"]["batches"] == 3
    text = zdt("preview", *[a for a in home_args(sb, other(homes(sb)[0]), "--batch", "1,2,3")
                            if a != "--json"][1:])
    assert "cluster cluster1: 6 server(s) behind the load balancer; --min-in-service 50% " \
           "keeps 3 in rotation, so at most 3 may be out at once" in " ".join(text.stdout.split())


async def test_a_server_already_out_counts_against_the_guard(sb: dict[str, Any]) -> None:
    """The plan fits (3 of 6 out at once), but node2-s1 is in maintenance already: while
    batch 2 is out only 2 would serve, fewer than the 3 the guard keeps. Preview says so
    (exit 3); back in rotation, the same preview passes."""
    haproxy = HAProxy(sb["haproxy_socket"], "app")
    args = [a for a in home_args(sb, other(homes(sb)[0]), "--batch", "1,2,3")[1:]]
    await haproxy.command("set server app/node2-s1 state maint")
    try:
        refused = await asyncio.to_thread(zdt, "preview", *args)
    finally:
        await haproxy.command("set server app/node2-s1 state ready")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    checks = json.loads(refused.stdout)["preconditions"]
    failed = [c for c in checks if not c["ok"]]
    assert {c["name"] for c in failed} == {"in rotation", "capacity while out"}, failed
    (capacity,) = [c for c in failed if c["name"] == "capacity while out"]
    assert capacity["node"] == "node4, node5, node6"
    assert "batch 3: cluster cluster1 would have 2 server(s) in rotation" in capacity["detail"]
    for _ in range(200):                          # HAProxy's check puts it back UP
        if await all_ready(sb):
            break
        await asyncio.sleep(0.05)
    passed = await asyncio.to_thread(zdt, "preview", *args)
    assert passed.returncode == 0, passed.stdout + passed.stderr


async def test_a_ramp_under_load_then_its_revert(sb: dict[str, Any]) -> None:
    before = homes(sb)[0]
    done = await zdt_under_load(sb["lb_url"], *home_args(sb, other(before), "--batch", "1,2,3"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "succeeded"
    assert [(v["batch"], v["node"]) for v in report["nodes"]] == [
        (1, "node1"), (2, "node2"), (2, "node3"), (3, "node4"), (3, "node5"), (3, "node6")]
    # the three visits of batch 3 were out of rotation at the same time
    drains = {s["node"]: ts(s["started"]) for s in report["steps"] if s["name"] == "drain"}
    readies = {s["node"]: ts(s["ended"]) for s in report["steps"] if s["name"] == "ready"}
    assert max(drains[n] for n in NODES[3:]) < min(readies[n] for n in NODES[3:])
    assert homes(sb) == [other(before)] * 6
    assert await served(sb) == {other(before)}
    back = await zdt_under_load(sb["lb_url"], "revert", report["id"], "-d", sb["domain"],
                                "--json", keep_alive=False)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["state"] == "reverted"
    assert homes(sb) == [before] * 6 and await served(sb) == {before}
    assert await all_ready(sb)


async def test_a_failure_in_one_node_of_a_batch(sb: dict[str, Any]) -> None:
    """node5's offline-after-update hook fails: node4 and node6, side by side with it, stop
    at their next step boundary; the workflow reverts every node it touched."""
    before = homes(sb)[0]
    for node in sb["nodes"]:
        hooks = Path(node["root"]) / "opt/hooks"
        hooks.mkdir(parents=True, exist_ok=True)
        (hooks / "gate").write_text(GATE if node["name"] == "node5" else "#!/bin/sh\n")
        (hooks / "gate").chmod(0o755)
    gated = Path(sb["domain"]).with_name("domain-gated.toml")
    gated.write_text(Path(sb["domain"]).read_text() +
                     '\n[hooks]\noffline-after-update = "/opt/hooks/gate"\n')
    done = await zdt_under_load(sb["lb_url"], *home_args(
        sb, other(before), "--batch", "3", "--retries", "0", domain=str(gated)),
        keep_alive=False)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "reverted"
    assert "hook:offline-after-update on node5" in report["error"]
    assert "refused on node5" in report["error"]
    by_node: dict[str, list[dict[str, Any]]] = {}
    for s in report["steps"]:
        by_node.setdefault(s["node"], []).append(s)
    # batch 2: nobody began a step after node5 failed; its neighbours' last steps touched
    # were at most one step past the failing one
    failing_at = [s["name"] for s in by_node["node5"]].index("hook:offline-after-update")
    for node in ("node4", "node6"):
        touched = [i for i, s in enumerate(by_node[node]) if s["attempts"]]
        assert touched and max(touched) <= failing_at + 1, by_node[node]
        assert by_node[node][-1]["attempts"] == 0       # never readied on the new home
    assert homes(sb) == [before] * 6 and await served(sb) == {before}
    assert await all_ready(sb)


@pytest.mark.parametrize(("then", "step", "point"), [
    ("resume", "switch", "done"), ("revert", "start", "running")])
async def test_kill_9_with_three_visits_in_flight(sb: dict[str, Any], then: str, step: str,
                                                  point: str) -> None:
    before = homes(sb)[0]
    target = other(before)
    async with capacity_load(sb["lb_url"]) as load:
        await asyncio.sleep(0.2)
        crashed = await asyncio.to_thread(
            subprocess.run, [*CRASH, sb["domain"], sb["archives"][target], "node5", step,
                             point, "3"], capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -9, crashed.stdout + crashed.stderr
        wid = crashed.stdout.split()[0]
        state_dir = dm.load(sb["domain"]).state_dir
        journal = SqliteJournal(state_dir, lambda: 0.0)
        try:
            in_flight = {s.node for s in journal.steps(wid) if s.state == "running"}
            busy = {s.node for s in journal.steps(wid)
                    if s.node in ("node4", "node5", "node6") and s.attempts}
        finally:
            journal.close()
        assert "node5" in in_flight or point == "done"
        assert busy == {"node4", "node5", "node6"}        # the batch was under way
        result = await asyncio.to_thread(zdt, then, wid, "-d", sb["domain"], "--json")
        await asyncio.sleep(0.2)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert_lossless(load.stats, report)
    want = target if then == "resume" else before
    assert homes(sb) == [want] * 6 and await served(sb) == {want}
    assert await all_ready(sb)
    states = {s["state"] for s in report["steps"]}
    assert states == {"done"} if then == "resume" else states <= {"reverted", "pending"}

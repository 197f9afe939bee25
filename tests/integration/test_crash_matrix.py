"""The crash matrix: kill -9 of zdt at every step boundary of a home rollout of 3 nodes (and
inside the extract's tar, the switch's rename and the drain's wait), under keep-alive load
at capacity through HAProxy; then `zdt resume` and, separately, `zdt revert`.

After each: every node on one home (the new one after a resume, the old one after a
revert), every server up and ready in HAProxy, the journal consistent (the workflow ended,
its steps all done or all undone, nothing holding the domain), 0 failed requests as the
clients and the LB counted them. One sandbox serves every case: each rolls from whichever
version the domain is on to the other.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, running_sandbox, served, zdt
from zdt import domain as dm
from zdt.adapters.lb.haproxy import HAProxy
from zdt.lab.load import Load
from zdt.workflow.journal import Journal
from zdt.workflow.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]
STEPS = ("extract", "drain", "stop", "backup", "switch", "start", "health", "ready")
# (node, step, point): every step of the middle node as it begins and once it is done,
# the first and last node's visit at its edges, and inside the commands and waits
POINTS = [("node2", step, point) for step in STEPS for point in ("running", "done")] + [
    ("node1", "extract", "done"), ("node1", "ready", "done"), ("node3", "drain", "running"),
    ("node3", "ready", "done"),
    ("node2", "extract", "during:tar"), ("node2", "switch", "during:mv"),
    ("node2", "drain", "running+0.08"), ("node2", "health", "running+0.02"),
]


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, admin=False) as info:
            info["archives"]["v1"] = _archive_of_current(info, base)
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _archive_of_current(info: dict[str, Any], base: Path) -> str:
    home = base / "v1-home"
    shutil.copytree(Path(info["nodes"][0]["home"]), home, symlinks=True)
    made = zdt("archive", "create", str(home), str(base / "v1.tar.gz"))
    assert made.returncode == 0, made.stderr
    return str(base / "v1.tar.gz")


def homes(sb: dict[str, Any]) -> set[str]:
    return {(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]}


async def in_rotation(sb: dict[str, Any]) -> dict[str, tuple[str, str]]:
    states = await HAProxy(sb["haproxy_socket"], "app").servers()
    return {name: (st.admin, st.status) for name, st in states.items()}


def journal_of(sb: dict[str, Any]) -> Journal:
    return SqliteJournal(dm.load(sb["domain"]).state_dir, lambda: 0.0)


@pytest.mark.parametrize("then", ["resume", "revert"])
@pytest.mark.parametrize(("node", "step", "point"), POINTS,
                         ids=[f"{n}-{s}-{p}" for n, s, p in POINTS])
async def test_kill_9_then_resume_or_revert(sb: dict[str, Any], node: str, step: str,
                                            point: str, then: str) -> None:
    [before] = homes(sb)
    target = "v2" if before == "v1" else "v1"
    fast = capacity_load(sb["lb_url"])                                  # keep-alive
    slow = Load(sb["lb_url"] + "slow?ms=200", concurrency=2, rate_per_worker=10, process=True)
    async with fast, slow:
        await asyncio.sleep(0.2)
        crashed = await asyncio.to_thread(
            subprocess.run, [*CRASH, sb["domain"], sb["archives"][target], node, step, point],
            capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -9, crashed.stdout + crashed.stderr
        wid = crashed.stdout.split()[0]
        result = await asyncio.to_thread(zdt, then, wid, "-d", sb["domain"], "--json")
        await asyncio.sleep(0.2)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    want = target if then == "resume" else before
    assert report["state"] == ("succeeded" if then == "resume" else "reverted")
    assert (slow.stats.failed, fast.stats.failed) == (0, 0), (slow.stats.errors,
                                                              fast.stats.errors)
    assert_lossless(fast.stats, report)           # the clients and the LB: 0 failed
    assert homes(sb) == {want}
    assert await served(sb) == {want}
    assert set((await in_rotation(sb)).values()) == {("ready", "UP")}
    journal = journal_of(sb)
    try:
        steps = journal.steps(wid)
        assert journal.holder() is None           # nothing holds the domain any more
        assert journal.workflow(wid).state == report["state"]
    finally:
        journal.close()
    states = {s.state for s in steps}
    assert states == {"done"} if then == "resume" else states <= {"reverted", "pending"}
    assert [r["action"] for r in report["witness"]["runs"]] == ["run", then]

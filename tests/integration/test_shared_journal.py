"""Two control hosts, one truth: the sandbox's domain seen through two domain files with
state dirs of their own and one PostgreSQL journal (`[state] url`), as two machines would
see it. One cannot start a workflow while the other runs one (exit 4 naming the holder,
its host and pid); it watches the other's run as it happens; and when a control host is
killed mid-rollout, the other resumes (and reverts) the workflow — under load, 0 failed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_lossless, capacity_load, fresh_sandbox, served, zdt, zdt_background
from zdt.app import App
from zdt.lab.postgres import Postgres
from zdt.workflow.journal import HOST
from zdt.workflow.journal.postgres import PostgresStore

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]


@pytest.fixture(scope="module")
def hosts(postgres: Postgres) -> Iterator[dict[str, Any]]:
    """The sandbox, and its domain file as control hosts a and b have it."""
    with fresh_sandbox(nodes=3, servers_per_node=1, admin=False) as info:
        text = Path(info["domain"]).read_text()
        for name in ("a", "b"):
            path = Path(info["domain"]).with_name(f"{name}.toml")
            path.write_text(text.replace('state_dir = "state"', f'state_dir = "state-{name}"')
                            + f'\n[state]\nurl = "{postgres.url}"\n')
            info[name] = str(path)
        info["store"] = PostgresStore(postgres.url, "sandbox")
        home = Path(info["dir"]) / "v1-home"
        shutil.copytree(Path(info["nodes"][0]["home"]), home, symlinks=True)
        made = zdt("archive", "create", str(home), str(home.with_suffix(".tar.gz")))
        assert made.returncode == 0, made.stderr
        info["archives"]["v1"] = str(home.with_suffix(".tar.gz"))
        yield info


def homes(sb: dict[str, Any]) -> set[str]:
    return {(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]}


async def running_id(store: PostgresStore, proc: subprocess.Popen[str]) -> str:
    """The id of the workflow another process runs, once the shared journal has it."""
    for _ in range(3000):
        assert proc.poll() is None, proc.communicate()
        if store.exists():
            journal = store.open(lambda: 0.0)
            try:
                newest = journal.history()[0]
            finally:
                journal.close()
            if newest.state == "running":
                return newest.id
        await asyncio.sleep(0.01)
    raise AssertionError("the workflow never showed as running in the shared journal")


async def test_one_host_runs_the_other_is_refused_and_watches(hosts: dict[str, Any]) -> None:
    proc = zdt_background("rollout", "restart", "-d", hosts["a"], "--targets", "cluster1",
                          "--delay-between-nodes", "0.5", "--shutdown-timeout", "5", "--json")
    try:
        wid = await running_id(hosts["store"], proc)
        refused = await asyncio.to_thread(zdt, "rollout", "restart", "-d", hosts["b"],
                                          "--targets", "cluster1")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        said = " ".join(refused.stderr.split())
        assert f"restart workflow {wid} on host {HOST} (pid {proc.pid})" in said, said
        # host b sees a's run as it happens, woken by the database, to its end
        seen = [e async for e in App(Path(hosts["b"])).watch(wid, patience=3600)]
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert json.loads(out)["state"] == "succeeded"
    ends = [e["message"] for e in seen if e["kind"] == "workflow"]
    assert ends[-1] == "succeeded"
    assert sum(1 for e in seen if e["kind"] == "step" and e["message"] == "done") == 15
    status = zdt("status", wid, "-d", hosts["b"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "succeeded"


@pytest.mark.parametrize("then", ["resume", "revert"])
async def test_a_host_killed_mid_rollout_is_finished_by_the_other(hosts: dict[str, Any],
                                                                  then: str) -> None:
    [before] = homes(hosts)
    target = "v2" if before == "v1" else "v1"
    async with capacity_load(hosts["lb_url"]) as load:
        await asyncio.sleep(0.2)
        crashed = await asyncio.to_thread(
            subprocess.run, [*CRASH, hosts["a"], hosts["archives"][target], "node2", "switch",
                             "done"], capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -9, crashed.stdout + crashed.stderr
        wid = crashed.stdout.split()[0]
        result = await asyncio.to_thread(zdt, then, wid, "-d", hosts["b"], "--json")
        await asyncio.sleep(0.2)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert_lossless(load.stats, report)
    want = target if then == "resume" else before
    assert homes(hosts) == {want} and await served(hosts) == {want}
    assert [r["action"] for r in report["witness"]["runs"]] == ["run", then]

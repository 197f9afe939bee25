"""Fixtures that run a real sandbox (supervisord per node + HAProxy) in a short /tmp dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zdt import domain as dm
from zdt import http
from zdt.lab import sandbox
from zdt.lab.load import Load, LoadStats
from zdt.workflow.journal.sqlite import SqliteJournal


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes and pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def small_sandbox(short_dir: Path) -> Iterator[dict[str, Any]]:
    """2 nodes × 2 servers behind HAProxy, plus the admin server; always brought down."""
    d = short_dir / "sb"
    info = sandbox.up(d, nodes=2, servers_per_node=2)
    try:
        yield info
    finally:
        sandbox.down(d)


@contextlib.contextmanager
def running_sandbox(base: Path, nodes: int = 3, servers_per_node: int = 1,
                    **options: Any) -> Iterator[dict[str, Any]]:
    """A sandbox in BASE/sb for the length of a with-block, always brought down."""
    info = sandbox.up(base / "sb", nodes, servers_per_node, **options)
    try:
        yield info
    finally:
        sandbox.down(base / "sb")


@contextlib.contextmanager
def fresh_sandbox(nodes: int = 3, servers_per_node: int = 1,
                  **options: Any) -> Iterator[dict[str, Any]]:
    """A sandbox in a new short dir under /tmp (unix socket paths are short), brought down
    and removed at the end of the with-block: for fixtures wider than a test."""
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, nodes, servers_per_node, **options) as info:
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


ZDT = [sys.executable, "-m", "zdt.cli"]

# The isolated sandbox: network namespaces and mounts need root, the nodes need sshd.
# `.ci/run` runs as root and installs OpenSSH.
needs_isolation = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists(),
    reason="needs root (network namespaces, mounts) and OpenSSH's sshd")


async def served(info: dict[str, Any], n: int = 12) -> set[str]:
    """The versions the LB answers with, over n requests (round-robin)."""
    return {json.loads((await http.get(info["lb_url"])).body)["version"] for _ in range(n)}


def zdt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `zdt` command as an operator would; its exit code, stdout and stderr."""
    return subprocess.run([*ZDT, *args], capture_output=True, text=True, timeout=timeout)


def zdt_background(*args: str) -> subprocess.Popen[str]:
    """`zdt ARGS` started and left running; the caller reads its end."""
    return subprocess.Popen([*ZDT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


async def step_reached(info: dict[str, Any], node: str, name: str, states: set[str],
                       proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """Poll the journal (as another process would) until node/step is in one of states;
    the workflow's id. The running zdt must not have ended meanwhile."""
    state_dir = dm.load(info["domain"]).state_dir
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (state_dir / "journal.db").exists():
            journal = SqliteJournal(state_dir, time.time)
            try:
                wfs = journal.history()
                steps = journal.steps(wfs[0].id) if wfs else []
            finally:
                journal.close()
            if any((s.node, s.name) == (node, name) and s.state in states for s in steps):
                return wfs[0].id
        await asyncio.sleep(0.005)
    raise AssertionError(f"{node}/{name} never reached {states}")


def capacity_load(url: str, *, keep_alive: bool = True) -> Load:
    """Load at the machine's capacity: 16 keep-alive clients (or new-connection ones)
    sending without a pause, in a process of their own (bounded by the with-block that runs
    it). It is niced: it takes every cycle the rollout and the servers leave, without
    slowing the test's own steps."""
    return Load(url, concurrency=16, rate_per_worker=0, keep_alive=keep_alive, process=True,
                nice=10)


def assert_lossless(stats: LoadStats, report: dict[str, Any] | None = None) -> None:
    """0 failed requests as the clients saw them, enough of them to mean something, and —
    given a workflow's report — 0 errors as the LB itself counted them."""
    assert stats.failed == 0, stats.as_dict()
    assert stats.requests > 300, stats.as_dict()
    if report is None:
        return
    w = report["witness"]
    assert w is not None and "unavailable" not in w, w
    assert (w["errors"], w["retries"], w["redispatches"]) == (0, 0, 0), w
    # the LB saw requests during the workflow, and no more during its last run (which lasts
    # less than the load) than the clients sent; a last run with nothing left to do (a
    # resume after the last step) may end before one request arrives
    seen = w["runs"][-1]["requests"]
    assert w["requests"] > 0 and seen <= stats.requests + 16, (w["requests"], seen,
                                                               stats.requests)


def split_load(sb: dict[str, Any]) -> tuple[Load, Load]:
    """Clients at capacity on two LBs of an HA pair: keep-alive ones on the first,
    new-connection ones on the second (processes of their own, niced, bounded by the
    with-block)."""
    first, second = sb["lb_urls"]
    return (Load(first, concurrency=8, rate_per_worker=0, keep_alive=True, process=True,
                 nice=10),
            Load(second, concurrency=8, rate_per_worker=0, keep_alive=False, process=True,
                 nice=10))


def lossless_split(loads: tuple[Load, Load], report: dict[str, Any]) -> None:
    """0 failed requests on both LBs as their clients saw them, and as both LBs counted
    them (the witness adds up both)."""
    stats = [load.stats for load in loads]
    assert [s.failed for s in stats] == [0, 0], [s.as_dict() for s in stats]
    assert all(s.requests > 150 for s in stats), [s.as_dict() for s in stats]
    w = report["witness"]
    assert w is not None and "unavailable" not in w, w
    assert "lb[0]" in w["source"] and "lb[1]" in w["source"], w["source"]
    assert (w["errors"], w["retries"], w["redispatches"]) == (0, 0, 0), w
    assert 0 < w["runs"][-1]["requests"] <= sum(s.requests for s in stats) + 16


async def zdt_under_split_load(sb: dict[str, Any], *argv: str) -> dict[str, Any]:
    """`zdt ARGV --json` (a workflow) with clients at capacity on both LBs of an HA pair: it
    must succeed (or revert as asked), and not one request may fail, as the clients and
    both LBs counted. Its report."""
    loads = split_load(sb)
    async with loads[0], loads[1]:
        await asyncio.sleep(0.2)
        result = await asyncio.to_thread(zdt, *argv, "--json")
        await asyncio.sleep(0.2)
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    lossless_split(loads, report)
    return report


async def zdt_under_load(url: str, *argv: str, keep_alive: bool = True,
                         witness: bool = True) -> subprocess.CompletedProcess[str]:
    """`zdt ARGV` while clients keep sending requests to url at capacity: not one may fail,
    and with --json, the LB's witness must show no error either (`witness=False`: an LB
    that keeps no counters)."""
    async with capacity_load(url, keep_alive=keep_alive) as load:
        await asyncio.sleep(0.2)
        result = await asyncio.to_thread(zdt, *argv)
        await asyncio.sleep(0.2)
    report = None
    if witness and "--json" in argv and result.returncode in (0, 1, 5):
        report = json.loads(result.stdout)           # a workflow's report, with its witness
    assert_lossless(load.stats, report)
    return result

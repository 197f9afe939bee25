"""Faults of the world around a rollout, injected for real: HAProxy's admin socket gone,
supervisord hung (SIGSTOP) or killed, a node's disk full during the extract, the journal's
database locked by another process past SQLite's timeout, the archive deleted. Each ends
`reverted`, or failed waiting for an operator with a message that names the cause — never a
hang, never a traceback — and no client request fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import capacity_load, running_sandbox, step_reached, zdt, zdt_background
from zdt import domain as dm
from zdt import procfs
from zdt.adapters.lb.haproxy import HAProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False) as info:
        yield info


def ended(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)    # never a hang: bounded here
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def lb_counted_no_error(report: dict[str, Any]) -> None:
    """HAProxy's own counters over the workflow: no failed request, no retry. (The admin
    socket's absence leaves them unreadable: that case says so and is not judged.)"""
    w = report["witness"]
    if w is not None and "unavailable" not in w:
        assert (w["errors"], w["retries"], w["redispatches"]) == (0, 0, 0), w


async def rotation(sb: dict[str, Any]) -> dict[str, tuple[str, str]]:
    states = await HAProxy(sb["haproxy_socket"], "app").servers()
    return {name: (st.admin, st.status) for name, st in states.items()}


ROLLOUT = ("rollout", "restart", "--targets", "cluster1", "--retries", "1", "--retry-delay",
           "0.2", "--shutdown-timeout", "5", "--json")


async def test_the_admin_socket_gone_mid_rollout(sb: dict[str, Any]) -> None:
    sock = Path(sb["haproxy_socket"])
    hidden = sock.with_name("moved.sock")
    async with capacity_load(sb["lb_url"]) as load:
        proc = zdt_background(*ROLLOUT, "-d", sb["domain"], "--delay-between-nodes", "0.5")
        wid = await step_reached(sb, "node1", "ready", {"done"}, proc)
        sock.rename(hidden)
        try:
            code, out, _ = await asyncio.to_thread(ended, proc)
        finally:
            hidden.rename(sock)
        report = json.loads(out)
        lb_counted_no_error(report)
        assert code == 1 and report["state"] in ("reverted", "revert-failed"), report
        assert str(sock) in report["error"], report["error"]
        if report["state"] == "revert-failed":
            back = await asyncio.to_thread(zdt, "revert", wid, "-d", sb["domain"], "--json")
            assert back.returncode == 0, back.stdout + back.stderr
        await asyncio.sleep(0.2)
    assert load.stats.failed == 0, load.stats.errors
    assert set((await rotation(sb)).values()) == {("ready", "UP")}


async def test_a_hung_supervisord_mid_rollout(sb: dict[str, Any]) -> None:
    """node2's supervisord stopped (SIGSTOP) while node1 is visited: its calls time out,
    the workflow ends failed naming it; woken, `zdt revert` finishes the job."""
    pid = sb["pids"]["supervisord"]["node2"]
    async with capacity_load(sb["lb_url"]) as load:
        # no retry and no auto-revert: each call to the hung supervisord waits out its
        # 10 s timeout, and the failure, not the waits, is what this test is about
        proc = zdt_background(*ROLLOUT, "-d", sb["domain"], "--delay-between-nodes", "0.5",
                              "--retries", "0", "--no-auto-revert")
        wid = await step_reached(sb, "node1", "ready", {"done"}, proc)
        os.kill(pid, signal.SIGSTOP)
        try:
            code, out, _ = await asyncio.to_thread(ended, proc, 180)
        finally:
            os.kill(pid, signal.SIGCONT)
        report = json.loads(out)
        lb_counted_no_error(report)
        assert code == 1 and report["state"] == "failed", report
        assert "node2" in report["error"] and "supervisord" in report["error"], report["error"]
        back = await asyncio.to_thread(zdt, "revert", wid, "-d", sb["domain"], "--json")
        assert back.returncode == 0, back.stdout + back.stderr
        await asyncio.sleep(0.2)
    assert load.stats.failed == 0, load.stats.errors
    assert set((await rotation(sb)).values()) == {("ready", "UP")}


async def test_a_killed_supervisord_is_refused_before_anything(sb: dict[str, Any]) -> None:
    pid = sb["pids"]["supervisord"]["node3"]
    orphans = procfs.descendants({pid})       # its servers outlive it: stopped at the end
    os.kill(pid, signal.SIGKILL)
    try:
        before = await rotation(sb)
        result = zdt(*ROLLOUT, "-d", sb["domain"])
        assert result.returncode == 3, result.stdout + result.stderr
        assert "node3" in result.stderr and "supervisord" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert await rotation(sb) == before
    finally:
        for child in orphans:                 # ours, by pid (the sandbox cannot see them)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="needs root to mount a small tmpfs as the node's disk")
async def test_a_full_disk_during_the_extract(sb: dict[str, Any]) -> None:
    releases = Path(sb["nodes"][1]["root"]) / "srv/app/releases"
    releases.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(releases)],
                   check=True)
    try:
        async with capacity_load(sb["lb_url"]) as load:
            result = await asyncio.to_thread(
                zdt, "rollout", "home", "-d", sb["domain"], "--targets", "cluster1",
                "--archive", sb["archives"]["v2"], "--retries", "1", "--retry-delay", "0.2",
                "--json")
            await asyncio.sleep(0.2)
    finally:
        subprocess.run(["umount", str(releases)], check=True)
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    lb_counted_no_error(report)
    assert result.returncode == 1 and report["state"] == "reverted", report
    assert "node2" in report["error"] and "No space left" in report["error"], report["error"]
    assert load.stats.failed == 0, load.stats.errors
    assert {(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]} == {"v1"}
    assert set((await rotation(sb)).values()) == {("ready", "UP")}


async def test_the_journal_locked_past_the_timeout(sb: dict[str, Any]) -> None:
    """Another process holds the journal's database: the next journal write fails after
    SQLite's 10 s; zdt stops there naming the file (nothing acted on after it), and
    `zdt resume` finishes once the database is free."""
    db_path = dm.load(sb["domain"]).state_dir / "journal.db"
    async with capacity_load(sb["lb_url"]) as load:
        proc = zdt_background(*ROLLOUT, "-d", sb["domain"], "--delay-between-nodes", "0.5")
        wid = await step_reached(sb, "node1", "ready", {"done"}, proc)
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            code, _, err = await asyncio.to_thread(ended, proc, 60)
        finally:
            holder.rollback()
            holder.close()
        assert code == 1, err
        assert "journal.db" in err and "locked" in err, err
        resumed = await asyncio.to_thread(zdt, "resume", wid, "-d", sb["domain"], "--json")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        await asyncio.sleep(0.2)
    assert load.stats.failed == 0, load.stats.errors
    assert set((await rotation(sb)).values()) == {("ready", "UP")}


async def test_the_archive_deleted_between_preview_and_rollout(sb: dict[str, Any],
                                                               tmp_path: Path) -> None:
    archive = tmp_path / "v2.tar.gz"
    shutil.copyfile(sb["archives"]["v2"], archive)
    shutil.copyfile(sb["archives"]["v2"] + ".json", str(archive) + ".json")
    home = ("rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
            str(archive))
    previewed = zdt("preview", "-d", sb["domain"], "home", "--targets", "cluster1",
                    "--archive", str(archive))
    assert previewed.returncode == 0, previewed.stderr
    archive.unlink()
    before = {(Path(n["home"]) / "VERSION").read_text() for n in sb["nodes"]}
    refused = zdt(*home)
    assert refused.returncode == 2 and f"{archive}: no such archive" in refused.stderr
    assert {(Path(n["home"]) / "VERSION").read_text() for n in sb["nodes"]} == before
    assert not (dm.load(sb["domain"]).state_dir / "journal.db").exists()


async def test_the_archive_deleted_mid_rollout(sb: dict[str, Any], tmp_path: Path) -> None:
    archive = tmp_path / "v2.tar.gz"
    shutil.copyfile(sb["archives"]["v2"], archive)
    shutil.copyfile(sb["archives"]["v2"] + ".json", str(archive) + ".json")
    async with capacity_load(sb["lb_url"]) as load:
        proc = zdt_background("rollout", "home", "-d", sb["domain"], "--targets", "cluster1",
                     "--archive", str(archive), "--retries", "1", "--retry-delay", "0.2",
                     "--delay-between-nodes", "0.5", "--json")
        await step_reached(sb, "node1", "ready", {"done"}, proc)
        archive.unlink()
        code, out, _ = await asyncio.to_thread(ended, proc)
        await asyncio.sleep(0.2)
    report = json.loads(out)
    lb_counted_no_error(report)
    assert code == 1 and report["state"] == "reverted", report
    assert str(archive) in report["error"], report["error"]
    assert load.stats.failed == 0, load.stats.errors
    assert {(Path(n["home"]) / "VERSION").read_text().strip() for n in sb["nodes"]} == {"v1"}

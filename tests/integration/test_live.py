"""`zdt live` with real processes and real sockets: a stateful workload moved onto a new
home under load, with 0 refused or reset connections and its state intact; failures at
each step leave the original serving; the lock; preview changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ZDT, capacity_load, zdt
from zdt import app, http
from zdt.lab.load import Load
from zdt.lock import DomainLock

pytestmark = pytest.mark.integration




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Live:
    def __init__(self, base: Path, *extra: str, plain: bool = False) -> None:
        """plain: a server that neither checkpoints nor sends sd_notify (ready by
        --health only)."""
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.state = str(base / "sd")
        for version in ("v1", "v2"):
            (base / version).mkdir(exist_ok=True)
            (base / version / "VERSION").write_text(version + "\n")
            for switch in ("NO_NOTIFY", "NO_CHECKPOINT") if plain else ():
                (base / version / switch).write_text("")
        health = ["--health", self.url] if plain else []
        started = zdt("live", "run", "--name", "web", "--listen", f"127.0.0.1:{self.port}",
                      "--home", str(base / "v1"), "--state-dir", self.state, "--detach",
                      *health, "--json", "--", sys.executable, "-m", "zdt.lab.counter",
                      *extra)
        assert started.returncode == 0, started.stdout + started.stderr
        self.status = json.loads(started.stdout)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return zdt("live", *args, "--state-dir", self.state)

    async def get(self) -> dict[str, Any]:
        return dict(json.loads((await http.get(self.url)).body))


@pytest.fixture
def live(short_dir: Path) -> Iterator[Live]:
    w = Live(short_dir)
    try:
        yield w
    finally:
        w("stop", "web")


async def under_load(w: Live, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `zdt live ARGS` while clients GET at the machine's capacity (a new connection
    per request: the workload answers `Connection: close`) and POST /incr at a known rate;
    return it and the POSTs done."""
    reads = capacity_load(w.url, keep_alive=False)
    incr = Load(w.url + "incr", concurrency=3, rate_per_worker=100, method="POST")
    async with reads, incr:
        await asyncio.sleep(0.3)
        result = await asyncio.to_thread(w, *args)
        await asyncio.sleep(0.3)
    assert (reads.stats.failed, incr.stats.failed) == (0, 0), (reads.stats.errors,
                                                               incr.stats.errors)
    assert reads.stats.requests > 50 and incr.stats.requests > 50
    return result, incr.stats.requests


async def test_update_and_revert_under_load_keep_every_connection_and_the_state(
        live: Live) -> None:
    before = await live.get()
    assert before["version"] == "v1"
    done, posts = await under_load(live, "update", "web", "--home-dir",
                                   str(live.base / "v2"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    after = await live.get()
    assert after["version"] == "v2"
    assert after["pid"] == result["surrogate_pid"] != before["pid"] == result["original_pid"]
    assert after["count"] == before["count"] + posts          # not one increment lost
    assert result["mode"] == "checkpoint" and result["state_bytes"] == 8
    assert 0 <= result["blackout_ms"] < result["total_ms"]
    back, more = await under_load(live, "revert", "web", "--json")
    assert back.returncode == 0, back.stderr
    again = await live.get()
    assert again["version"] == "v1" and again["count"] == after["count"] + more
    status = json.loads(live("status", "web", "--json").stdout)
    assert status["pid"] == again["pid"] and status["home"].endswith("/v1")
    assert status["last_update"]["kind"] == "revert"
    revert, update = updates(live)[:2]
    assert [(u["kind"], u["state"]) for u in (update, revert)] == [
        ("update", "succeeded"), ("revert", "succeeded")]
    assert [(ph["name"], ph["state"]) for ph in update["phases"]] == [
        (name, "done") for name in ("surrogate", "ready", "checkpoint", "restore", "retire")]
    assert update["facts"]["blackout_ms"] == result["blackout_ms"]


@pytest.mark.parametrize(("switch", "where", "extra", "words"), [
    ("NEVER_READY", "v2", ["--ready-timeout", "1"], "not ready after 1 s"),
    ("CRASH_ON_RESTORE", "v2", [], "exited with 3 while restoring"),
    ("SLOW_CHECKPOINT", "v1", ["--checkpoint-timeout", "0.3"], "did not checkpoint within"),
])
async def test_a_failed_handoff_leaves_the_original_serving(
        live: Live, switch: str, where: str, extra: list[str], words: str) -> None:
    (live.base / where / switch).write_text("2" if switch == "SLOW_CHECKPOINT" else "")
    before = await live.get()
    failed, posts = await under_load(live, "update", "web", "--home-dir",
                                     str(live.base / "v2"), *extra)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "keeps serving" in failed.stderr and words in failed.stderr, failed.stderr
    after = await live.get()
    assert (after["pid"], after["version"]) == (before["pid"], "v1")
    assert after["count"] == before["count"] + posts
    last = updates(live)[0]          # the journal tells the true end: the original serves
    assert (last["state"], last["phases"][-1]["state"]) == ("reverted", "pending")
    assert words in last["error"]
    (live.base / where / switch).unlink()
    ok = live("update", "web", "--home-dir", str(live.base / "v2"))
    assert ok.returncode == 0, ok.stderr                      # it can be run again
    assert (await live.get())["count"] == after["count"]


async def test_a_surrogate_answering_out_of_protocol_leaves_the_original_serving(
        live: Live) -> None:
    """Before: a malformed ACCEPTING killed the surrogate without a RESUME to the original,
    which stayed paused: every later connection waited in the backlog, then timed out."""
    (live.base / "v2" / "BAD_ACCEPTING").write_text("")
    before = await live.get()
    failed, posts = await under_load(live, "update", "web", "--home-dir",
                                     str(live.base / "v2"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "answered 'ACCEPTING soon' to RESTORE" in failed.stderr, failed.stderr
    assert "keeps serving" in failed.stderr
    after = await live.get()
    assert (after["pid"], after["version"]) == (before["pid"], "v1")
    assert after["count"] == before["count"] + posts


async def test_the_supervisor_killed_mid_checkpoint_leaves_the_original_serving(
        live: Live) -> None:
    """kill -9 of the supervisor while the original is paused for its checkpoint: the
    helper sees its channel close and accepts again by itself; not one request fails."""
    (live.base / "v1" / "SLOW_CHECKPOINT").write_text("1")
    before = await live.get()
    supervisor = live.status["supervisor_pid"]
    journal = Path(live.state) / "updates.db"
    reads = capacity_load(live.url, keep_alive=False)
    incr = Load(live.url + "incr", concurrency=3, rate_per_worker=100, method="POST",
                timeout=10.0)
    try:
        async with reads, incr:
            await asyncio.sleep(0.3)
            update = subprocess.Popen([*ZDT, "live", "update", "web", "--home-dir",
                                       str(live.base / "v2"), "--state-dir", live.state],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(200):          # until the checkpoint is under way (≤ 10 s)
                if journal.exists() and b"checkpoint" in _steps_running(journal):
                    break
                await asyncio.sleep(0.05)
            os.kill(supervisor, signal.SIGKILL)
            await asyncio.to_thread(update.communicate, timeout=60)
            await asyncio.sleep(2.0)      # the pause ends; the original serves again
        after = await live.get()
        assert (after["pid"], after["version"]) == (before["pid"], "v1")
        assert (reads.stats.failed, incr.stats.failed) == (0, 0), (reads.stats.errors,
                                                                   incr.stats.errors)
        assert after["count"] == before["count"] + incr.stats.requests
        assert reads.stats.requests > 50 and incr.stats.requests > 50
    finally:
        for pid in running_in(live.base):     # no supervisor is left to stop them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_a_workload_ready_by_health_only_is_updated(short_dir: Path) -> None:
    """Before: a surrogate's readiness ignored --health, so a server that does not send
    sd_notify was never ready and never updated. Now its own 200 counts (not one the
    original gave on the shared port), and preview says so."""
    w = Live(short_dir, plain=True)
    try:
        before = await w.get()
        shown = w("preview", "web", "--home-dir", str(w.base / "v2"), "--json")
        assert shown.returncode == 0, shown.stderr
        readiness = {c["name"]: c["detail"] for c in json.loads(shown.stdout)["restrictions"]}
        assert readiness["readiness of the surrogate"] == (
            f"{w.url} answering 200 from the surrogate itself; then by overlap, no state "
            "(the workload has no checkpoint)")
        done, _ = await under_load(w, "update", "web", "--home-dir", str(w.base / "v2"),
                                   "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["mode"] == "overlap"
        after = await w.get()
        assert after["version"] == "v2" and after["pid"] != before["pid"]
    finally:
        w("stop", "web")


def test_a_second_update_is_refused_while_one_holds_the_lock(live: Live) -> None:
    lock = DomainLock(Path(live.state))
    lock.acquire("zdt live update of web")
    try:
        refused = live("update", "web", "--home-dir", str(live.base / "v2"))
    finally:
        lock.release()
    assert refused.returncode == 4 and "zdt live update of web" in refused.stderr


def tree_digest(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.suffix != ".sock" and p.name != "supervisor.log":
                h.update(str(p).encode() + (p.read_bytes() if p.is_file() else b"d"))
    return h.hexdigest()


def test_preview_changes_nothing(live: Live) -> None:
    before = tree_digest(live.base)
    ok = live("preview", "web", "--home-dir", str(live.base / "v2"), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert all(c["ok"] for c in report["restrictions"])
    assert {"total_ms", "blackout_ms", "basis"} <= set(report["estimates"])
    missing = live("preview", "web", "--home-dir", str(live.base / "v9"))
    assert missing.returncode == 3 and "NO  new home exists" in missing.stdout
    assert tree_digest(live.base) == before


async def test_a_workload_without_checkpoint_is_handed_over_by_overlap(
        short_dir: Path) -> None:
    w = Live(short_dir, "--no-checkpoint")
    try:
        reads = Load(w.url, concurrency=4, rate_per_worker=100)
        async with reads:
            await asyncio.sleep(0.2)
            done = await asyncio.to_thread(w, "update", "web", "--home-dir",
                                           str(w.base / "v2"), "--json")
            await asyncio.sleep(0.2)
        assert done.returncode == 0, done.stderr
        assert reads.stats.failed == 0, reads.stats.errors
        result = json.loads(done.stdout)
        assert result["mode"] == "overlap" and result["blackout_ms"] == 0
        assert (await w.get())["version"] == "v2"
    finally:
        w("stop", "web")


def test_stop_leaves_nothing_listening(short_dir: Path) -> None:
    w = Live(short_dir)
    pid = w.status["pid"]
    stopped = w("stop", "web")
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", w.port), timeout=1):
        pass
    assert not Path(f"/proc/{pid}").exists()
    assert w("status", "web").returncode == 2


SCRIPT = '#!/bin/sh\necho "$ZDT_PHASE $ZDT_NAME $(basename "$ZDT_HOME")" >> "$(dirname "$0")/log"\n'


async def test_update_from_an_archive_driven_by_a_data_file(live: Live) -> None:
    made = zdt("archive", "create", str(live.base / "v2"), str(live.base / "v2.tar.gz"))
    assert made.returncode == 0, made.stderr
    for name in ("pre", "complete"):
        (live.base / name).write_text(SCRIPT)
        (live.base / name).chmod(0o755)
    data = live.base / "liveupdate.data"
    data.write_text(f"""# move web onto v2
general:
    name = web
    archive = {live.base / "v2.tar.gz"}
    ready_timeout = 5
    checkpoint_timeout = 5

scripts:
    pre = {live.base / "pre"}
    complete = {live.base / "complete"}
""")
    before = await live.get()
    done, posts = await under_load(live, "update", "web", "--data", str(data), "--json")
    assert done.returncode == 0, done.stderr
    after = await live.get()
    assert after["version"] == "v2" and after["count"] == before["count"] + posts
    home = json.loads(done.stdout)["home"]
    assert home.startswith(live.state + "/homes/v2-")
    assert (live.base / "log").read_text().splitlines() == [
        f"pre web {Path(home).name}", f"complete web {Path(home).name}"]


def test_a_bad_data_file_changes_nothing(live: Live) -> None:
    data = live.base / "liveupdate.data"
    data.write_text("general:\n    name = web\n    ready_timeout = soon\nextras:\n    x = 1\n")
    before = live("status", "web", "--json").stdout
    bad = live("update", "web", "--data", str(data))
    assert bad.returncode == 2
    assert "liveupdate.data:3: general.ready_timeout" in bad.stderr and ":4:" in bad.stderr
    assert json.loads(live("status", "web", "--json").stdout) == json.loads(before)


def updates(live: Live) -> list[dict[str, Any]]:
    """The workload's live journal, newest update first."""
    return app.live_updates("web", str(live.state))


def _steps_running(journal: Path) -> bytes:
    import sqlite3

    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT name FROM phases WHERE state = 'running'").fetchall()
    return b" ".join(r[0].encode() for r in rows)


def running_in(base: Path) -> set[int]:
    """Live processes whose working directory is under base: this test's workloads."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if cwd.startswith(str(base)) and "zombie" not in status:
            found.add(int(entry.name))
    return found


async def test_an_idle_client_cannot_freeze_the_original_after_a_timeout(live: Live) -> None:
    idle = socket.create_connection(("127.0.0.1", live.port))   # connects, says nothing
    try:
        before = await live.get()
        failed = await asyncio.to_thread(live, "update", "web", "--home-dir",
                                         str(live.base / "v2"), "--checkpoint-timeout", "0.5")
        assert failed.returncode == 1 and "did not checkpoint" in failed.stderr
        # the original resumes once the idle client times out (5 s): queued, not refused
        after = json.loads((await http.get(live.url, timeout=15)).body)
        assert (after["pid"], after["version"]) == (before["pid"], "v1")
    finally:
        idle.close()


async def test_a_checkpointing_surrogate_after_a_plain_original_is_told_to_go(
        short_dir: Path) -> None:
    (short_dir / "v1").mkdir()
    (short_dir / "v1" / "NO_CHECKPOINT").write_text("")
    w = Live(short_dir)          # v1 exists already: Live adds only VERSION files
    try:
        done, _ = await under_load(w, "update", "web", "--home-dir", str(w.base / "v2"),
                                   "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["mode"] == "overlap"
        assert (await w.get())["version"] == "v2"
    finally:
        w("stop", "web")


async def test_the_original_dying_mid_update_leaves_the_surrogate_serving(live: Live) -> None:
    (live.base / "v1" / "SLOW_CHECKPOINT").write_text("5")
    original = (await live.get())["pid"]
    update = asyncio.create_task(asyncio.to_thread(
        live, "update", "web", "--home-dir", str(live.base / "v2"), "--checkpoint-timeout",
        "20"))
    journal = Path(live.state) / "updates.db"
    for _ in range(200):          # until the checkpoint is under way (the journal says so)
        if journal.exists() and b"checkpoint" in _steps_running(journal):
            break
        await asyncio.sleep(0.05)
    os.kill(original, signal.SIGKILL)
    failed = await update
    assert failed.returncode == 1 and "took over" in failed.stderr, failed.stderr
    served = await live.get()
    assert served["version"] == "v2" and served["pid"] != original
    assert json.loads(live("status", "web", "--json").stdout)["home"].endswith("/v2")
    assert updates(live)[0]["state"] == "taken-over"


async def test_stop_during_an_update_leaves_no_process_behind(live: Live) -> None:
    (live.base / "v1" / "SLOW_CHECKPOINT").write_text("3")
    update = asyncio.create_task(asyncio.to_thread(
        live, "update", "web", "--home-dir", str(live.base / "v2")))
    for _ in range(200):                           # until the surrogate runs (≤ 10 s)
        if len(running_in(live.base)) == 2:        # the original and its surrogate
            break
        await asyncio.sleep(0.05)
    assert len(running_in(live.base)) == 2
    stopped = await asyncio.to_thread(live, "stop", "web")
    await update
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", live.port), timeout=1):
        pass
    assert running_in(live.base) == set()


def test_a_workload_never_ready_at_run_is_not_left_on_the_port(short_dir: Path) -> None:
    (short_dir / "home").mkdir()
    (short_dir / "home" / "NEVER_READY").write_text("")
    port = free_port()
    started = zdt("live", "run", "--name", "web", "--listen", f"127.0.0.1:{port}", "--home",
                  str(short_dir / "home"), "--state-dir", str(short_dir / "sd"),
                  "--ready-timeout", "1", "--detach", "--", sys.executable, "-m",
                  "zdt.lab.counter")
    assert started.returncode == 1 and "not ready" in started.stderr, started.stderr
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", port), timeout=1):
        pass
    assert running_in(short_dir) == set()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the dir to another user")
def test_a_state_dir_of_another_user_is_refused(short_dir: Path) -> None:
    """The state dir holds the control socket: one another user could write to would let
    them swap it. Refused (exit 3) before any process starts."""
    theirs = short_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    (short_dir / "v1").mkdir()
    result = zdt("live", "run", "--name", "web", "--listen", f"127.0.0.1:{free_port()}",
                 "--home", str(short_dir / "v1"), "--state-dir", str(theirs), "--detach",
                 "--", sys.executable, "-m", "zdt.lab.counter")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "belongs to uid 65534" in result.stderr
    assert os.listdir(theirs) == []


@pytest.mark.parametrize("archive", ["/nonexistent/v9.tar.gz", "/dev/zero"])
def test_an_archive_that_is_not_there_is_bad_input(live: Live, archive: str) -> None:
    """Checked as given before any copy: exit 2 naming it, not a traceback (nor a copy of
    /dev/zero filling the disk)."""
    result = live("update", "web", "--archive", archive)
    assert result.returncode == 2, result.stdout + result.stderr
    assert archive in result.stderr and "Traceback" not in result.stderr


async def test_a_workload_whose_supervisor_died_is_adopted(live: Live) -> None:
    """kill -9 of the supervisor leaves the workload serving, under load; `zdt live run
    --adopt` takes it back (same pid, its sockets); its next update is an overlap."""
    before = await live.get()
    supervisor = live.status["supervisor_pid"]
    reads = capacity_load(live.url, keep_alive=False)
    async with reads:
        await asyncio.sleep(0.2)
        os.kill(supervisor, signal.SIGKILL)
        await asyncio.sleep(0.5)
        adopted = await asyncio.to_thread(live, "run", "--adopt", "--name", "web",
                                          "--detach", "--json")
        await asyncio.sleep(0.2)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    status = json.loads(adopted.stdout)
    assert (status["pid"], status["readiness"]) == (before["pid"], "adopted")
    assert status["supervisor_pid"] != supervisor
    assert reads.stats.failed == 0 and reads.stats.requests > 50, reads.stats.as_dict()
    again = live("run", "--adopt", "--name", "web")
    assert again.returncode == 4 and "nothing to adopt" in again.stderr
    done, _ = await under_load(live, "update", "web", "--home-dir", str(live.base / "v2"),
                               "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["mode"] == "overlap"
    assert (await live.get())["version"] == "v2"

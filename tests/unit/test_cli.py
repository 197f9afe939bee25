"""The command line refuses bad input before anything changes, with the documented codes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zdt.cli.main import app
from zdt.lock import DomainLock
from zdt.steps import StepSpec
from zdt.workflow.journal.sqlite import SqliteJournal

runner = CliRunner()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--targets", "nope"], 2, "unknown target 'nope'"),
    (["--targets", ""], 2, "--targets"),
    (["--targets", "batch"], 3, "cannot be updated without downtime"),
    (["--targets", "web", "--retries", "-1"], 2, "--retries"),
    (["--targets", "web", "--shutdown-timeout", "-5"], 2, "--shutdown-timeout"),
    (["--targets", "web", "--delay-between-nodes", "1e9"], 2, "--delay-between-nodes"),
    (["--targets", "web", "--retries", "many"], 2, "Invalid value"),
])
def test_bad_arguments(domain_file: Path, args: list[str], code: int, words: str) -> None:
    before = snapshot(domain_file.parent)
    result = runner.invoke(app, ["rollout", "restart", "-d", str(domain_file), *args])
    assert result.exit_code == code, result.output
    assert words in result.output
    assert snapshot(domain_file.parent) == before
    assert not (domain_file.parent / "state").exists()


def test_bad_domain_file(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml.replace('node = "node2"', 'node = "ghost"'))
    result = runner.invoke(app, ["rollout", "restart", "-d", str(path), "--targets", "web"])
    assert result.exit_code == 2
    assert "servers[2].node" in result.output and "domain.toml:40" in result.output
    assert not (tmp_path / "state").exists()


def test_locked_by_a_running_workflow(domain_file: Path) -> None:
    lock = DomainLock(domain_file.parent / "state")
    lock.acquire("restart workflow wf-running")
    try:
        result = runner.invoke(app, ["rollout", "restart", "-d", str(domain_file),
                                     "--targets", "web"])
    finally:
        lock.release()
    assert result.exit_code == 4
    assert "wf-running" in result.output


def test_held_by_a_failed_workflow(domain_file: Path) -> None:
    journal = SqliteJournal(domain_file.parent / "state", time.time)
    journal.create("wf-old", "restart", str(domain_file), {"targets": ["web"]},
                   (StepSpec(0, 0, "node1", "drain", ("s1",)),))
    journal.set_state("wf-old", "failed", "boom")
    journal.close()
    result = runner.invoke(app, ["rollout", "restart", "-d", str(domain_file), "--targets", "web"])
    assert result.exit_code == 4
    assert "zdt revert wf-old" in result.output
    assert len(SqliteJournal(domain_file.parent / "state", time.time).history()) == 1


def test_history_and_status_json(domain_file: Path) -> None:
    journal = SqliteJournal(domain_file.parent / "state", time.time)
    for wid in ("wf-a", "wf-b"):
        journal.create(wid, "restart", str(domain_file), {"targets": ["web"]},
                       (StepSpec(0, 0, "node1", "drain", ("s1",)),))
        journal.set_step(wid, 0, "running", attempt=True)
        journal.set_step(wid, 0, "done")
        journal.set_state(wid, "succeeded")
    journal.close()
    history = json.loads(runner.invoke(app, ["history", "-d", str(domain_file), "--json"]).output)
    assert [h["id"] for h in history] == ["wf-b", "wf-a"]
    assert {"id", "kind", "state", "started"} <= set(history[0])
    result = runner.invoke(app, ["status", "wf-a", "-d", str(domain_file), "--json"])
    status = json.loads(result.output)
    assert (status["id"], status["kind"], status["state"]) == ("wf-a", "restart", "succeeded")
    assert status["steps"][0]["state"] == "done" and status["steps"][0]["attempts"] == 1
    newest = json.loads(runner.invoke(app, ["status", "-d", str(domain_file), "--json"]).output)
    assert newest["id"] == "wf-b"


def test_status_of_unknown_workflow(domain_file: Path) -> None:
    SqliteJournal(domain_file.parent / "state", time.time).close()
    result = runner.invoke(app, ["status", "nope", "-d", str(domain_file)])
    assert result.exit_code == 2
    assert "no workflow 'nope'" in result.output


def test_messages_keep_their_brackets(domain_file: Path) -> None:
    """A field like `[runtime]` in a message is text, not console markup."""
    result = runner.invoke(app, ["rollout", "runtime", "-d", str(domain_file), "--targets",
                                 "web", "--runtime-home", "/opt/rt2"])
    assert result.exit_code == 2
    assert "needs a [runtime] section" in result.output
    assert not (domain_file.parent / "state").exists()


def _garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)


def _foreign(path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE workflows (id TEXT)")
    db.commit()
    db.close()


@pytest.mark.parametrize("spoil", [_garbage, _foreign], ids=["garbage", "foreign schema"])
@pytest.mark.parametrize("args", [["status"], ["history"], ["resume", "wf-1"],
                                  ["rollout", "restart", "--targets", "web"]])
def test_a_journal_that_is_not_ours(domain_file: Path, spoil: Any, args: list[str]) -> None:
    state = domain_file.parent / "state"
    state.mkdir()
    spoil(state / "journal.db")
    before = snapshot(domain_file.parent)
    result = runner.invoke(app, [*args, "-d", str(domain_file)])
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "journal.db: not a zdt journal" in result.output
    assert snapshot(domain_file.parent) == before

"""Opening a journal: a new one opened by several processes at once (a rollout starting
while `zdt status` looks) is opened by every one of them — the switch to WAL mode answered
"database is locked" at once to some of them (13 of 180 opens, before the retry); and a
journal written by an earlier zdt is read back and extended."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

from zdt.steps import StepSpec
from zdt.workflow.journal.sqlite import SqliteJournal


def _open(state_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    SqliteJournal(Path(state_dir), time.time).close()


def test_processes_opening_a_new_journal_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failed = 0
    for round_ in range(20):
        barrier = context.Barrier(3)
        procs = [context.Process(target=_open, args=(str(tmp_path / str(round_)), barrier))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        failed += sum(p.exitcode != 0 for p in procs)
    assert failed == 0


OLD_SCHEMA = """
CREATE TABLE workflows (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, domain TEXT NOT NULL, request TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, started REAL, ended REAL, error TEXT,
    pid INTEGER, stop_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE steps (
    workflow TEXT NOT NULL REFERENCES workflows(id), idx INTEGER NOT NULL,
    grp INTEGER NOT NULL, node TEXT NOT NULL, name TEXT NOT NULL, servers TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started REAL, ended REAL,
    error TEXT, PRIMARY KEY (workflow, idx));
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, workflow TEXT NOT NULL, ts REAL NOT NULL,
    step INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT);
INSERT INTO workflows VALUES ('old', 'restart', 'd.toml', '{"targets": ["web"]}', 'stopped',
                              1, 1, 2, NULL, 1, 0);
INSERT INTO steps VALUES ('old', 0, 0, 'node1', 'drain', '["s1"]', 'done', 1, 1, 2, NULL);
INSERT INTO steps VALUES ('old', 1, 1, 'node2', 'drain', '["s2"]', 'pending', 0, NULL, NULL,
                          NULL);
"""


def test_a_journal_written_before_batches_is_read_and_extended(tmp_path: Path) -> None:
    """Its steps get the batch of their node visit (one visit per batch, as they ran)."""
    db = sqlite3.connect(tmp_path / "journal.db")
    db.executescript(OLD_SCHEMA)
    db.close()
    journal = SqliteJournal(tmp_path, time.time)
    try:
        assert [(s.group, s.batch, s.state) for s in journal.steps("old")] == [
            (0, 0, "done"), (1, 1, "pending")]
        journal.create("new", "restart", "d.toml", {"targets": ["web"]},
                       (StepSpec(0, 0, "node1", "drain", ("s1",), 0),
                        StepSpec(1, 1, "node2", "drain", ("s2",), 0)))
        assert [s.batch for s in journal.steps("new")] == [0, 0]
    finally:
        journal.close()

"""A new journal opened by several processes at once (a rollout starting while `zdt
status` looks): every one of them opens it. The switch to WAL mode answered "database is
locked" at once to some of them (13 of 180 opens, before the retry)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from zdt.workflow.journal import Journal


def _open(state_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    Journal(Path(state_dir), time.time).close()


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

"""Per-node figures computed from a journal written with a fake clock."""

from __future__ import annotations

from pathlib import Path

import planning

from zdt import domain as dm
from zdt import report
from zdt.workflow.journal.sqlite import SqliteJournal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_node_visits(domain_file: Path) -> None:
    clock = Clock()
    p = planning.build("restart", dm.load(domain_file), ["s1", "s2"])
    journal = SqliteJournal(domain_file.parent / "state", clock)
    journal.create("w", "restart", str(domain_file), {"targets": ["s1", "s2"]}, p.steps)

    def step(index: int, seconds: float, gap: float = 0.002, end: str = "done") -> None:
        journal.set_step("w", index, "running", attempt=True)
        clock.now += seconds
        journal.set_step("w", index, end)
        clock.now += gap

    # node1: drain 0.5 s, stop 0.1, start 0.05, health 0.02, ready 0.1, 2 ms between steps
    for index, seconds in enumerate([0.5, 0.1, 0.05, 0.02, 0.1]):
        step(index, seconds)
    # node2: drain 0.1, stop 0.1, start fails after 0.03, retry 1 s later fails again → revert
    step(5, 0.1)
    step(6, 0.1)
    step(7, 0.03, gap=1.0, end="failed")
    step(7, 0.03, end="failed")
    for index in (7, 6, 5, 4, 3, 2, 1, 0):
        journal.set_step("w", index, "reverting", attempt=True)
        clock.now += 0.2
        journal.set_step("w", index, "reverted")
    visits = report.node_visits(journal.steps("w"), journal.events("w"))
    journal.close()
    one, two = visits
    assert one["node"] == "node1" and one["servers"] == ["s1"]
    assert one["wall"] == round(0.77 + 4 * 0.002, 4)
    assert one["out_of_rotation"] == one["wall"]
    assert one["overhead"] == 0.008        # the four 2 ms gaps between its five steps
    assert one["revert"] == 1.0            # its five steps' reverts, 0.2 s each
    assert two["wall"] == round(0.1 + 0.002 + 0.1 + 0.002 + 0.03 + 1.0 + 0.03, 4)
    assert two["overhead"] == 0.004        # the retry delay is policy, not overhead
    assert two["revert"] == 0.6
    # out of rotation until its drain was reverted (the server is back in the LB)
    assert two["out_of_rotation"] == round(two["wall"] + 0.002 + 0.6, 4)
    assert one["out_of_rotation"] == one["wall"]   # its later revert does not count

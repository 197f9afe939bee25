"""Preview's estimates learn from the journal: the median and the 90th percentile of the
completed node visits of earlier workflows of the same kind, scaled to the plan's batches;
a rollout journals the estimate it started with, and its report shows it beside the time
it took."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import planning
import pytest

from zdt import domain as dm
from zdt import preview
from zdt.app import App, RolloutRequest
from zdt.lab import simulated
from zdt.steps import StepSpec
from zdt.workflow.journal.sqlite import SqliteJournal

VISIT = (StepSpec(0, 0, "node1", "drain", ("n1s1",)), StepSpec(1, 0, "node1", "ready",
                                                                ("n1s1",)))


def earlier(journal: SqliteJournal, now: list[float], walls: list[float],
            kind: str = "restart") -> None:
    """Workflows of one node visit each, taking `walls` seconds."""
    for n, wall in enumerate(walls):
        wid = f"{kind}-{n}"
        journal.create(wid, kind, "d.toml", {"targets": ["web"]}, VISIT)
        journal.set_step(wid, 0, "running", attempt=True)
        journal.set_step(wid, 0, "done")
        now[0] += wall
        journal.set_step(wid, 1, "running", attempt=True)
        journal.set_step(wid, 1, "done")
        journal.set_state(wid, "succeeded")
        now[0] += 100


@pytest.mark.parametrize(("batch", "total", "p90"), [("1", 9.0, 30.0), ("3", 3.0, 10.0),
                                                    ("2", 6.0, 20.0)])
def test_the_median_and_p90_of_earlier_visits(tmp_path: Path, batch: str, total: float,
                                              p90: float) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(planning.fleet(6))
    domain = dm.load(path)
    now = [1_800_000_000.0]
    journal = SqliteJournal(domain.state_dir, lambda: now[0])
    try:
        earlier(journal, now, [1.0, 2.0, 3.0, 4.0, 10.0])
        earlier(journal, now, [50.0, 60.0], kind="home")        # another kind: not used
        plan = planning.build("restart", domain, ["n1s1", "n2s1", "n3s1"], batch=batch)
        e = preview.estimate(plan, journal, {"shutdown_timeout": 30.0})
    finally:
        journal.close()
    assert e["learned"] and "median" in e["basis"] and "5 completed" in e["basis"]
    assert (e["total_seconds"], e["total_p90_seconds"]) == (total, p90)
    assert [v["seconds"] for v in e["per_node"]] == [3.0, 3.0, 3.0]


def test_without_history_the_timeouts_bound_it(tmp_path: Path) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(planning.fleet(2))
    plan = planning.build("restart", dm.load(path), ["web"])
    e = preview.estimate(plan, None, {"shutdown_timeout": 5.0})
    assert not e["learned"] and "upper bound" in e["basis"]
    assert e["total_seconds"] == e["total_p90_seconds"] == 2 * (2 * 5.0 + 90.0 + 60.0)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Path]:
    async with planning.listening_fleet(tmp_path, 3) as path:
        yield path


async def test_a_rollout_reports_its_estimate_beside_what_it_took(fleet: Path) -> None:
    app = App(fleet, build_adapters=simulated.build)
    request = RolloutRequest.of("restart", ("web",), retries=0)
    first = await app.start(request)
    assert first.report["estimate"]["learned"] is False
    second = await app.start(request)
    e = second.report["estimate"]
    assert e["learned"] and e["batches"] == 3 and "3 completed" in e["basis"]
    assert e["total_seconds"] <= e["total_p90_seconds"]
    assert second.report["duration"] is not None


def test_a_live_update_estimate_learns_from_the_workload_history(tmp_path: Path) -> None:
    """`zdt live preview`: the median and the 90th percentile of the workload's earlier
    updates, else an upper bound from the timeouts."""
    from zdt.live.operations import _estimate

    first = _estimate(tmp_path)
    assert (first["learned"], first["blackout_ms"]) == (False, 30_000.0)
    history = [{"total_ms": 100.0 + i, "blackout_ms": float(i), "mode": "checkpoint",
                "state_bytes": 0, "segment_bytes": 1 << 30} for i in range(1, 11)]
    (tmp_path / "state.json").write_text(json.dumps({"history": history}))
    e = _estimate(tmp_path)
    assert (e["learned"], e["blackout_ms"], e["blackout_p90_ms"]) == (True, 5.5, 9.0)
    assert (e["total_ms"], e["total_p90_ms"]) == (105.5, 109.0)
    assert e["basis"].endswith("the last: checkpoint, 0 bytes streamed, a "
                               "1,073,741,824-byte segment by reference")

"""Batches through the whole runner (zdt.app), on a simulated fleet whose service manager
counts the stops and starts under way together: `--parallel` bounds a batch's visits, and
`--allow-downtime` lifts the guard in the plan and in the preconditions alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import planning
import pytest

from zdt.adapters import Connect
from zdt.app import App, RolloutRequest
from zdt.errors import PreconditionError
from zdt.lab import simulated


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Path]:
    async with planning.listening_fleet(tmp_path, 6) as path:
        yield path


def app(path: Path, parallel: int, services: simulated.InstantServices) -> App:
    return App(path, connect=Connect(parallel=parallel),
               build_adapters=lambda d, c: simulated.build(d, c, services))


@pytest.mark.parametrize(("parallel", "most"), [(1, 1), (2, 2), (8, 3)])
async def test_parallel_bounds_the_visits_of_a_batch(fleet: Path, parallel: int,
                                                     most: int) -> None:
    services = simulated.InstantServices(delay=0.02)
    outcome = await app(fleet, parallel, services).start(
        RolloutRequest.of("restart", ("web",), batch="3", retries=0))
    assert outcome.state == "succeeded", outcome.report["error"]
    assert services.most_busy == most


async def test_allow_downtime_lifts_the_guard_in_preview_and_rollout(fleet: Path) -> None:
    services = simulated.InstantServices()
    runner = app(fleet, 8, services)
    wide: dict[str, Any] = {"batch": "5", "retries": 0}
    with pytest.raises(PreconditionError, match=r"batch 1 .* would take 5 of the 6"):
        runner.prepare(RolloutRequest.of("restart", ("web",), **wide))
    request = RolloutRequest.of("restart", ("web",), allow_downtime=True, **wide)
    preview = await runner.preview(request)
    assert preview["ok"], [c for c in preview["preconditions"] if not c["ok"]]
    (cluster,) = preview["capacity"]["clusters"]
    assert (cluster["largest_out"], cluster["may_be_out"]) == (5, 3)
    outcome = await runner.start(request)
    assert outcome.state == "succeeded", outcome.report["error"]

"""State by reference: the counter keeps its count and 64 MiB in a memfd segment that
`zdt live update` hands to the surrogate (SCM_RIGHTS), mapped, not copied. Under load, every
increment survives three updates and a revert, with 0 refused; the supervisor checks that
the original maps the segment no more; a failed handoff leaves the original serving from
its own segment, mapped again, with the count intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_live import Live, under_load

from zdt.live import segments

pytestmark = pytest.mark.integration

SIZE = 64 << 20


@pytest.fixture
def seg(short_dir: Path) -> Iterator[Live]:
    w = Live(short_dir, "--segment", "--state-bytes", str(SIZE))
    try:
        yield w
    finally:
        w("stop", "web")


async def test_the_segment_is_handed_over_by_reference_under_load(seg: Live) -> None:
    before = await seg.get()
    count, pid = before["count"], before["pid"]
    for version in ("v2", "v1", "v2"):
        done, posts = await under_load(seg, "update", "web", "--home-dir",
                                       str(seg.base / version), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert (result["mode"], result["state_bytes"], result["segment_bytes"]) == (
            "checkpoint", 0, 8 + SIZE)
        assert result["original_pid"] == pid and result["surrogate_pid"] != pid
        now = await seg.get()
        assert now["count"] == count + posts and now["version"] == version  # every one
        count, pid = now["count"], now["pid"]
    back, posts = await under_load(seg, "revert", "web", "--json")
    assert back.returncode == 0, back.stderr
    assert (await seg.get())["count"] == count + posts
    # the serving process maps the segment: one mapping of a memfd named zdt-state
    maps = Path(f"/proc/{(await seg.get())['pid']}/maps").read_text()
    assert sum(1 for line in maps.splitlines() if "memfd:zdt-state" in line) == 1


@pytest.mark.parametrize(("switch", "where", "words"), [
    ("CRASH_ON_RESTORE", "v2", "exited with 3 while restoring"),
    ("OLD_HELPER", "v2", "does not say it takes a state segment"),
    ("HOLD_VIEW", "v1", "still holds a view of its state segment"),
])
async def test_a_failed_handoff_maps_the_segment_again_in_the_original(
        seg: Live, switch: str, where: str, words: str) -> None:
    (seg.base / where / switch).write_text("")
    before = await seg.get()
    failed, posts = await under_load(seg, "update", "web", "--home-dir",
                                     str(seg.base / "v2"))
    assert failed.returncode == 1 and "keeps serving" in failed.stderr, failed.stderr
    assert words in failed.stderr, failed.stderr
    after = await seg.get()
    assert (after["pid"], after["version"]) == (before["pid"], "v1")
    assert after["count"] == before["count"] + posts


def test_the_supervisor_tells_a_segment_still_mapped(tmp_path: Path) -> None:
    """What the supervisor checks before it passes a segment on (segments.mapped_by)."""
    import os

    made = segments.Segment.create(4096)
    try:
        assert segments.mapped_by(os.getpid(), made.fd)
        made.detach()
        assert not segments.mapped_by(os.getpid(), made.fd)
    finally:
        made.detach()
        os.close(made.fd)

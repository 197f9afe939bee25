"""Whole-file replacement: exclusive, unguessable temp names; a link at the target is
replaced, never written through; nothing left behind on success or failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zdt import atomic


def test_a_file_is_replaced_whole_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "upstream.conf"
    target.write_text("old\n")
    atomic.write_text(target, "new\n", 0o640)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["upstream.conf"]


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    target = tmp_path / "state.json"
    target.symlink_to(victim)
    atomic.write_text(target, "{}\n", 0o600)
    assert victim.read_text() == "keep\n" and not target.is_symlink()


def test_temp_names_cannot_be_guessed(tmp_path: Path) -> None:
    names = {atomic.temp_name(tmp_path / "f") for _ in range(100)}
    assert len(names) == 100


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old\n")

    def boom(f: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.replace(target, boom, 0o644)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["f"]

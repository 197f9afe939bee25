"""The runtime rewrite on a node tree of real files, through the real local transport."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zdt import domain as dm
from zdt.adapters.transport.local import LocalTransport
from zdt.steps import Context, StepSpec
from zdt.steps.runtime import Rewrite, rewritten

DOMAIN = """
[domain]
name = "rt"
home = "/srv/app/home"
state_dir = "state"

[lb]
socket = "lb.sock"

[runtime]
home = "/opt/runtime-1"
scripts = ["bin/*.sh", "lib/*.conf"]

[[nodes]]
name = "node1"
root = "root"

[[servers]]
name = "s1"
node = "node1"
port = 9001
"""

SETENV = "#!/bin/sh\nJAVA_HOME=/opt/runtime-1\nTOOLS=/opt/runtime-10/lib\nexport JAVA_HOME\n"
CONF = "runtime = /opt/runtime-1\n"


@pytest.fixture
def node(tmp_path: Path) -> tuple[Context, Path]:
    (tmp_path / "domain.toml").write_text(DOMAIN)
    home = tmp_path / "root/srv/app/home"
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    (home / "bin/setenv.sh").write_text(SETENV)
    (home / "bin/setenv.sh").chmod(0o750)
    (home / "lib/runtime.conf").write_text(CONF)
    (home / "bin/blob.sh").write_bytes(b"\x00JAVA_HOME=/opt/runtime-1")
    domain = dm.load(tmp_path / "domain.toml")
    ctx = Context(domain, None, None,  # no manager, no LB: a rewrite uses neither
                  transports={"node1": LocalTransport("node1", str(tmp_path / "root"))},
                  workflow="w1", runtime_home="/opt/runtime-2")
    return ctx, home


def step(ctx: Context) -> Rewrite:
    return Rewrite(ctx, StepSpec(0, 0, "node1", "rewrite", ("s1",)))


async def test_rewrite_then_revert(node: tuple[Context, Path]) -> None:
    ctx, home = node
    assert await step(ctx).check() is False
    facts = await step(ctx).execute()
    assert facts is not None and len(facts["files"]) == 2
    assert (home / "bin/setenv.sh").read_text() == SETENV.replace(
        "JAVA_HOME=/opt/runtime-1", "JAVA_HOME=/opt/runtime-2")       # runtime-10 kept
    assert (home / "lib/runtime.conf").read_text() == "runtime = /opt/runtime-2\n"
    assert (home / "bin/setenv.sh").stat().st_mode & 0o777 == 0o750
    assert (home / "bin/blob.sh").read_bytes() == b"\x00JAVA_HOME=/opt/runtime-1"
    assert await step(ctx).check() is True
    await step(ctx).revert()
    assert (home / "bin/setenv.sh").read_text() == SETENV
    assert (home / "lib/runtime.conf").read_text() == CONF
    assert sorted(os.listdir(home / "bin")) == ["blob.sh", "setenv.sh"]


async def test_a_crash_between_two_files_is_finished_by_resume(
        node: tuple[Context, Path]) -> None:
    ctx, home = node
    # as if the step died after its first file: a backup, and that file rewritten
    (home / "bin/setenv.sh.zdt-runtime-w1").write_text(SETENV)
    (home / "bin/setenv.sh").write_text(rewritten(SETENV, "/opt/runtime-1", "/opt/runtime-2"))
    assert await step(ctx).check() is False            # runtime.conf still names the old one
    await step(ctx).execute()
    assert (home / "lib/runtime.conf").read_text() == "runtime = /opt/runtime-2\n"
    await step(ctx).revert()
    assert (home / "bin/setenv.sh").read_text() == SETENV
    assert (home / "lib/runtime.conf").read_text() == CONF


def test_rewritten_takes_whole_paths_only() -> None:
    text = 'A=/opt/runtime-1\nB=/opt/runtime-10\nC="/opt/runtime-1"\nD=/opt/runtime-1/bin\n'
    assert rewritten(text, "/opt/runtime-1", "/opt/runtime-1.0.2") == (
        'A=/opt/runtime-1.0.2\nB=/opt/runtime-10\nC="/opt/runtime-1.0.2"\n'
        "D=/opt/runtime-1.0.2/bin\n")

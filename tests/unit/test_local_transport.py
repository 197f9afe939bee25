"""The local transport runs argv lists (never a shell) and copies files atomically."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from zdt.adapters.transport.local import LocalTransport
from zdt.errors import CommandError, StepError


async def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    t = LocalTransport("n1", str(tmp_path))
    hostile = "x; touch pwned && echo $HOME `id`"
    result = await t.run([sys.executable, "-c", "import sys; print(sys.argv[1])", hostile])
    assert result.stdout.strip() == hostile
    assert not (tmp_path / "pwned").exists()
    assert result.returncode == 0


async def test_runs_in_the_node_root_and_maps_paths(tmp_path: Path) -> None:
    t = LocalTransport("n1", str(tmp_path))
    assert t.path("/srv/app/home") == str(tmp_path / "srv/app/home")
    result = await t.run([sys.executable, "-c", "import os; print(os.getcwd())"])
    assert result.stdout.strip() == str(tmp_path)
    assert LocalTransport("n2").path("/etc/hosts") == "/etc/hosts"


async def test_non_zero_exit_raises_with_the_result(tmp_path: Path) -> None:
    t = LocalTransport("n1", str(tmp_path))
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    with pytest.raises(CommandError, match=r"n1: .* exited 3: boom") as err:
        await t.run(argv)
    assert err.value.result.returncode == 3
    unchecked = await t.run(argv, check=False)
    assert (unchecked.returncode, unchecked.stderr) == (3, "boom")


async def test_timeout_kills_and_keeps_partial_output(tmp_path: Path) -> None:
    t = LocalTransport("n1", str(tmp_path))
    argv = [sys.executable, "-u", "-c", "import time; print('started'); time.sleep(30)"]
    with pytest.raises(CommandError, match=r"timed out after 0\.5 s") as err:
        await t.run(argv, timeout=0.5)
    assert "started" in err.value.result.stdout


@pytest.mark.parametrize("argv", [[], ["ls", 3]])
async def test_argv_must_be_a_list_of_strings(tmp_path: Path, argv: list[object]) -> None:
    with pytest.raises(TypeError):
        await LocalTransport("n1", str(tmp_path)).run(argv)


async def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="n1: cannot run '/no/such/program'"):
        await LocalTransport("n1", str(tmp_path)).run(["/no/such/program"])


async def test_put_copies_atomically_with_mode(tmp_path: Path) -> None:
    source = tmp_path / "src.sh"
    source.write_bytes(b"#!/bin/sh\necho hi\n")
    source.chmod(0o750)
    t = LocalTransport("n1", str(tmp_path / "root"))
    await t.put(str(source), "/srv/app/staging/run.sh")
    target = tmp_path / "root/srv/app/staging/run.sh"
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o750
    assert os.listdir(target.parent) == ["run.sh"]     # no temp file left behind


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


async def test_a_child_left_holding_stdout_does_not_hang_the_command(tmp_path: Path) -> None:
    """`sleep 900 & exit 0` (a hook starting a daemon): done when the command exits, with
    what it printed; the child it left is not waited for (nor killed: it was meant to run)."""
    t = LocalTransport("n1", str(tmp_path))
    script = ("import subprocess, sys; p = subprocess.Popen(['sleep', '30']); "
              "print(p.pid, flush=True); print('bye', file=sys.stderr)")
    result = await t.run([sys.executable, "-c", script], timeout=20)
    child = int(result.stdout.split()[0])
    try:
        assert result.returncode == 0 and result.stderr.strip() == "bye"
        assert _alive(child)
    finally:
        os.kill(child, 9)


async def test_a_timeout_kills_every_process_the_command_started(tmp_path: Path) -> None:
    t = LocalTransport("n1", str(tmp_path))
    script = ("import subprocess, time; p = subprocess.Popen(['sleep', '30']); "
              "print(p.pid, flush=True); time.sleep(30)")
    with pytest.raises(CommandError, match="timed out after 1 s") as err:
        await t.run([sys.executable, "-c", script], timeout=1)
    child = int(err.value.result.stdout.split()[0])
    for _ in range(100):                 # SIGKILL is delivered at once; reaping may lag
        if not _alive(child):
            break
        await asyncio.sleep(0.02)
    assert not _alive(child)


async def test_a_missing_node_root_is_named(tmp_path: Path) -> None:
    """Before: "cannot run 'true'", as if the command were missing."""
    with pytest.raises(StepError, match=r"n1: its root .*/gone is not a directory"):
        await LocalTransport("n1", str(tmp_path / "gone")).run(["true"])

"""Runtime rollouts (WebLogic's Java home update) on a real sandbox, under load."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_sandbox, zdt, zdt_under_load

pytestmark = pytest.mark.integration

CRASH = [sys.executable, str(Path(__file__).with_name("crash_rollout.py"))]


@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False) as info:
        yield info



def runtime_args(sb: dict[str, Any], *extra: str) -> list[str]:
    return ["rollout", "runtime", "-d", sb["domain"], "--targets", "cluster1",
            "--runtime-home", sb["runtime_home"], "--json", *extra]


def files(sb: dict[str, Any]) -> dict[str, str]:
    """Digest and mode of every file under every node's home."""
    out = {}
    for node in sb["nodes"]:
        home = Path(node["home"])
        for p in sorted(home.rglob("*")):
            if p.is_file():
                out[f"{node['name']}:{p.relative_to(home)}"] = (
                    hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode))
    return out


def setenv(sb: dict[str, Any]) -> set[str]:
    return {line for n in sb["nodes"]
            for line in (Path(n["home"]) / "bin/setenv.sh").read_text().splitlines()
            if line.startswith("JAVA_HOME=")}


async def under_load(sb: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    return await zdt_under_load(sb["lb_url"], *argv)


async def test_runtime_rollout_then_revert_restores_every_byte(sb: dict[str, Any]) -> None:
    blob = Path(sb["nodes"][1]["home"]) / "bin/blob.sh"     # selected by the glob, not text
    blob.write_bytes(b"\x00\x01JAVA_HOME=/opt/runtime-1\x00")
    before = files(sb)
    done = await under_load(sb, *runtime_args(sb))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert setenv(sb) == {"JAVA_HOME=/opt/runtime-2"}
    conf = (Path(sb["nodes"][0]["home"]) / "lib/runtime.conf").read_text()
    assert "runtime = /opt/runtime-2" in conf
    assert blob.read_bytes() == b"\x00\x01JAVA_HOME=/opt/runtime-1\x00"    # never touched
    back = await under_load(sb, "revert", report["id"], "-d", sb["domain"], "--json")
    assert back.returncode == 0, back.stderr
    assert setenv(sb) == {"JAVA_HOME=/opt/runtime-1"}
    assert files(sb) == before                      # bytes and modes, backups gone


@pytest.mark.parametrize("then", ["resume", "revert"])
async def test_kill_9_after_the_rewrite_then_resume_or_revert(sb: dict[str, Any],
                                                              then: str) -> None:
    crashed = subprocess.run([*CRASH, sb["domain"], "runtime:" + sb["runtime_home"], "node2",
                              "rewrite", "done"], capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    wid = crashed.stdout.split()[0]
    result = await under_load(sb, then, wid, "-d", sb["domain"], "--json")
    assert result.returncode == 0, result.stderr
    want = "/opt/runtime-2" if then == "resume" else "/opt/runtime-1"
    assert setenv(sb) == {f"JAVA_HOME={want}"}


def disagree(sb: dict[str, Any]) -> None:
    path = Path(sb["nodes"][2]["home"]) / "bin/other.sh"
    path.write_text("JAVA_HOME=/opt/elsewhere\n")


def globs_select_nothing(sb: dict[str, Any]) -> None:
    domain = Path(sb["domain"])
    text = domain.read_text()
    old = 'scripts = ["bin/*.sh", "lib/*.conf"]'
    assert old in text
    domain.write_text(text.replace(old, 'scripts = ["nothing/*.sh", "bin/*.none"]'))


def already_on_it(sb: dict[str, Any]) -> None:
    for n in sb["nodes"]:
        path = Path(n["home"]) / "bin/setenv.sh"
        path.write_text(path.read_text().replace("/opt/runtime-1", "/opt/runtime-2"))


def no_runtime_section(sb: dict[str, Any]) -> None:
    domain = Path(sb["domain"])
    text = domain.read_text()
    domain.write_text(text[:text.index("[runtime]")] + text[text.index("[[nodes]]"):])


BAD: list[tuple[str, list[str], Any, int, str]] = [
    ("relative runtime", ["--runtime-home", "opt/runtime-2"], None, 2, "--runtime-home"),
    ("dot-dot runtime", ["--runtime-home", "/opt/../etc"], None, 2, "'..' is not allowed"),
    ("quote in runtime", ["--runtime-home", '/opt/run"time'], None, 2, "quotes, '$'"),
    ("dollar in runtime", ["--runtime-home", "/opt/$HOME"], None, 2, "quotes, '$'"),
    ("newline in runtime", ["--runtime-home", "/opt/rt\n2"], None, 2, "control characters"),
    ("the root as runtime", ["--runtime-home", "//"], None, 2, "names / itself"),
    ("globs select nothing", [], globs_select_nothing, 3,
     "no file selected by [runtime] scripts"),
    ("already on the runtime", [], already_on_it, 3, "already name /opt/runtime-2"),
    ("empty runtime", ["--runtime-home", ""], None, 2, "--runtime-home"),
    ("missing on the nodes", ["--runtime-home", "/opt/runtime-9"], None, 3,
     "/opt/runtime-9 is missing"),
    ("scripts disagree", [], disagree, 3, "different runtimes"),
    ("no [runtime] section", [], no_runtime_section, 2, "[runtime]"),
    ("unknown target", ["--targets", "nope"], None, 2, "unknown target"),
    ("bad retries", ["--retries", "-2"], None, 2, "--retries"),
    ("bad timeout", ["--shutdown-timeout", "-1"], None, 2, "--shutdown-timeout"),
    ("pause after zero", ["--pause-after", "0"], None, 2, "--pause-after"),
]


@pytest.mark.parametrize(("extra", "spoil", "code", "words"),
                         [pytest.param(*b[1:], id=b[0]) for b in BAD])
def test_bad_runtime_inputs_change_nothing(sb: dict[str, Any], extra: list[str], spoil: Any,
                                           code: int, words: str) -> None:
    if spoil:
        spoil(sb)
    before = files(sb)
    args = runtime_args(sb)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    result = zdt(*args)
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr + result.stdout
    assert files(sb) == before

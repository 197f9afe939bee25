"""Bad input to a home rollout, on a real sandbox: exit 2 or 3 with a message naming the
member, field or argument, and not one byte changed on any node. Preview changes nothing.
Hooks run at their phases with the workflow's facts; a failing hook reverts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import capacity_load, zdt
from hostile_archives import HOSTILE, Members, Mutate, build
from zdt import http
from zdt.lab import sandbox

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    info = sandbox.up(base / "sb", 2, 1, admin=False)
    try:
        yield info
    finally:
        sandbox.down(base / "sb")
        shutil.rmtree(base, ignore_errors=True)



def digest_tree(sb: dict[str, Any]) -> str:
    """One digest over every node's whole root: files, links, modes."""
    h = hashlib.sha256()
    for node in sb["nodes"]:
        root = Path(node["root"]) / "srv"
        for p in sorted(root.rglob("*")):
            h.update(str(p.relative_to(root)).encode())
            if p.is_symlink():
                h.update(b"-> " + str(p.readlink()).encode())
            elif p.is_file():
                h.update(p.read_bytes())
            h.update(oct(p.lstat().st_mode).encode())
    return h.hexdigest()


def home(sb: dict[str, Any], archive: str, *extra: str) -> list[str]:
    return ["rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
            archive, *extra]


# (id, archive members to build (None: use the sandbox's v2), mutate, extra args,
#  exit code, words in stderr)
CASES: list[tuple[str, Members | None, Mutate, list[str], int, list[str]]] = [
    (name, members, mutate, [], 2, words) for name, members, mutate, words in HOSTILE
    if name in ("absolute path", "dot-dot inside", "symlink absolute", "symlink up",
                "hard link", "char device", "fifo", "release marker", "digest mismatch",
                "sidecar missing", "not gzip", "duplicate")
] + [
    ("unknown target", None, None, ["--targets", "nope"], 2, ["unknown target 'nope'"]),
    ("negative retries", None, None, ["--retries", "-1"], 2, ["--retries"]),
    ("relative backup dir", None, None, ["--backup-dir", "bak"], 2, ["--backup-dir"]),
    *[(f"backup dir {spelling}", None, None, ["--backup-dir", spelling], 2,
       ["inside the home /srv/app/home"])
      for spelling in ("/srv/app//home/x", "/srv/app/home/.", "//srv/app/home/",
                       "/srv/./app/home")],
    ("backup dir /", None, None, ["--backup-dir", "//"], 2, ["names / itself"]),
    ("backup dir with a newline", None, None, ["--backup-dir", "/srv/b\nak"], 2,
     ["control characters"]),
    ("no session compat without timeout", None, None, ["--no-session-compatible"], 2,
     ["--shutdown-timeout"]),
    ("pause after zero", None, None, ["--pause-after", "0"], 2, ["--pause-after"]),
]


@pytest.mark.parametrize(("members", "mutate", "extra", "code", "words"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_changes_nothing(sb: dict[str, Any], tmp_path: Path, members: Members | None,
                                   mutate: Mutate, extra: list[str], code: int,
                                   words: list[str]) -> None:
    archive = sb["archives"]["v2"]
    if members is not None:
        path = build(tmp_path / "a.tar.gz", members)
        if mutate:
            mutate(path)
        archive = str(path)
    before = digest_tree(sb)
    for args in (home(sb, archive, *extra), home(sb, archive, "--dry-run", *extra)):
        result = zdt(*args)
        assert result.returncode == code, result.stdout + result.stderr
        for w in words:
            assert w in result.stderr, result.stderr
    assert digest_tree(sb) == before
    assert not (Path(sb["domain"]).parent / "state" / "journal.db").exists()


def test_a_missing_archive(sb: dict[str, Any]) -> None:
    result = zdt(*home(sb, "/nonexistent/v9.tar.gz"))
    assert result.returncode == 2 and "/nonexistent/v9.tar.gz" in result.stderr


def test_preview_changes_nothing_and_reports(sb: dict[str, Any]) -> None:
    before = digest_tree(sb)
    result = zdt("preview", "-d", sb["domain"], "rollout", "home", "--targets", "cluster1",
                 "--archive", sb["archives"]["v2"], "--rollback", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["archive"]["version"] == "v2" and report["archive"]["rollback"] is True
    names = {(c["node"], c["name"]) for c in report["preconditions"]}
    assert {("node1", "reachable"), ("node2", "home present"), ("node1", "free disk"),
            ("node2", "in rotation"), ("node1", "running")} <= names
    assert [v["node"] for v in report["plan"]] == ["node1", "node2"]
    assert report["plan"][0]["steps"][:3] == ["extract", "drain", "stop"]
    assert report["estimates"]["total_seconds"] > 0
    assert report["estimates"]["disk_per_node_bytes"] > 0
    text = zdt("preview", "-d", sb["domain"], "home", "--archive", sb["archives"]["v2"],
               "--targets", "cluster1")
    assert text.returncode == 0 and "nothing was changed" in text.stdout
    assert digest_tree(sb) == before


HOOK = """#!/bin/sh
echo "$ZDT_PHASE $ZDT_NODE $ZDT_SERVERS $ZDT_WORKFLOW_ID $(cat "$ZDT_HOME/VERSION")" \\
    >> "$(dirname "$0")/log"
"""


def test_hooks_run_at_their_phases_and_a_failing_one_reverts(short_dir: Path) -> None:
    info = sandbox.up(short_dir / "sb", 2, 1, admin=False)
    try:
        for node in info["nodes"]:
            hooks = Path(node["root"]) / "opt/hooks"
            hooks.mkdir(parents=True)
            (hooks / "record").write_text(HOOK)
            (hooks / "record").chmod(0o755)
            (hooks / "fail").write_text("#!/bin/sh\necho refused >&2\nexit 3\n")
            (hooks / "fail").chmod(0o755)
        domain = Path(info["domain"])
        original = domain.read_text()
        domain.write_text(original + '\n[hooks]\neach-node = "/opt/hooks/record"\n'
                          'offline-after-update = "/opt/hooks/record"\n'
                          'after-server-start = "/opt/hooks/record"\n'
                          'success = "/opt/hooks/record"\n')
        ok = asyncio.run(_under_load(info, home(info, info["archives"]["v2"], "--json")))
        assert ok.returncode == 0, ok.stderr
        wid = json.loads(ok.stdout)["id"]
        log = (Path(info["nodes"][1]["root"]) / "opt/hooks/log").read_text().splitlines()
        assert log == [f"each-node node2 node2-s1 {wid} v1",
                       f"offline-after-update node2 node2-s1 {wid} v2",
                       f"after-server-start node2 node2-s1 {wid} v2"]
        first = (Path(info["nodes"][0]["root"]) / "opt/hooks/log").read_text().splitlines()
        assert first[-1] == f"success node1 node1-s1 {wid} v2"
        domain.write_text(original + '\n[hooks]\noffline-after-update = "/opt/hooks/fail"\n'
                          'error = "/opt/hooks/record"\n')
        failed = asyncio.run(_under_load(info, home(info, info["archives"]["broken"],
                                                    "--retries", "0", "--json")))
        assert failed.returncode == 1
        report = json.loads(failed.stdout)
        assert report["state"] == "reverted"
        assert "hook:offline-after-update" in report["error"] and "refused" in report["error"]
        first = (Path(info["nodes"][0]["root"]) / "opt/hooks/log").read_text().splitlines()
        assert first[-1].startswith(f"error node1 node1-s1 {report['id']} ")
        assert {(Path(n["home"]) / "VERSION").read_text().strip() for n in info["nodes"]} == \
            {"v2"}
    finally:
        sandbox.down(short_dir / "sb")


async def _under_load(info: dict[str, Any], args: list[str]) -> subprocess.CompletedProcess[str]:
    async with capacity_load(info["lb_url"]) as load:
        result = await asyncio.to_thread(zdt, *args)
    assert load.stats.failed == 0, load.stats.errors
    versions = {json.loads((await http.get(info["lb_url"])).body)["version"] for _ in range(4)}
    assert len(versions) == 1
    return result


def test_archive_create_and_distribute_commands(sb: dict[str, Any], tmp_path: Path) -> None:
    home_dir = tmp_path / "v3"
    shutil.copytree(Path(sb["nodes"][0]["home"]), home_dir, symlinks=True)
    (home_dir / "VERSION").write_text("v3\n")
    first = zdt("archive", "create", str(home_dir), str(tmp_path / "a.tar.gz"), "--json")
    second = zdt("archive", "create", str(home_dir), str(tmp_path / "b.tar.gz"), "--json")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["sha256"] == b["sha256"] and a["version"] == "v3"
    args = ["archive", "distribute", "-d", sb["domain"], str(tmp_path / "a.tar.gz"), "--json"]
    assert json.loads(zdt(*args).stdout)["nodes"] == {"node1": "copied", "node2": "copied"}
    assert json.loads(zdt(*args).stdout)["nodes"] == {"node1": "present", "node2": "present"}
    staged = Path(sb["nodes"][1]["root"]) / f"srv/app/staging/{a['sha256'][:16]}.tar.gz"
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == a["sha256"]
    bad = zdt("archive", "create", str(tmp_path / "missing"), str(tmp_path / "c.tar.gz"))
    assert bad.returncode == 2 and not (tmp_path / "c.tar.gz").exists()

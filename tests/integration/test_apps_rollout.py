"""Application rollouts (stage, nostage, external_stage) on a real sandbox under load."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_sandbox, zdt, zdt_under_load
from zdt import http

pytestmark = pytest.mark.integration



@pytest.fixture
def sb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, admin=False) as info:
        yield info



def tree(sb: dict[str, Any]) -> dict[str, str]:
    out = {}
    for node in sb["nodes"]:
        root = Path(node["root"]) / "srv/app/apps"
        for p in sorted(root.rglob("*")):
            out[f"{node['name']}:{p.relative_to(root)}"] = (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
    return out


async def app_versions(sb: dict[str, Any]) -> set[str]:
    return {json.loads((await http.get(sb["lb_url"])).body)["app_version"] for _ in range(6)}


async def under_load(sb: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    return await zdt_under_load(sb["lb_url"], *argv)


def apps_args(sb: dict[str, Any], spec: str | Path, *extra: str) -> list[str]:
    return ["rollout", "apps", "-d", sb["domain"], "--targets", "cluster1", "--apps",
            str(spec), "--json", *extra]


def deploy_mode(sb: dict[str, Any], mode: str) -> None:
    domain = Path(sb["domain"])
    domain.write_text(domain.read_text().replace('mode = "stage"', f'mode = "{mode}"'))


def place_on_nodes(sb: dict[str, Any], version: str) -> str:
    """A patched app already on every node (nostage / external_stage)."""
    for node in sb["nodes"]:
        target = Path(node["root"]) / "srv/app/patches/shop"
        target.mkdir(parents=True)
        (target / "APP_VERSION").write_text(version + "\n")
    return "/srv/app/patches/shop"


def spec(tmp: Path, **entry: Any) -> Path:
    path = tmp / "apps.json"
    path.write_text(json.dumps({"applications": [entry]}))
    return path


async def test_staged_app_then_revert(sb: dict[str, Any]) -> None:
    before = tree(sb)
    done = await under_load(sb, *apps_args(sb, sb["apps"]))
    assert done.returncode == 0, done.stderr
    assert await app_versions(sb) == {"2"}
    back = await under_load(sb, "revert", json.loads(done.stdout)["id"], "-d", sb["domain"])
    assert back.returncode == 0, back.stderr
    assert await app_versions(sb) == {"1"}
    assert tree(sb) == before


@pytest.mark.parametrize("mode", ["nostage", "external_stage"])
async def test_placed_app_then_revert(sb: dict[str, Any], tmp_path: Path, mode: str) -> None:
    deploy_mode(sb, mode)
    patched = place_on_nodes(sb, "3")
    path = spec(tmp_path, name="shop", patched_location=patched,
                backup_location="/srv/app/apps/shop.bak", mode=mode)
    done = await under_load(sb, *apps_args(sb, path))
    assert done.returncode == 0, done.stderr
    assert await app_versions(sb) == {"3"}
    back = await under_load(sb, "revert", json.loads(done.stdout)["id"], "-d", sb["domain"])
    assert back.returncode == 0, back.stderr
    assert await app_versions(sb) == {"1"}
    for node in sb["nodes"]:     # the patched version is handed back where it was placed
        assert (Path(node["root"]) / "srv/app/patches/shop/APP_VERSION").read_text() == "3\n"


async def test_a_broken_app_is_reverted(sb: dict[str, Any], tmp_path: Path) -> None:
    broken = Path(sb["apps"]).parent / "apps" / "shop-broken"
    path = spec(tmp_path, name="shop", patched_location=str(broken),
                backup_location="/srv/app/apps/shop.bak", mode="stage")
    before = tree(sb)
    done = await under_load(sb, *apps_args(sb, path, "--health-timeout", "1", "--retries",
                                           "0"))
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "reverted"
    assert await app_versions(sb) == {"1"} and tree(sb) == before


BAD: list[tuple[str, Any, int, str]] = [
    ("not json", "{oops", 2, "not valid JSON"),
    ("not a list", {"applications": {}}, 2, "(top level)"),
    ("empty list", {"applications": []}, 2, "(top level)"),
    ("unknown app", [{"name": "blog", "patched_location": "/x", "backup_location": "/y",
                      "mode": "stage"}], 2, "applications[0].name: no application 'blog'"),
    ("wrong mode", [{"name": "shop", "patched_location": "/srv/x", "backup_location": "/y",
                     "mode": "nostage"}], 2, "applications[0].mode: 'shop' was deployed stage"),
    ("bad mode", [{"name": "shop", "patched_location": "/x", "backup_location": "/y",
                   "mode": "copy"}], 2, "applications[0].mode: 'copy'"),
    ("missing key", [{"name": "shop", "mode": "stage", "patched_location": "/x"}], 2,
     "applications[0].backup_location: required"),
    ("unknown key", [{"name": "shop", "mode": "stage", "patched_location": "/x",
                      "backup_location": "/y", "colour": "red"}], 2,
     "applications[0].colour: unknown key"),
    ("staged dir missing", [{"name": "shop", "mode": "stage", "patched_location": "/nope",
                             "backup_location": "/y"}], 2, "/nope is not a directory here"),
    ("relative backup", [{"name": "shop", "mode": "stage", "patched_location": "PATCHED",
                          "backup_location": "bak"}], 2, "backup_location: 'bak'"),
    ("dot-dot backup", [{"name": "shop", "mode": "stage", "patched_location": "PATCHED",
                         "backup_location": "/srv/../etc"}], 2, "'..' is not allowed"),
    *[(f"backup {spelling}", [{"name": "shop", "mode": "stage", "patched_location": "PATCHED",
                               "backup_location": spelling}], 2, "lie inside one another")
      for spelling in ("/srv/app/apps//shop/old", "/srv/app/apps/shop/.",
                       "//srv/app/apps/./shop/")],
    ("backup is the deployed dir", [{"name": "shop", "mode": "stage",
                                     "patched_location": "PATCHED",
                                     "backup_location": "/srv/app/apps/shop"}], 2,
     "lie inside one another"),
    ("listed twice", [{"name": "shop", "mode": "stage", "patched_location": "PATCHED",
                       "backup_location": "/a"}] * 2, 2, "listed twice"),
    ("backup location taken", [{"name": "shop", "mode": "stage",
                                "patched_location": "PATCHED",
                                "backup_location": "/opt/runtime-1"}], 3,
     "backup location /opt/runtime-1 is dir (it must not exist yet)"),
]


@pytest.mark.parametrize(("content", "code", "words"), [pytest.param(*b[1:], id=b[0])
                                                       for b in BAD])
def test_bad_apps_spec_changes_nothing(sb: dict[str, Any], tmp_path: Path, content: Any,
                                       code: int, words: str) -> None:
    patched = str(Path(sb["apps"]).parent / "apps" / "shop-2")
    path = tmp_path / "apps.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        body = content if isinstance(content, dict) else {"applications": content}
        path.write_text(json.dumps(body).replace("PATCHED", patched))
    before = tree(sb)
    result = zdt(*apps_args(sb, path))
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr, result.stderr
    assert tree(sb) == before


def test_rollback_with_apps_is_refused(sb: dict[str, Any]) -> None:
    result = zdt("rollout", "update", "-d", sb["domain"], "--archive", sb["archives"]["v2"],
                 "--apps", sb["apps"], "--rollback")
    assert result.returncode == 2 and "--rollback cannot be combined" in result.stderr


async def test_combined_update_with_apps_drains_each_node_once(sb: dict[str, Any]) -> None:
    done = await under_load(sb, "rollout", "update", "-d", sb["domain"], "--archive",
                            sb["archives"]["v2"], "--runtime-home", sb["runtime_home"],
                            "--apps", sb["apps"], "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["node"] for s in report["steps"] if s["name"] == "drain"] == [
        "node1", "node2", "node3"]
    body = json.loads((await http.get(sb["lb_url"])).body)
    assert (body["version"], body["app_version"]) == ("v2", "2")
    back = await under_load(sb, "revert", report["id"], "-d", sb["domain"])
    assert back.returncode == 0, back.stderr
    body = json.loads((await http.get(sb["lb_url"])).body)
    assert (body["version"], body["app_version"]) == ("v1", "1")


def _fifo(d: Path) -> str:
    os.mkfifo(d / "pipe")
    return "a fifo cannot be archived"


def _absolute_link(d: Path) -> str:
    (d / "pw").symlink_to("/etc/passwd")
    return "leads outside"


def _newline(d: Path) -> str:
    (d / "a\nb").write_text("x")
    return "control character"


@pytest.mark.parametrize("spoil", [_fifo, _absolute_link, _newline],
                         ids=["fifo", "absolute symlink", "newline name"])
def test_a_staged_dir_goes_through_the_archive_rules(sb: dict[str, Any], tmp_path: Path,
                                                     spoil: Any) -> None:
    """Before: tarfile.add carried FIFOs, absolute symlinks (and set-uid bits) to the nodes."""
    patched = tmp_path / "shop-x"
    shutil.copytree(Path(sb["apps"]).parent / "apps" / "shop-2", patched)
    words = spoil(patched)
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"applications": [{
        "name": "shop", "mode": "stage", "patched_location": str(patched),
        "backup_location": "/srv/app/apps-backup/shop"}]}))
    before = tree(sb)
    result = zdt(*apps_args(sb, path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "patched_location" in result.stderr and words in result.stderr, result.stderr
    assert tree(sb) == before

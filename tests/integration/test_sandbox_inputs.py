"""`zdt.lab.sandbox`: the v1 home, the ready-made v2 and broken archives, and home_link."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import get

from zdt import archive
from zdt import domain as dm
from zdt.errors import ZdtError
from zdt.lab import sandbox
from zdt.lab.sandbox.layout import free_ports
from zdt.lab.sandbox.processes import started_processes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def linked() -> Iterator[dict[str, Any]]:
    """One sandbox for the read-only tests here: 2 nodes × 1 server, home_link=True."""
    d = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        info = sandbox.up(d / "sb", nodes=2, servers_per_node=1, admin=False, home_link=True)
        try:
            yield info
        finally:
            sandbox.down(d / "sb")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def server_homes(d: str | Path) -> dict[int, str]:
    """The --home argument of every server process of the sandbox, by pid."""
    homes = {}
    for p in started_processes(Path(d)):
        if p.what == "server":
            argv = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
            homes[p.pid] = os.fsdecode(argv[argv.index(b"--home") + 1])
    return homes


def test_archives_are_reported_and_verify(linked: dict[str, Any]) -> None:
    archives = linked["archives"]
    assert archives == sandbox.info(linked["dir"])["archives"]
    assert archives.keys() == {"v2", "broken", "degraded", "degraded-slow"}
    for name, path in archives.items():
        assert Path(path).is_absolute()
        assert Path(path) == Path(linked["dir"], "inputs", f"{name}.tar.gz")
        assert Path(path).is_file()
        assert Path(path + ".json").is_file()
        assert archive.verify(Path(path)).version == name


def test_the_v1_home_is_a_small_installation(linked: dict[str, Any]) -> None:
    home = Path(linked["nodes"][0]["home"])
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert files == ["README", "VERSION", "bin/app-version", "bin/setenv.sh", "lib/app.conf",
                     "lib/runtime.conf"]
    assert stat.S_IMODE((home / "bin" / "app-version").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "README").stat().st_mode) == 0o644
    assert 1000 < sum((home / f).stat().st_size for f in files) < 20_000
    out = subprocess.run([str(home / "bin" / "app-version")], capture_output=True,
                         text=True, check=True).stdout
    assert out == "v1\n"
    # The inputs share the layout; only VERSION (and BROKEN, DEGRADED) differ.
    for name in ("v2", "broken", "degraded", "degraded-slow"):
        other = Path(linked["dir"], "inputs", name)
        assert (other / "VERSION").read_text() == f"{name}\n"
        assert (other / "BROKEN").exists() == (name == "broken")
        assert (other / "DEGRADED").exists() == name.startswith("degraded")
        for f in files:
            if f != "VERSION":
                assert (other / f).read_bytes() == (home / f).read_bytes()


@pytest.mark.parametrize(("name", "health"), [("v2", 200), ("broken", 500),
                                             ("degraded", 200)])
def test_an_archived_home_runs_with_its_version_and_health(
        linked: dict[str, Any], tmp_path: Path, name: str, health: int) -> None:
    with tarfile.open(linked["archives"][name]) as tar:
        tar.extractall(tmp_path, filter="data")
    [home] = {p.parent for p in tmp_path.rglob("VERSION")}
    [port] = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "zdt.lab.sample_service", "--home", str(home),
         "--port", str(port), "--server", "t1", "--node", "n1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        status, _, body = get(url)
        assert (status, body["version"]) == (200, name)
        status, _, body = get(url + "health")
        assert (status, body["status"]) == (health, "ok" if health == 200 else "broken")
        # healthy but bad: every 5th request but /health answers 500
        statuses = [get(url)[0] for _ in range(10)]
        assert statuses.count(500) == (2 if name == "degraded" else 0), statuses
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # a graceful stop
        proc.communicate(timeout=5)
    assert proc.returncode == 0


def test_home_link_makes_each_home_a_relative_symlink(linked: dict[str, Any]) -> None:
    assert linked["home_link"] is True
    domain = dm.load(linked["domain"])
    assert domain.domain.home == "/srv/app/home"
    homes = set()
    for node in linked["nodes"]:
        home, root = Path(node["home"]), Path(node["root"])
        assert home == root / "srv" / "app" / "home"
        assert home.is_symlink()
        assert os.readlink(home) == "releases/v1"
        assert home.resolve() == root / "srv" / "app" / "releases" / "v1"
        assert (home / "VERSION").read_text() == "v1\n"
        homes.add(str(home))
        for server in node["servers"]:
            status, _, body = get(server["url"])
            assert (status, body["version"], body["node"]) == (200, "v1", node["name"])
    # The servers are started through the link, never its target.
    assert sorted(server_homes(linked["dir"]).values()) == sorted(homes)


def test_up_again_builds_a_fresh_installation(short_dir: Path) -> None:
    d = short_dir / "sb"
    info = sandbox.up(d, nodes=1, servers_per_node=1, admin=False, home_link=True)
    sandbox.down(d)
    home = Path(info["nodes"][0]["home"])
    (home / "FAIL_STARTS").write_text("1\n")   # left behind by a test
    (home.parent / "staging").mkdir()
    (d / "inputs" / "stale.tar.gz").write_bytes(b"")
    info = sandbox.up(d, nodes=1, servers_per_node=1, admin=False)
    try:
        assert home.is_dir() and not home.is_symlink()
        assert sorted(p.name for p in home.parent.iterdir()) == ["apps", "home"]
        assert not (home / "FAIL_STARTS").exists()
        assert sorted(p.name for p in (d / "inputs").iterdir()) == [
            "apps", "apps.json", "broken", "broken.tar.gz", "broken.tar.gz.json", "degraded",
            "degraded-slow", "degraded-slow.tar.gz", "degraded-slow.tar.gz.json",
            "degraded.tar.gz", "degraded.tar.gz.json", "v2", "v2.tar.gz", "v2.tar.gz.json"]
        assert get(info["nodes"][0]["servers"][0]["url"])[2]["version"] == "v1"
        assert server_homes(d) == {get(info["nodes"][0]["servers"][0]["url"])[2]["pid"]:
                                   str(home)}
    finally:
        sandbox.down(d)


def test_a_failed_archive_stops_what_was_started(short_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_create(home: Path, out: Path, *, version: str | None = None) -> None:
        raise ZdtError("cannot write the archive (injected)")

    monkeypatch.setattr(archive, "create", broken_create)
    d = short_dir / "sb"
    with pytest.raises(ZdtError, match="injected"):
        sandbox.up(d, nodes=1, servers_per_node=1, admin=False)
    assert started_processes(d) == []
    assert not (d / "sandbox.json").exists()

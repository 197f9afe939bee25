"""Archives: deterministic create, a verify that refuses hostile or broken archives, and a
distribute that copies only what a node does not already hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hostile_archives import (
    HOSTILE,
    SPOILED_MANIFEST,
    Members,
    Mutate,
    build,
    directory,
    flip_a_byte,
    reg,
    sha,
    special,
    with_pax,
    write_sidecar,
)
from zdt import archive
from zdt import domain as dm
from zdt.adapters.transport import Transport
from zdt.adapters.transport.local import LocalTransport
from zdt.archive import Manifest, create, manifest_path, verify
from zdt.errors import AdapterError, ConfigError
from zdt.staging import distribute, staged_path


def make_home(root: Path, version: str | None = "v2") -> Path:
    home = root / "home"
    (home / "bin").mkdir(parents=True)
    (home / "lib" / "empty").mkdir(parents=True)
    if version is not None:
        (home / "VERSION").write_text(version + "\n")
    (home / "bin" / "run").write_text("#!/bin/sh\necho run\n")
    (home / "bin" / "run").chmod(0o755)
    (home / "lib" / "app.conf").write_text("workers = 4\n")
    (home / "lib" / "current.conf").symlink_to("app.conf")
    (home / "bin" / "conf").symlink_to("../lib")
    return home


# ---------------------------------------------------------------------------- create


def test_create_twice_gives_the_same_bytes_whatever_the_mtimes(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    first = create(home, tmp_path / "a.tar.gz")
    for path in [home, *home.rglob("*")]:
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    second = create(home, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert first == second
    data = (tmp_path / "a.tar.gz").read_bytes()
    assert (first.sha256, first.size) == (sha(data), len(data))
    assert data[4:8] == b"\0\0\0\0"            # gzip header mtime
    assert data[3] & 0x08 == 0                 # no FNAME in the gzip header


def test_create_members_are_normalised(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    m = create(home, tmp_path / "a.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    names = [t.name for t in members]
    assert names == sorted(names)
    assert names == ["VERSION", "bin", "bin/conf", "bin/run", "lib", "lib/app.conf",
                     "lib/current.conf", "lib/empty"]
    assert all((t.mtime, t.uid, t.gid, t.uname, t.gname) == (0, 0, 0, "", "")
               for t in members)
    by_name = {t.name: t for t in members}
    assert by_name["bin/run"].mode == 0o755
    assert by_name["bin/conf"].issym() and by_name["bin/conf"].linkname == "../lib"
    assert m.files == {"VERSION": sha(b"v2\n"), "bin/run": sha(b"#!/bin/sh\necho run\n"),
                       "lib/app.conf": sha(b"workers = 4\n")}
    assert m.unpacked == len(b"v2\n#!/bin/sh\necho run\nworkers = 4\n")
    assert Manifest.from_json(manifest_path(tmp_path / "a.tar.gz").read_text(), "x") == m


def test_source_date_epoch_sets_member_mtimes(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    plain = create(home, tmp_path / "a.tar.gz")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = create(home, tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert {t.mtime for t in tar.getmembers()} == {1_700_000_000}
    assert dated.sha256 != plain.sha256
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        create(home, tmp_path / "c.tar.gz")


def test_version_from_the_file_or_the_argument(tmp_path: Path) -> None:
    home = make_home(tmp_path, version="  v7 ")
    assert create(home, tmp_path / "a.tar.gz").version == "v7"
    assert create(home, tmp_path / "b.tar.gz", version="v8-rc1").version == "v8-rc1"


@pytest.mark.parametrize("content", [None, "  \n", "v2\nv3", "v2\x1b[2J", "v" * 201],
                         ids=["no VERSION", "empty VERSION", "two lines", "a control code",
                              "too long"])
def test_missing_version_is_refused(tmp_path: Path, content: str | None) -> None:
    home = make_home(tmp_path, version=content)
    with pytest.raises(ConfigError, match=r"(?i)version") as err:
        create(home, tmp_path / "a.tar.gz")
    assert err.value.exit_code == 2
    assert not list(tmp_path.glob("a.tar.gz*"))


def test_the_release_marker_of_a_deployed_home_is_left_out(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    (home / archive.ARCHIVE_MARKER).write_text("deployed\n")
    m = create(home, tmp_path / "a.tar.gz")
    assert archive.ARCHIVE_MARKER not in m.files
    assert verify(tmp_path / "a.tar.gz") == m


def _fifo(home: Path) -> str:
    os.mkfifo(home / "lib" / "pipe")
    return "pipe"


def _outside_link(home: Path) -> str:
    (home / "lib" / "escape").symlink_to("../../outside")
    return "escape"


def _absolute_link(home: Path) -> str:
    (home / "lib" / "abs").symlink_to(home / "lib" / "app.conf")
    return "abs"


def _sneaky_link(home: Path) -> str:
    (home / "here").symlink_to(".")
    (home / "up").symlink_to("here/..")     # normalises to ".", but is HOME/..
    return "up"


@pytest.mark.parametrize("spoil", [_fifo, _outside_link, _absolute_link, _sneaky_link])
def test_create_refuses_what_it_cannot_archive_and_writes_nothing(
        tmp_path: Path, spoil: Callable[[Path], str]) -> None:
    home = make_home(tmp_path)
    name = spoil(home)
    out = tmp_path / "out" / "a.tar.gz"
    with pytest.raises(ConfigError, match=name) as err:
        create(home, out)
    assert err.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_create_refuses_a_bad_home_or_an_archive_inside_it(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        create(tmp_path / "nope", tmp_path / "a.tar.gz")
    with pytest.raises(ConfigError, match="not a directory"):
        create(home / "VERSION", tmp_path / "a.tar.gz")
    with pytest.raises(ConfigError, match="inside the home"):
        create(home, home / "lib" / "a.tar.gz")
    assert not list(home.rglob("*.tar.gz*"))


# ---------------------------------------------------------------------------- verify


def test_round_trip(tmp_path: Path) -> None:
    made = create(make_home(tmp_path), tmp_path / "a.tar.gz")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert verify(tmp_path / "a.tar.gz") == made
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_manifest_json_errors_name_the_source_and_field() -> None:
    good = Manifest("v1", "a" * 64, 10, 3, {"f": "b" * 64})
    assert Manifest.from_json(good.to_json(), "m.json") == good
    raw = json.loads(good.to_json())
    for field, value in [("size", "10"), ("sha256", "xyz"), ("version", ""),
                         ("version", "v2\x1b]0;t\x07"), ("version", "a\nb"),
                         ("unpacked", True), ("files", [])]:
        with pytest.raises(ConfigError, match=rf"m\.json: field '{field}'"):
            Manifest.from_json(json.dumps({**raw, field: value}), "m.json")
    with pytest.raises(ConfigError, match=r"m\.json: field 'version': required"):
        Manifest.from_json(json.dumps({k: v for k, v in raw.items() if k != "version"}),
                           "m.json")
    with pytest.raises(ConfigError, match=r"m\.json: not valid JSON"):
        Manifest.from_json("{", "m.json")


def assert_refused(path: Path, fragments: list[str]) -> None:
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(ConfigError) as err:
        verify(path)
    assert err.value.exit_code == 2
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert sorted(p.name for p in path.parent.iterdir()) == before


@pytest.mark.parametrize(("members", "mutate", "fragments"),
                         [pytest.param(m, mu, f, id=i) for i, m, mu, f in HOSTILE])
def test_verify_refuses(tmp_path: Path, members: Members, mutate: Mutate,
                        fragments: list[str]) -> None:
    path = build(tmp_path / "a.tar.gz", members)
    if mutate is not None:
        mutate(path)
    assert_refused(path, fragments)


@pytest.mark.parametrize(("edit", "fragments"),
                         [pytest.param(e, f, id=i) for i, e, f in SPOILED_MANIFEST])
def test_verify_refuses_a_manifest_that_disagrees(
        tmp_path: Path, edit: Callable[[dict[str, str]], dict[str, str]],
        fragments: list[str]) -> None:
    path = build(tmp_path / "a.tar.gz", [reg("f"), reg("g")], edit)
    assert_refused(path, fragments)


def test_verify_stops_at_the_unpacked_size_the_manifest_declares(tmp_path: Path) -> None:
    path = build(tmp_path / "a.tar.gz", [reg("f", b"x" * 4096), reg("g", b"y" * 4096)])
    write_sidecar(path, json.loads(manifest_path(path).read_text())["files"], 100)
    assert_refused(path, ["'f'", "more than the 100 bytes"])


def test_verify_accepts_a_hand_built_sound_archive(tmp_path: Path) -> None:
    path = build(tmp_path / "a.tar.gz", [directory("d"), reg("d/f"),
                                         special("l", tarfile.SYMTYPE, "d/f"),
                                         special("d/up", tarfile.SYMTYPE, "../l")])
    assert verify(path).files == {"d/f": sha(b"data\n")}


def test_verify_refuses_a_missing_archive(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nope.tar.gz", ["no such archive"])


# ---------------------------------------------------------------------------- distribute


DOMAIN = """\
[domain]
name = "shop"
home = "/srv/app/home"
state_dir = "state"

[lb]
socket = "haproxy/admin.sock"

[[nodes]]
name = "node1"
root = "nodes/node1"

[[nodes]]
name = "node2"
root = "nodes/node2"

[[servers]]
name = "s1"
node = "node1"
port = 8001

[[servers]]
name = "s2"
node = "node2"
port = 8002
"""


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[dm.Domain, dict[str, Transport]]:
    (tmp_path / "domain.toml").write_text(DOMAIN)
    d = dm.load(tmp_path / "domain.toml")
    for n in d.nodes:
        Path(str(n.root)).mkdir(parents=True)
    return d, {n.name: LocalTransport(n.name, n.root) for n in d.nodes}


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Manifest]:
    out = tmp_path / "dist" / "home-v2.tar.gz"
    return out, create(make_home(tmp_path), out)


def staged_files(d: dm.Domain, transports: dict[str, Transport],
                 m: Manifest) -> dict[str, tuple[Path, Path]]:
    target = staged_path(d, m.sha256)
    return {n: (Path(t.path(target)), Path(t.path(target + ".json")))
            for n, t in transports.items()}


async def test_distribute_copies_then_finds_copies_present(
        fleet: tuple[dm.Domain, dict[str, Transport]], made: tuple[Path, Manifest]) -> None:
    d, transports = fleet
    out, m = made
    assert staged_path(d, m.sha256) == f"/srv/app/staging/{m.sha256[:16]}.tar.gz"
    assert await distribute(d, out, transports) == {"node1": "copied", "node2": "copied"}
    staged = staged_files(d, transports, m)
    for tar, side in staged.values():
        assert tar.read_bytes() == out.read_bytes()
        assert side.read_bytes() == manifest_path(out).read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for pair in staged.values() for p in pair}
    assert await distribute(d, out, transports) == {"node1": "present", "node2": "present"}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


async def test_a_corrupted_copy_is_copied_again(
        fleet: tuple[dm.Domain, dict[str, Transport]], made: tuple[Path, Manifest]) -> None:
    d, transports = fleet
    out, m = made
    await distribute(d, out, transports)
    tar, _ = staged_files(d, transports, m)["node2"]
    flip_a_byte(tar)
    assert await distribute(d, out, transports, parallel=1) == {
        "node1": "present", "node2": "copied"}
    assert tar.read_bytes() == out.read_bytes()


async def test_a_failing_verify_copies_nothing(
        tmp_path: Path, fleet: tuple[dm.Domain, dict[str, Transport]],
        made: tuple[Path, Manifest]) -> None:
    d, transports = fleet
    out, _ = made
    flip_a_byte(out)
    with pytest.raises(ConfigError, match="digest mismatch"):
        await distribute(d, out, transports)
    assert not list((tmp_path / "nodes").rglob("*.tar.gz*"))
    assert not list((tmp_path / "nodes").rglob("staging"))


class CorruptingTransport(LocalTransport):
    """Copies a byte-flipped file, as a faulty link or disk would."""

    async def put(self, local: str, remote: str) -> None:
        await super().put(local, remote)
        flip_a_byte(Path(self.path(remote)))


async def test_a_copy_that_does_not_hash_right_names_the_node(
        fleet: tuple[dm.Domain, dict[str, Transport]], made: tuple[Path, Manifest]) -> None:
    d, transports = fleet
    out, m = made
    bad = d.node("node2")
    transports["node2"] = CorruptingTransport(bad.name, bad.root)
    with pytest.raises(AdapterError, match=rf"node2: {staged_path(d, m.sha256)}: sha256"):
        await distribute(d, out, transports)
    # the healthy node still got its copy
    tar, side = staged_files(d, transports, m)["node1"]
    assert tar.read_bytes() == out.read_bytes() and side.exists()


async def test_a_node_without_a_transport_is_refused(
        fleet: tuple[dm.Domain, dict[str, Transport]], made: tuple[Path, Manifest]) -> None:
    d, transports = fleet
    del transports["node2"]
    with pytest.raises(ConfigError, match=r"no transport for node.*node2"):
        await distribute(d, made[0], transports)


def test_a_huge_pax_header_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """Before: a 65 KB archive with a 64 MiB pax header took verify to 226 MB of memory
    (tarfile reads the header whole). Now the header is refused after 64 KiB."""
    path = build(tmp_path / "a.tar.gz", [with_pax(reg("f"), {"comment": "x" * (64 << 20)})])
    assert path.stat().st_size < 200_000
    # VmHWM: this process's own peak (ru_maxrss would carry the test's, which built it)
    probe = ("import sys\nfrom pathlib import Path\nfrom zdt.archive import verify\n"
             "from zdt.errors import ConfigError\ntry:\n    verify(Path(sys.argv[1]))\n"
             "except ConfigError as exc:\n    print(exc)\n"
             "print(next(line.split()[1] for line in open('/proc/self/status') "
             "if line.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, timeout=120, check=True)
    message, peak_kib = done.stdout.rsplit("\n", 2)[:2]
    assert "a pax header of 67108" in message
    assert int(peak_kib) < 80 * 1024, peak_kib      # MiB, well under the header's 64


def test_a_bundle_carries_permission_bits_only(tmp_path: Path) -> None:
    """A stage-mode application dir: a set-uid file travels without its set-uid bit."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "su").write_text("#!/bin/sh\n")
    (app / "su").chmod(0o4755)
    (app / "sub").mkdir()
    (app / "sub" / "f").write_text("x")
    files = archive.bundle(app, tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        modes = {m.name: m.mode for m in tar}
    assert modes["su"] == 0o755 and set(files) == {"su", "sub/f"}

"""`zdt stale`: real processes whose executable was replaced or deleted are found, untouched
ones are not; maps parsing is checked on a /proc tree written by the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zdt import stale
from zdt.stale import Scan, StaleFile, StaleProcess, as_dict, scan

SLEEP = shutil.which("sleep")
NOBODY = 65534


@pytest.fixture
def start() -> Iterator[Callable[[Path], int]]:
    """Starts `exe 30`; every process started is killed at the end, by its pid."""
    started: list[subprocess.Popen[bytes]] = []

    def run(exe: Path) -> int:
        # Popen returns once the exec succeeded, so the new image is mapped by then.
        started.append(subprocess.Popen([str(exe), "30"]))
        return started[-1].pid

    try:
        yield run
    finally:
        for process in started:
            process.kill()
            process.wait()


@pytest.mark.skipif(SLEEP is None, reason="needs a sleep executable")
def test_replaced_and_deleted_executables_are_found(
        tmp_path: Path, start: Callable[[Path], int]) -> None:
    copies = {}
    for name in ("replaced", "deleted", "untouched"):
        (tmp_path / name).mkdir()
        copies[name] = Path(shutil.copy2(str(SLEEP), tmp_path / name / "sleep")).resolve()
    pids = {name: start(exe) for name, exe in copies.items()}

    # An update writes the new file beside the old one and renames it over it.
    new = copies["replaced"].with_name(".sleep.new")
    shutil.copy2(str(SLEEP), new)
    os.replace(new, copies["replaced"])
    copies["deleted"].unlink()

    result = scan(pids=pids.values())
    assert result == Scan(processes=tuple(sorted([
        StaleProcess(pids["replaced"], f"{copies['replaced']} 30",
                     (StaleFile(str(copies["replaced"]), "replaced"),)),
        StaleProcess(pids["deleted"], f"{copies['deleted']} 30",
                     (StaleFile(str(copies["deleted"]), "deleted"),)),
    ], key=lambda p: p.pid)), unreadable=())


def test_a_pid_that_does_not_exist_is_skipped() -> None:
    # pid_max is at most 2**22 on Linux, so this pid cannot be running.
    assert scan(pids=[2**22 + 1]) == Scan((), ())


def test_scanning_every_process_does_not_fail() -> None:
    result = scan()
    assert os.getpid() not in result.unreadable
    assert [p.pid for p in result.processes] == sorted(p.pid for p in result.processes)


def test_no_proc_says_so(tmp_path: Path) -> None:
    """(`zdt stale` turns it into a precondition: exit 3.)"""
    with pytest.raises(stale.ScanError, match="cannot list the processes"):
        scan(tmp_path / "no-proc")


# ------------------------------------------------------------------ a /proc tree of our own


def dev(path: Path) -> str:
    st = path.stat()
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"


def pid_dir(proc: Path, pid: int, *, cmdline: bytes = b"", comm: str = "",
            maps: str | None = None) -> Path:
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(cmdline)
    (d / "comm").write_text(comm + "\n")
    if maps is not None:
        (d / "maps").write_text(maps)
    return d


def test_maps_are_parsed_into_deleted_and_replaced_files(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for name in ("live.so", "replaced.so", "renamed-over.so", "app"):
        (files / name).write_bytes(b"\x7fELF" + name.encode())
    live, d = files / "live.so", dev(files / "live.so")
    ino = live.stat().st_ino
    other_ino = (files / "app").stat().st_ino  # an inode number the paths above do not have
    maps = f"""\
55d000000000-55d000001000 r--p 00000000 {d} {ino}   {live}
55d000001000-55d000002000 r-xp 00001000 {d} {ino}   {live}
55d000002000-55d000003000 rw-p 00000000 00:00 0   [heap]
7f0000000000-7f0000001000 r-xp 00000000 {d} {other_ino}   {files}/replaced.so
7f0000001000-7f0000002000 r-xp 00000000 {d} 4242   {files}/gone.so (deleted)
7f0000002000-7f0000003000 r--p 00002000 {d} 4242   {files}/gone.so (deleted)
7f0000003000-7f0000004000 r-xp 00003000 {d} 4242   {files}/gone.so (deleted)
7f0000004000-7f0000005000 r-xp 00000000 {d} {other_ino}   {files}/renamed-over.so (deleted)
7f0000005000-7f0000006000 r-xp 00000000 {d} 4244   {files}/my lib.so (deleted)
7f0000006000-7f0000007000 r--s 00000000 {d} 4245   {files}/data.db (deleted)
7f0000007000-7f0000008000 r-xs 00000000 00:01 1025   /memfd:jit (deleted)
7f0000008000-7f0000009000 r-xs 00000000 00:01 6   /dev/zero (deleted)
7f0000009000-7f000000a000 rw-s 00000000 00:01 32768   /SYSV00000000 (deleted)
7f000000a000-7f000000b000 r-xp 00000000 00:0e 7   anon_inode:[perf_event]
7f000000b000-7f000000c000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0   [vdso]
7ffd00001000-7ffd00002000 rw-p 00000000 00:00 0   [stack]
"""
    proc = tmp_path / "proc"
    app = pid_dir(proc, 100, cmdline=b"/srv/app\0--port\x008080\0", maps=maps)
    (app / "exe").symlink_to(files / "app")       # still the file at its path
    (app / "root").symlink_to("/")
    pid_dir(proc, 102, comm="gone")                # exited before its maps were read
    pid_dir(proc, 103, comm="kworker/0:1", maps="")  # a kernel thread: no exe, no maps
    pid_dir(proc, 104, comm="worker", maps=maps.splitlines()[4] + "\n")
    (proc / "self").symlink_to("100")
    (proc / "sys").mkdir()

    result = scan(proc)

    assert result == Scan(processes=(
        StaleProcess(100, "/srv/app --port 8080", (
            StaleFile(f"{files}/gone.so", "deleted"),
            StaleFile(f"{files}/my lib.so", "deleted"),
            StaleFile(f"{files}/renamed-over.so", "replaced"),
            StaleFile(f"{files}/replaced.so", "replaced"))),
        StaleProcess(104, "worker", (StaleFile(f"{files}/gone.so", "deleted"),)),
    ), unreadable=())
    assert scan(proc, pids=[104, 103, 104]).processes == result.processes[1:]
    assert as_dict(scan(proc, pids=[104])) == {
        "processes": [{"pid": 104, "command": "worker",
                       "files": [{"path": f"{files}/gone.so", "why": "deleted"}]}],
        "unreadable": []}


MAJOR_8, MAJOR_0 = os.makedev(8, 1), os.makedev(0, 45)


@pytest.mark.parametrize(("mapped", "found", "same"), [
    ((MAJOR_8, 5), (MAJOR_8, 5), True),
    ((MAJOR_8, 5), (MAJOR_8, 6), False),                # a new file at the path
    ((MAJOR_8, 5), (os.makedev(8, 2), 5), False),       # another disk mounted there
    ((MAJOR_8, 5), (MAJOR_0, 5), True),                 # overlayfs before Linux 6.8
    ((os.makedev(0, 31), 5), (MAJOR_0, 5), True),       # btrfs: subvolume vs filesystem
    ((os.makedev(0, 31), 5), (MAJOR_0, 9), False),
])
def test_devices_are_compared_only_when_both_are_real(
        mapped: tuple[int, int], found: tuple[int, int], same: bool) -> None:
    assert stale._same_file(*mapped, *found) is same


# ------------------------------------------------------------------------- permission


def unprivileged(work: Callable[[], Any]) -> Any:
    """Runs `work` without root: in a child that drops to nobody when we are root."""
    if os.geteuid() != 0:
        return work()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports through the pipe
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with os.fdopen(write, "w") as out:
                json.dump(work(), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged scan failed"
    return json.loads(text)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can read (tmp_path's parents are private)."""
    d = Path(tempfile.mkdtemp(prefix="zdt-stale-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_a_process_whose_maps_cannot_be_read_is_listed_unreadable(shared_dir: Path) -> None:
    proc = shared_dir / "proc"
    pid_dir(proc, 200, comm="theirs", maps="")
    pid_dir(proc, 201, comm="ours", maps="")
    (proc / "200" / "maps").chmod(0)
    ours = os.getpid()  # a root process when this test runs as root
    theirs = [ours] if os.geteuid() == 0 else []

    found = unprivileged(lambda: {"fake": as_dict(scan(proc)),
                                  "real": as_dict(scan(pids=theirs))})

    assert found["fake"] == {"processes": [], "unreadable": [200]}
    assert found["real"] == {"processes": [], "unreadable": theirs}


def test_packages_come_from_dpkg() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: dpkg-query is not installed")
    found = stale.packages(["/usr/bin/dpkg-query", "/nowhere/libx.so"])
    assert found == {"/usr/bin/dpkg-query": "dpkg"}


def test_main_scans_a_tree_and_says_which_pids_are_gone(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """The command a node runs: this process (not stale) and a pid that does not exist."""
    assert stale.main([str(os.getpid()), "999999999"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing"] == [999999999]
    assert all(p["root"] == os.getpid() for p in out["processes"])


def test_the_command_sent_to_a_node_is_small_and_stdlib_only() -> None:
    """stale.py and procfs.py travel as one argument of `python3 -c` (an SSH command line
    is one argument of the remote shell: at most 128 KiB); they import nothing of zdt but
    each other."""
    from zdt import stale_fleet

    assert len(stale_fleet.BOOT) + len(stale_fleet._sources()) < 64 * 1024
    for name in stale_fleet.MODULES:
        text = (Path(stale.__file__).parent / f"{name}.py").read_text()
        imported = {line.split()[1] for line in text.splitlines()
                    if line.startswith(("import ", "from "))}
        assert all(not m.startswith("zdt") or m == "zdt" for m in imported), imported


async def test_a_node_scan_maps_processes_to_servers_and_says_what_it_could_not_see(
        tmp_path: Path) -> None:
    """The command a node runs, run here through the local transport: this test's own
    process (a server whose pid it is) and a pid that is gone."""
    from zdt import stale_fleet
    from zdt.adapters.transport.local import LocalTransport

    rows = [{"server": "s1", "node": "n1", "pid": os.getpid(), "stale": []},
            {"server": "s2", "node": "n1", "pid": 999_999_999, "stale": []}]
    found = await stale_fleet._node(LocalTransport("n1"), rows, stale_fleet._sources())
    assert "error" not in found, found
    assert found["missing"] == [999_999_999]
    assert stale_fleet.blind({"nodes": [found], "servers": rows}) == [
        "n1: process(es) 999999999 ended before the scan"]

"""`zdt stale` (AIX `genld -u`): processes still running code from files that have since
been deleted or replaced, so an update of those files has not reached them yet.

For each process, every file with an executable mapping in `/proc/PID/maps` (the
executable, shared libraries, Python extension modules) and `/proc/PID/exe` is compared
with what its path names now:

* nothing at the path any more → "deleted";
* another file at the path (a different inode, or a different device) → "replaced".
  An update that writes a new file and renames it over the old one is the usual case:
  the kernel then shows the old mapping as "PATH (deleted)", yet something is there.

Paths are looked up through `/proc/PID/root`, so a process in a chroot or container is
judged by its own view of the filesystem. Only code is considered: data files that are
mapped (locale archives, databases, shared memory) are rewritten routinely, and a
restart is not what updates them.

A process whose maps cannot be read (another user's, without root) is listed in
`Scan.unreadable`; one that exits during the scan is left out.

On a domain's nodes the scan runs with no agent (stale_fleet.py): this module and procfs,
which import nothing but the standard library, are sent with the command, and `main`
scans the given processes and their descendants and prints JSON, with the package that
owns each file when dpkg knows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zdt import procfs

DELETED = " (deleted)"
# Mappings that name no file on disk, though their "path" starts with "/": memfd and
# SysV shared memory, shared anonymous memory (/dev/zero), huge pages, AIO rings, GPU
# buffers. Device files under /dev are never code to update either.
_PSEUDO = ("/memfd:", "/SYSV", "/dev/", "/anon_hugepage", "/[", "/drm mm object",
           "/dmabuf:")


class ScanError(OSError):
    """The processes cannot be listed (no procfs)."""


@dataclass(frozen=True)
class StaleFile:
    path: str
    why: str  # "deleted" | "replaced"


@dataclass(frozen=True)
class StaleProcess:
    pid: int
    command: str
    files: tuple[StaleFile, ...]


@dataclass(frozen=True)
class Scan:
    processes: tuple[StaleProcess, ...]
    unreadable: tuple[int, ...]


@dataclass(frozen=True)
class _Mapped:
    """A file a process runs code from, as the kernel identifies it."""

    path: str
    deleted: bool  # the kernel marked the path " (deleted)"
    dev: int
    ino: int


class _Vanished(Exception):
    """The process exited while it was being scanned."""


def scan(proc: Path = Path("/proc"), *, pids: Iterable[int] | None = None) -> Scan:
    """Scan `pids` (default: every process in `proc`), in pid order."""
    stale: list[StaleProcess] = []
    unreadable: list[int] = []
    for pid in sorted(set(_all_pids(proc) if pids is None else pids)):
        try:
            files = _stale_files(proc / str(pid))
            if files:
                stale.append(StaleProcess(pid, _command(proc / str(pid)), files))
        except _Vanished:
            continue
        except OSError:  # EACCES for another user's process; anything else alike
            unreadable.append(pid)
    return Scan(tuple(stale), tuple(unreadable))


def as_dict(scan: Scan) -> dict[str, Any]:
    """The scan as JSON-ready data (`zdt stale --json`)."""
    return {
        "processes": [
            {"pid": p.pid, "command": p.command,
             "files": [{"path": f.path, "why": f.why} for f in p.files]}
            for p in scan.processes
        ],
        "unreadable": list(scan.unreadable),
    }


def _all_pids(proc: Path) -> list[int]:
    try:
        return [int(entry.name) for entry in os.scandir(proc) if entry.name.isdecimal()]
    except OSError as exc:
        raise ScanError(f"{proc}: cannot list the processes: "
                        f"{exc.strerror or exc}; is procfs mounted?") from exc


def _stale_files(piddir: Path) -> tuple[StaleFile, ...]:
    root = _root(piddir)
    found: dict[str, StaleFile] = {}
    for mapped in [*_read_maps(piddir), *_read_exe(piddir)]:
        if mapped.path in found:
            continue
        why = _judge(mapped, root)
        if why is not None:
            found[mapped.path] = StaleFile(mapped.path, why)
    return tuple(found[path] for path in sorted(found))


def _root(piddir: Path) -> str:
    # A /proc tree made for tests may have no `root` link; paths are then taken as-is.
    root = piddir / "root"
    return str(root) if os.path.lexists(root) else ""


def _read_maps(piddir: Path) -> list[_Mapped]:
    try:
        # Bytes, decoded with the filesystem encoding, so that a path in any encoding
        # can be stat()ed exactly as the kernel printed it.
        text = os.fsdecode((piddir / "maps").read_bytes())
    except (FileNotFoundError, ProcessLookupError):
        raise _Vanished from None
    return list(_parse_maps(text))


def _parse_maps(text: str) -> Iterator[_Mapped]:
    """Executable, file-backed mappings: `address perms offset dev inode pathname`."""
    # split("\n"), not splitlines(): the kernel escapes only "\n" in a path, and
    # splitlines() would also cut a path at characters such as U+0085.
    for line in text.split("\n"):
        fields = line.split(None, 5)
        if len(fields) < 6 or "x" not in fields[1] or fields[4] == "0":
            continue
        path, deleted = _strip_deleted(fields[5])
        if not _names_a_file(path):
            continue
        major, _, minor = fields[3].partition(":")
        try:
            dev, ino = os.makedev(int(major, 16), int(minor, 16)), int(fields[4])
        except ValueError:
            continue
        yield _Mapped(path, deleted, dev, ino)


def _read_exe(piddir: Path) -> list[_Mapped]:
    exe = piddir / "exe"
    try:
        target = os.readlink(exe)
        running = os.stat(exe)
    except (FileNotFoundError, ProcessLookupError):
        # Kernel threads have no executable; a process that exited has no directory.
        if not piddir.exists():
            raise _Vanished from None
        return []
    except PermissionError:
        # The maps, read with the same permission check, already cover the executable.
        return []
    path, deleted = _strip_deleted(target)
    if not _names_a_file(path):
        return []  # e.g. a program run from a memfd, as some sandboxes do
    return [_Mapped(path, deleted, running.st_dev, running.st_ino)]


def _names_a_file(path: str) -> bool:
    return path.startswith("/") and not path.startswith(_PSEUDO)


def _strip_deleted(path: str) -> tuple[str, bool]:
    if path.endswith(DELETED):
        return path.removesuffix(DELETED), True
    return path, False


def _judge(mapped: _Mapped, root: str) -> str | None:
    """"deleted", "replaced", or None when the path still names the mapped file."""
    try:
        now = os.stat(root + mapped.path)
    except (FileNotFoundError, NotADirectoryError):
        return "deleted"
    except OSError:
        # Cannot look (a directory we may not enter): only the kernel's mark is left.
        return "deleted" if mapped.deleted else None
    return None if _same_file(mapped.dev, mapped.ino, now.st_dev, now.st_ino) else "replaced"


def _same_file(mapped_dev: int, mapped_ino: int, dev: int, ino: int) -> bool:
    """Whether a mapped (device, inode) is the file stat() found at its path.

    Devices are compared only when neither is an anonymous device (major 0): btrfs
    subvolumes (stat gives the subvolume's device, maps the filesystem's) and overlayfs
    before Linux 6.8 (maps gives the layer's device) name one file with two devices. The
    inode alone still tells a replaced file apart, because a file that is mapped keeps
    its inode number: a new file cannot be given it.
    """
    if mapped_ino != ino:
        return False
    if os.major(mapped_dev) and os.major(dev):
        return mapped_dev == dev
    return True


def _command(piddir: Path) -> str:
    try:
        argv = (piddir / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        command = " ".join(arg.decode(errors="replace") for arg in argv if arg)
        if command:
            return command
        return (piddir / "comm").read_bytes().decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        raise _Vanished from None


def packages(paths: Iterable[str]) -> dict[str, str]:
    """The Debian package owning each path, when dpkg knows it (`dpkg-query -S`)."""
    wanted = sorted(set(paths))
    if not wanted or shutil.which("dpkg-query") is None:
        return {}
    try:
        done = subprocess.run(["dpkg-query", "-S", "--", *wanted], capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in done.stdout.splitlines():          # "libssl3:amd64: /usr/lib/…/libssl.so.3"
        owner, sep, path = line.rpartition(": ")
        if sep and path in wanted and not owner.startswith("diversion by"):
            found[path] = owner
    return found


def main(argv: list[str]) -> int:
    """`python3 -m zdt.stale [PID…]`: the scan of these processes and their descendants
    (of every process without PIDs) as one JSON object on stdout; each stale process
    names the PID it descends from (`root`), each file its package."""
    roots = [int(a) for a in argv]
    stats = procfs.live()
    owner: dict[int, int] = {}
    for root in (r for r in roots if r in stats):
        owner.setdefault(root, root)
        for pid in procfs.descendants({root}, stats):
            owner.setdefault(pid, root)
    try:
        found = as_dict(scan(pids=owner if roots else None))
    except ScanError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    owners = packages(f["path"] for p in found["processes"] for f in p["files"])
    for p in found["processes"]:
        p["root"] = owner.get(p["pid"])
        for f in p["files"]:
            f["package"] = owners.get(f["path"])
    found["missing"] = [r for r in roots if r not in stats]
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What /proc says of this machine's processes: state, parent, start time, command line,
children. A pid with no entry (or a zombie, for `live`) is simply not there."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NamedTuple


class Stat(NamedTuple):
    state: str    # "R", "S", "Z"...
    ppid: int
    start: int    # start time, in clock ticks since boot (field 22 of /proc/PID/stat)


def stat(pid: int) -> Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = text[text.rindex(")") + 2:].split()
    return Stat(fields[0], int(fields[1]), int(fields[19]))


def cmdline(pid: int) -> str:
    """The command line, its arguments joined by spaces ("" if the process is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def live() -> dict[int, Stat]:
    """Every process that has not exited (zombies left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat(int(entry))
            if st is not None and st.state != "Z":
                found[int(entry)] = st
    return found


def children(parent: int) -> list[int]:
    return sorted(pid for pid, st in live().items() if st.ppid == parent)


def descendants(parents: set[int], stats: dict[int, Stat] | None = None) -> list[int]:
    """Children, their children, and so on, of any of `parents` (not the parents), from
    `stats` (one reading of /proc shared by several calls) or a fresh one."""
    stats = live() if stats is None else stats
    found: list[int] = []
    seen = set(parents)
    while parents:
        parents = {pid for pid, st in stats.items() if st.ppid in parents} - seen
        seen |= parents
        found += sorted(parents)
    return found


def _proc_address(host: str, port: int, family: int) -> str:
    """An address as /proc/net/tcp{,6} prints it: each 32-bit word in host (little-endian)
    order, then the port, in upper-case hex."""
    packed = socket.inet_pton(family, host)
    words = "".join(f"{int.from_bytes(packed[i:i + 4], 'little'):08X}"
                    for i in range(0, len(packed), 4))
    return f"{words}:{port:04X}"


def _spellings(host: str, port: int) -> list[tuple[str, str]]:
    """(table, address) pairs an endpoint may appear as (IPv4 also as v4-mapped IPv6)."""
    if ":" in host:
        return [("tcp6", _proc_address(host, port, socket.AF_INET6))]
    return [("tcp", _proc_address(host, port, socket.AF_INET)),
            ("tcp6", _proc_address(f"::ffff:{host}", port, socket.AF_INET6))]


def tcp_inode(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The inode of this machine's TCP socket at `local` connected to `remote`; None
    while there is none, or while it waits in a listen queue (inode 0: no process has it)."""
    ends: dict[str, list[tuple[str, str]]] = {"tcp": [], "tcp6": []}
    for (table, here), (_, there) in zip(_spellings(*local), _spellings(*remote), strict=True):
        ends[table].append((here, there))
    for table, pairs in ends.items():
        if not pairs:
            continue
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (fields[1], fields[2]) in pairs and fields[9] != "0":
                return int(fields[9])
    return None


def fds(pid: int) -> list[str]:
    """The /proc paths of process `pid`'s open file descriptors ([] if they cannot be
    read); each may close before it is looked at, so callers suppress OSError."""
    try:
        return [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def holds_socket(pid: int, inode: int) -> bool:
    """Whether process `pid` has the socket `inode` open."""
    want = f"socket:[{inode}]"
    return any(_readlink(fd) == want for fd in fds(pid))


def holds_file(pid: int, st: os.stat_result) -> bool:
    """Whether process `pid` has the file `st` describes open (same device and inode)."""
    return any(_same_file(fd, st) for fd in fds(pid))


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def rss(pid: int | None) -> int:
    """A process's resident memory in bytes (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def mem_available() -> int:
    """The memory the kernel says new processes can have, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0

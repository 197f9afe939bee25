"""The processes a sandbox started, found through its pidfiles and checked before a signal.

A pid alone is not an identity: once a daemon has exited its pid can be given to any
other process. A process is therefore named by (pid, start time); the start time comes
from /proc/PID/stat, and a pidfile's pid is trusted only if that process's command line
names the sandbox's own config file.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int    # start time, in clock ticks since boot (field 22 of /proc/PID/stat)
    what: str     # "supervisord", "haproxy" or "server"

    def alive(self) -> bool:
        stat = _stat(self.pid)
        # A zombie has exited; it only waits to be reaped by its parent (often init).
        return stat is not None and stat[2] == self.start and stat[0] != "Z"

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def summary(self) -> dict[str, object]:
        return {"pid": self.pid, "what": self.what}


def started_processes(d: Path) -> list[Proc]:
    """The live daemons of the sandbox in `d`, and the servers run by its supervisords."""
    found: list[Proc] = []
    for pidfile in sorted(d.glob("nodes/*/run/supervisord.pid")):
        conf = pidfile.parent.parent / "etc" / "supervisord.conf"
        found += _verified(pidfile, conf, "supervisord")
    found += _verified(d / "haproxy" / "haproxy.pid", d / "haproxy" / "haproxy.cfg", "haproxy")
    nginx = _verified(d / "nginx" / "nginx.pid", d / "nginx" / "nginx.conf", "nginx")
    parents = {p.pid for p in found if p.what == "supervisord"}
    workers = [replace(p, what="nginx worker") for p in _children({p.pid for p in nginx})]
    return found + nginx + _children(parents) + workers


def live_processes(pids: list[int], what: str) -> list[Proc]:
    """The live processes among pids (found by another means than a pidfile)."""
    found = []
    for pid in pids:
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            found.append(Proc(pid, stat[2], what))
    return found


def wait_gone(procs: list[Proc], timeout: float,
              each_poll: Callable[[], None] | None = None) -> list[Proc]:
    """Wait up to `timeout` s for the processes to exit; return those still alive.

    `each_poll` runs before every check while some are left (to nudge them along).
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        left = [p for p in procs if p.alive()]
        remaining = deadline - time.monotonic()
        if not left or remaining <= 0:
            return left
        if each_poll is not None:
            each_poll()
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.1)  # 10 ms first: an idle daemon exits in milliseconds


def _verified(pidfile: Path, config: Path, what: str) -> list[Proc]:
    try:
        pids = [int(word) for word in pidfile.read_text().split()]
    except (OSError, ValueError):
        return []
    procs = []
    for pid in pids:
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and str(config) in _cmdline(pid):
            procs.append(Proc(pid, stat[2], what))
    return procs


def _children(parents: set[int]) -> list[Proc]:
    """Every live descendant (servers, an isolated node's sshd and its sessions)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] != "Z":
                stats[int(entry)] = stat
    found: list[Proc] = []
    seen = set(parents)
    while parents:
        parents = {pid for pid, stat in stats.items() if stat[1] in parents} - seen
        seen |= parents
        found += [Proc(pid, stats[pid][2], "server") for pid in sorted(parents)]
    return found


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""

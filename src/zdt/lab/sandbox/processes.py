"""The processes a sandbox started, found through its pidfiles and checked before a signal.

A pid alone is not an identity: once a daemon has exited its pid can be given to any
other process. A process is therefore named by (pid, start time); the start time comes
from /proc/PID/stat, and a pidfile's pid is trusted only if that process's command line
names the sandbox's own config file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zdt import procfs
from zdt.errors import ZdtError
from zdt.waiting import polls

SPAWN_TIMEOUT = 30.0   # s; for a daemon's foreground part (parse config, bind, fork)


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int    # start time, in clock ticks since boot (field 22 of /proc/PID/stat)
    what: str     # "supervisord", "haproxy" or "server"

    def alive(self) -> bool:
        st = procfs.stat(self.pid)
        # A zombie has exited; it only waits to be reaped by its parent (often init).
        return st is not None and st.start == self.start and st.state != "Z"

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
    for pidfile in sorted(d.glob("haproxy*/haproxy.pid")):
        found += _verified(pidfile, pidfile.with_name("haproxy.cfg"), "haproxy")
    nginx = _verified(d / "nginx" / "nginx.pid", d / "nginx" / "nginx.conf", "nginx")
    parents = {p.pid for p in found if p.what == "supervisord"}
    workers = _descendants({p.pid for p in nginx}, "nginx worker")
    return found + nginx + _descendants(parents, "server") + workers


def live_processes(pids: list[int], what: str) -> list[Proc]:
    """The live processes among pids (found by another means than a pidfile)."""
    stats = {pid: procfs.stat(pid) for pid in pids}
    return [Proc(pid, st.start, what) for pid, st in stats.items()
            if st is not None and st.state != "Z"]


def wait_gone(procs: list[Proc], timeout: float,
              each_poll: Callable[[], None] | None = None) -> list[Proc]:
    """Wait up to `timeout` s for the processes to exit; return those still alive.

    `each_poll` runs before every check while some are left (to nudge them along).
    """
    for _ in polls(timeout):   # 10 ms first: an idle daemon exits in milliseconds
        left = [p for p in procs if p.alive()]
        if not left:
            return []
        if each_poll is not None:
            each_poll()
    return [p for p in procs if p.alive()]


def _verified(pidfile: Path, config: Path, what: str) -> list[Proc]:
    try:
        pids = [int(word) for word in pidfile.read_text().split()]
    except (OSError, ValueError):
        return []
    return [p for p in live_processes(pids, what) if str(config) in procfs.cmdline(p.pid)]


def _descendants(parents: set[int], what: str) -> list[Proc]:
    """Every live descendant (servers, an isolated node's sshd and its sessions)."""
    return live_processes(procfs.descendants(parents), what)


def spawn_daemon(argv: list[str], out: Path, what: str) -> None:
    """Run a self-daemonizing command; its foreground part must exit 0."""
    # Output goes to a file, not a pipe: a daemon that kept the pipe open would make
    # us wait for an EOF that never comes.
    with out.open("wb") as sink:
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink,
                                  stderr=subprocess.STDOUT, timeout=SPAWN_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ZdtError(f"cannot start {what} ({argv[0]}): {exc}") from exc
    if done.returncode != 0:
        raise ZdtError(f"{what} failed to start (exit {done.returncode}): "
                       f"{tail(out)}\n(command: {' '.join(argv)})")


def wait_pidfile(pidfile: Path) -> list[int]:
    # A daemon's foreground part may exit before the daemon has written its pidfile.
    for _ in polls(SPAWN_TIMEOUT):
        try:
            pids = [int(x) for x in pidfile.read_text().split()]
        except (FileNotFoundError, ValueError):
            continue
        if pids:
            return pids
    raise ZdtError(f"{pidfile}: not written within {SPAWN_TIMEOUT:.0f} s; see the logs beside it")


def tail(path: Path, size: int = 500) -> str:
    try:
        data = path.read_bytes()[-size:]
    except OSError:
        return f"(no log at {path})"
    return data.decode(errors="replace").strip() or f"(nothing in {path})"

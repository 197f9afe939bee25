"""`zdt live run --adopt`: take back a workload whose supervisor died.

A supervisor killed (SIGKILL, a crash) leaves its workload serving: the `zdt.live` helper
sees its channel close and accepts again by itself. A new supervisor adopts it: the pid
the last one recorded (state.json), checked to still run the workload's command; its
listening sockets, duplicated out of it with pidfd_getfd(2) (Linux 5.6, the right to
ptrace it: the same user, or root) and checked to be the configured addresses. The
adopted process has no channel to this supervisor — its next update is an overlap: both
accept for a moment, then it drains and exits; an in-memory state it kept is not carried
over (that update says so).
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
from pathlib import Path

from zdt import procfs
from zdt.errors import PreconditionError
from zdt.live import process
from zdt.live.process import Workload

SYS_PIDFD_GETFD = 438       # the same number on every Linux architecture


def recorded_pid(directory: Path) -> int:
    """The workload pid the last supervisor recorded, if it still runs."""
    try:
        pid = json.loads((directory / "state.json").read_text()).get("pid")
    except (OSError, ValueError):
        pid = None
    if not isinstance(pid, int) or procfs.stat(pid) is None:
        raise PreconditionError(f"{directory}: no workload left to adopt (its recorded pid "
                                f"{pid} does not run); start it without --adopt")
    return pid


def sockets_of(pid: int, listen: tuple[str, ...]) -> list[socket.socket]:
    """The workload's listening sockets (its fds 3.., in --listen order), duplicated here."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found: list[socket.socket] = []
    try:
        for i, address in enumerate(listen):
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, process.FIRST_FD + i, 0)
            if fd < 0:
                err = ctypes.get_errno()
                raise PreconditionError(f"pid {pid}: cannot take its socket {address} "
                                        f"(pidfd_getfd: {os.strerror(err)}); adopt it as "
                                        "its user or root")
            s = socket.socket(fileno=fd)
            found.append(s)
            if not _listens_on(s, address):
                raise PreconditionError(f"pid {pid}: its fd {process.FIRST_FD + i} is not "
                                        f"the socket listening on {address}")
    except BaseException:
        for s in found:
            s.close()
        raise
    finally:
        os.close(pidfd)
    return found


def _listens_on(s: socket.socket, address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        bound = s.getsockname()
    except OSError:
        return False
    return bool(listening) and int(bound[1]) == int(port) and (
        host.strip("[]") in ("", "0.0.0.0", "::") or bound[0] == host.strip("[]"))


async def workload(pid: int, home: str, run_dir: Path) -> Workload:
    """The running process as this supervisor's current workload: ready, no channel."""
    ours, theirs = socket.socketpair()
    theirs.close()                                # no one at the other end: a closed channel
    ours.setblocking(False)
    notify_path = run_dir / f"notify-adopted-{pid}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    w = Workload(pid, "original", home, ours, notify, notify_path)
    w.notice.ready, w.notice.by = True, "adopted"
    await w.open_channel()
    return w

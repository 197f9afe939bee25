"""The domain lock: one zdt process at a time works on a domain (or on a live workload).

The lock is an flock(2) on the state directory itself, held for the life of the process
(the kernel drops it when the holder dies, even by kill -9). The directory holds the journal,
so it cannot be swapped under a running workflow without moving the journal too, and
removing a file cannot let a second holder in. Asking whether the lock is held never takes
it: the kernel's table of locks (/proc/locks) is read, so a probe (`zdt status`, `zdt stop`)
cannot make a starting workflow see a lock that nobody holds. `holder` beside it says who
holds it, for messages only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from zdt import atomic, changes, procfs
from zdt.errors import LockedError, PreconditionError, ZdtError

PROC_LOCKS = Path("/proc/locks")


def make_private_dir(path: Path) -> None:
    """Create the state dir (0700) with its parents; an existing one must be this user's
    (another could swap the journal under zdt), and is made 0700."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise PreconditionError(f"{path}: cannot create the state dir: {exc.strerror}; check "
                                "the domain's state_dir and its permissions") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise PreconditionError(f"{path}: the state dir is not a directory")
    if st.st_uid != os.geteuid():
        raise PreconditionError(
            f"{path}: the state dir belongs to uid {st.st_uid}, not to this user (uid "
            f"{os.geteuid()}); run zdt as its owner, or give the domain a state_dir of its own")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)                  # made by an older zdt, or by hand


class DomainLock:
    """flock on STATE_DIR for the life of one zdt process working on the domain."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "holder"       # who holds it: text for messages
        self.fd: int | None = None

    def acquire(self, what: str) -> None:
        make_private_dir(self.dir)
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ZdtError(f"{self.dir}: cannot open the state dir to lock it: "
                           f"{exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._locked() from None
        self.fd = fd
        with contextlib.suppress(OSError):      # the lock holds; only its label would miss
            atomic.write_text(self.path, f"{what} (pid {os.getpid()})\n", 0o600)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None
            changes.changed(self.dir)       # a watcher waits for the holder to be gone

    def holders(self) -> list[int]:
        """The pids of the live processes holding the lock now (this one included)."""
        try:
            st = os.stat(self.dir)
        except OSError:
            return []                           # no state dir: nobody holds it
        return _flock_holders(st)

    def held_by_other(self) -> bool:
        """Whether a live process other than this object holds the lock; never takes it."""
        return any(pid != os.getpid() or self.fd is None for pid in self.holders())

    def refuse_if_held(self) -> None:
        """LockedError (exit 4) naming the holder when another process holds the lock."""
        if self.held_by_other():
            raise self._locked()

    def _locked(self) -> LockedError:
        try:
            holder = self.path.read_text(errors="replace").strip()[:200] or "another zdt"
        except OSError:
            holder = "another zdt"
        return LockedError(f"the domain is locked by {holder} ({self.dir}); wait for it to "
                           "finish or stop it with `zdt stop ID`")


def _flock_holders(st: os.stat_result) -> list[int]:
    """Pids holding an flock on the file `st` describes, from the kernel's lock table.

    A line reads `1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146622 0 EOF` (major and minor in
    hex, then the inode). Filesystems whose stat() reports another device than the lock
    table (btrfs subvolumes) are matched by inode and confirmed by the holder's open files."""
    try:
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError as exc:
        raise ZdtError(f"{PROC_LOCKS}: cannot read the kernel's lock table ({exc.strerror}); "
                       "zdt needs /proc to tell a running workflow") from exc
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        words = line.split()
        if "->" in words or len(words) < 6 or words[1] != "FLOCK":
            continue                            # a waiter, or another kind of lock
        pid, where = int(words[4]), words[5]
        if where == device or (where.rsplit(":", 1)[-1] == str(st.st_ino)
                               and procfs.holds_file(pid, st)):
            pids.append(pid)
    return pids


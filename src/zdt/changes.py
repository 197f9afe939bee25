"""Wake whoever watches a state dir (a journal and its lock) when it changes, without a
polling loop.

In this process the journal calls `changed(state_dir)` after each commit and the lock on
its release; for a workflow run by another zdt process, the kernel tells (inotify on the
state dir: SQLite writes the `journal.db-wal` file on every commit, and a released lock
removes its `holder` file). A watcher waits on `Changes.wait()`, then reads once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
from pathlib import Path

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_CREATE, _IN_MOVED_TO = 0x2, 0x8, 0x100, 0x80
_IN_DELETE, _IN_CLOSE_NOWRITE = 0x200, 0x10
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000

_watchers: dict[Path, set[Changes]] = {}


def changed(state_dir: Path) -> None:
    """The journal in `state_dir` committed a change, or its lock was let go. A watcher
    whose event loop is gone (never left its with-block) is dropped, never an error here:
    the change is already committed and its writer must go on."""
    if not _watchers:                     # nobody watches in this process: nothing to do
        return
    watchers = _watchers.get(Path(state_dir).resolve(), set())
    for watcher in list(watchers):
        try:
            watcher.wake()
        except RuntimeError:              # its loop was closed
            watchers.discard(watcher)


class Changes:
    """A wake-up for one watcher of one state dir; a context manager."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None

    def __enter__(self) -> Changes:
        fd = _inotify(self.state_dir)
        if fd is not None:
            try:
                self._loop.add_reader(fd, self._drain)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd
        _watchers.setdefault(self.state_dir, set()).add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        watchers = _watchers.get(self.state_dir, set())
        watchers.discard(self)
        if not watchers:
            _watchers.pop(self.state_dir, None)
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    def wake(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    def _drain(self) -> None:
        try:
            while os.read(self._fd or -1, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._event.set()

    async def wait(self, patience: float) -> None:
        """Until the journal changes, or `patience` seconds (a safety net: a process that
        dies changes no file, and the lock it held must be looked at again)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), patience)
        self._event.clear()


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)      # this process's own C library


def _inotify(directory: Path) -> int | None:
    """An inotify descriptor watching the dir's files being written; None where the kernel
    or the C library offers none (the in-process wake-ups and the patience remain)."""
    try:
        libc = _libc()
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        # a released lock is the close of the state dir's own descriptor (CLOSE_NOWRITE on
        # the dir itself), a commit a write to journal.db-wal
        mask = (_IN_MODIFY | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE | _IN_CREATE | _IN_MOVED_TO
                | _IN_DELETE)
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return None
        return int(fd)
    except (OSError, AttributeError):
        return None

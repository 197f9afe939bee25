"""The domain lock: one holder at a time, across processes; a probe never takes it (so it
never makes a starting workflow see a lock nobody holds); removing files cannot let a second
holder in; the kernel drops it when its holder dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

from zdt.errors import LockedError, PreconditionError
from zdt.lock import DomainLock

ROUNDS = 1500


def _acquire_many(state: str, rounds: int, out: Queue[Any]) -> None:
    lock, refused = DomainLock(Path(state)), 0
    for _ in range(rounds):
        try:
            lock.acquire("stress")
        except LockedError:
            refused += 1
            continue
        lock.release()
    out.put(refused)


def _probe_many(state: str, stop: Event, out: Queue[Any]) -> None:
    lock, probes, held = DomainLock(Path(state)), 0, 0
    while not stop.is_set():
        held += lock.held_by_other()
        probes += 1
    out.put((probes, held))


def test_probes_never_take_the_lock(tmp_path: Path) -> None:
    """Before: 2,000 acquire-and-probe rounds gave ~200 false "locked" answers."""
    state = str(tmp_path / "state")
    first = DomainLock(Path(state))                # the dir exists for the probes
    first.acquire("first")
    first.release()
    ctx = multiprocessing.get_context("fork")
    stop, results = ctx.Event(), ctx.Queue()
    probers = [ctx.Process(target=_probe_many, args=(state, stop, results)) for _ in range(2)]
    for p in probers:
        p.start()
    try:
        _acquire_many(state, ROUNDS, results)
        refused = results.get(timeout=60)
    finally:
        stop.set()
        for p in probers:
            p.join(timeout=30)
    seen = [results.get(timeout=30) for _ in probers]
    assert refused == 0
    assert all(probes > 0 for probes, _ in seen)
    # some probes saw this process holding it: the probe does see a real holder
    assert sum(held for _, held in seen) > 0


def _hold(state: str, ready: Event, done: Event) -> None:
    lock = DomainLock(Path(state))
    lock.acquire("restart workflow wf-1")
    ready.set()
    done.wait(60)
    lock.release()


def test_concurrent_holders_never_overlap(tmp_path: Path) -> None:
    """Processes starting at once: whoever holds the lock is alone (an O_EXCL marker)."""
    state = tmp_path / "state"
    script = f"""
import os, sys
sys.path[:0] = {sys.path!r}
from pathlib import Path
from typing import Any
from zdt.errors import LockedError
from zdt.lock import DomainLock
lock, won = DomainLock(Path({str(state)!r})), 0
for _ in range(300):
    try:
        lock.acquire("race")
    except LockedError:
        continue
    fd = os.open({str(tmp_path / "inside")!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    os.unlink({str(tmp_path / "inside")!r})
    won += 1
    lock.release()
print(won)
"""
    racers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [r.communicate(timeout=120) for r in racers]
    assert all(r.returncode == 0 for r in racers), [e for _, e in outs]
    assert sum(int(o) for o, _ in outs) > 0


def test_a_holder_in_another_process_is_seen_and_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(state), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        probe = DomainLock(state)
        assert probe.held_by_other()
        with pytest.raises(LockedError, match=r"restart workflow wf-1 \(pid \d+\)"):
            probe.acquire("second")
        for name in os.listdir(state):              # every file of the lock removed
            (state / name).unlink()
        with pytest.raises(LockedError):
            DomainLock(state).acquire("third")
        assert probe.held_by_other()
        os.kill(holder.pid, signal.SIGKILL)         # the kernel drops it with its holder
        holder.join(30)
        assert not probe.held_by_other()
        probe.acquire("after the crash")
        probe.release()
    finally:
        if holder.exitcode is None:         # an Event cannot be set once a waiter was killed
            done.set()
        holder.join(30)


def test_own_lock_is_not_another_holder(tmp_path: Path) -> None:
    lock = DomainLock(tmp_path / "state")
    assert not lock.held_by_other()                 # no dir yet: nothing created by a probe
    assert not (tmp_path / "state").exists()
    lock.acquire("mine")
    try:
        assert not lock.held_by_other()
        assert DomainLock(tmp_path / "state").held_by_other()
    finally:
        lock.release()


def test_the_state_dir_is_private(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    lock = DomainLock(state)
    lock.acquire("x")
    lock.release()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    DomainLock(loose).acquire("y")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the dir to another user")
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "theirs"
    state.mkdir()
    os.chown(state, 65534, 65534)
    with pytest.raises(PreconditionError, match="belongs to uid 65534"):
        DomainLock(state).acquire("x")


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(PreconditionError, match=r"not a directory|cannot create"):
        DomainLock(tmp_path / "state").acquire("x")

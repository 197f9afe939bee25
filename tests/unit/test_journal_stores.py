"""The journal's two stores, the same tests for both: SQLite in the state dir (an flock) and
PostgreSQL (a lock row and an advisory lock). The lock names its holder, host and pid; a
holder killed with SIGKILL frees the domain; a commit or a release wakes a watcher; a store
reads nothing of another domain's."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import planning
import psycopg
import pytest

from zdt import domain as dm
from zdt.errors import ConfigError, LockedError, PreconditionError
from zdt.steps import StepSpec
from zdt.workflow.journal import HOST, Store
from zdt.workflow.journal.postgres import PostgresStore

Stores = Callable[[Path], Store]
STEPS = (StepSpec(0, 0, "node1", "drain", ("s1",)), StepSpec(1, 0, "node1", "stop", ("s1",)))


def _hold(store: Store, ready: multiprocessing.synchronize.Event) -> None:
    lock = store.lock()
    lock.acquire("restart workflow held-elsewhere")
    ready.set()
    time.sleep(120)          # killed long before


def test_the_lock_names_its_holder_and_is_freed_by_a_kill(tmp_path: Path,
                                                          stores: Stores) -> None:
    store = stores(tmp_path / "state")
    assert not store.lock().held()
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(store, ready))
    holder.start()
    try:
        assert ready.wait(30)
        lock = store.lock()
        assert lock.held() and lock.held_by_other()
        assert lock.held_by(HOST, holder.pid) and not lock.held_by(HOST, os.getpid())
        with pytest.raises(LockedError) as caught:
            lock.acquire("home workflow mine")
        message = str(caught.value)
        assert "restart workflow held-elsewhere" in message and str(holder.pid) in message
        with pytest.raises(LockedError):
            lock.refuse_if_held()
    finally:
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(30)
    lock = store.lock()
    deadline = time.monotonic() + 10     # the kernel / the server lets go of a dead holder
    while lock.held() and time.monotonic() < deadline:
        time.sleep(0.02)
    lock.acquire("home workflow mine")
    try:
        assert lock.held() and not lock.held_by_other()
        assert lock.held_by(None, os.getpid())
        other = store.lock()
        assert other.held_by_other()
    finally:
        lock.release()
    assert not store.lock().held()


def test_a_journal_is_created_on_first_use_and_read_back(tmp_path: Path, clock: Callable[
        [], float], stores: Stores) -> None:
    store = stores(tmp_path / "state")
    assert not store.exists()
    journal = store.open(clock)
    try:
        journal.create("wf-a", "restart", "d.toml", {"targets": ["web"]}, STEPS)
        journal.set_state("wf-a", "running")
        journal.set_step("wf-a", 0, "running", attempt=True)
        journal.set_step("wf-a", 0, "done")
        journal.event("wf-a", "facts", "drain", step=0, data={"sessions_left": {}})
        assert store.exists()
        with journal.snapshot():
            wf, steps = journal.workflow("wf-a"), journal.steps("wf-a")
        assert (wf.state, wf.pid) == ("running", os.getpid())
        assert [(s.name, s.state, s.attempts) for s in steps] == [("drain", "done", 1),
                                                                 ("stop", "pending", 0)]
        holder = journal.holder()
        assert holder is not None and holder.id == "wf-a"
        kinds = [e["kind"] for e in journal.events("wf-a")]
        assert kinds == ["created", "workflow", "step", "step", "facts"]
        last = journal.events("wf-a")[-2]["id"]
        assert [e["kind"] for e in journal.events("wf-a", after=last)] == ["facts"]
        assert journal.request_stop("wf-a") and journal.workflow("wf-a").stop_requested
        journal.clear_stop("wf-a")
        journal.set_state("wf-a", "succeeded")
        assert journal.holder() is None
    finally:
        journal.close()
    again = store.open(clock)
    try:
        assert [w.id for w in again.history()] == ["wf-a"]
    finally:
        again.close()


def test_a_store_sees_only_its_own_domain(tmp_path: Path, clock: Callable[[], float],
                                          stores: Stores) -> None:
    one, two = stores(tmp_path / "one"), stores(tmp_path / "two")
    journal = one.open(clock)
    try:
        journal.create("wf-same", "restart", "d.toml", {"targets": ["web"]}, STEPS)
    finally:
        journal.close()
    other = two.open(clock)
    try:
        assert other.history() == [] and other.holder() is None
        other.create("wf-same", "restart", "d.toml", {"targets": ["web"]}, STEPS)  # same id
        assert [w.id for w in other.history()] == ["wf-same"]
    finally:
        other.close()
    lock = one.lock()
    lock.acquire("one")
    try:
        assert not two.lock().held()
    finally:
        lock.release()


async def test_a_commit_and_a_release_wake_a_watcher(tmp_path: Path, clock: Callable[
        [], float], stores: Stores) -> None:
    store = stores(tmp_path / "state")
    journal = store.open(clock)
    try:
        journal.create("wf-w", "restart", "d.toml", {"targets": ["web"]}, STEPS)
        with store.changes() as changes:
            waiting = asyncio.ensure_future(changes.wait(3600))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            journal.event("wf-w", "note", "a commit")
            await asyncio.wait_for(waiting, 10)       # woken, long before the patience
            lock = store.lock()
            lock.acquire("x")
            waiting = asyncio.ensure_future(changes.wait(3600))
            await asyncio.sleep(0.05)
            lock.release()
            await asyncio.wait_for(waiting, 10)
    finally:
        journal.close()


def test_a_lost_database_session_is_a_lost_lock(tmp_path: Path, postgres: Any) -> None:
    """The lock's session ends under a running workflow (a server restart, a dropped
    connection): `verify`, called before every step, stops the workflow there."""
    store = PostgresStore(postgres.url, "lost-session")
    lock = store.lock()
    lock.acquire("restart workflow w")
    lock.verify()                                   # held: nothing to say
    assert lock.conn is not None
    backend = lock.conn.info.backend_pid
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    # the backend ends a moment later and says so on the lock's socket
    assert select.select([lock.conn.fileno()], [], [], 10)[0]
    with pytest.raises(LockedError, match="lost the domain's lock"):
        lock.verify()
    assert not store.lock().held()                  # another control host may take it
    lock.release()


@pytest.mark.parametrize("url", ["postgresql://zdt@127.0.0.1:1/postgres"])
def test_an_unreachable_database_is_a_precondition(tmp_path: Path, url: str) -> None:
    store = PostgresStore(url, "nowhere")
    for call in (store.exists, store.lock().held, lambda: store.open(time.time),
                 lambda: store.lock().acquire("x")):
        with pytest.raises(PreconditionError, match=r"127\.0\.0\.1:1/postgres \(domain "
                                                    r"nowhere\): cannot reach"):
            call()


@pytest.mark.parametrize(("url", "fragment"), [
    ("postgresql://zdt:secret@db/zdt", "a password in the URL"),
    ("postgresql://zdt@db/zdt?password=secret", "a password in the URL"),
    ("mysql://zdt@db/zdt", "not a postgresql://"),
    ("postgresql://zdt@db:99999/zdt", "bad port"),
    ("postgresql://zdt:secret@db:99999/zdt", "a password in the URL"),   # before the port
])
def test_a_bad_state_url_is_named(tmp_path: Path, url: str, fragment: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(planning.fleet(2) + f'[state]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        dm.load(path)
    assert "state.url" in str(caught.value) and fragment in str(caught.value)
    assert "secret" not in str(caught.value).split("state.url")[0]

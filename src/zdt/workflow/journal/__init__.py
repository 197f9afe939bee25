"""The journal: the only source of truth about workflows, and the lock that lets one zdt
process at a time work on a domain.

Two stores hold them, behind one interface: the domain's state dir on this machine (SQLite
in WAL mode, an flock on the dir, inotify wake-ups: `sqlite.py`, the embedded default), or
a PostgreSQL database that several control hosts and the console share (`[state] url`: the
tables, a lock row with an advisory lock held by the running workflow's session, LISTEN /
NOTIFY wake-ups: `postgres.py`).

Every change is committed before the caller acts on the next step, so a crash at any
instant leaves a journal that says exactly which step was under way.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from zdt.steps import StepSpec

if TYPE_CHECKING:
    from zdt.domain import Domain

Clock = Callable[[], float]

# Workflow states that leave the domain half-way: only resume or revert may follow.
HOLDING = ("pending", "running", "reverting", "stopped", "failed", "revert-failed")
FINAL = ("succeeded", "reverted")
HOST = socket.gethostname()      # this control host, as lock holders and workflows name it


@dataclass(frozen=True)
class StepRecord:
    index: int
    group: int
    node: str
    name: str
    servers: tuple[str, ...]
    state: str       # pending | running | done | failed | reverting | reverted
    attempts: int
    started: float | None
    ended: float | None
    error: str | None
    batch: int = 0   # a journal written before batches: each node visit its own batch

    def spec(self) -> StepSpec:
        return StepSpec(self.index, self.group, self.node, self.name, self.servers, self.batch)


@dataclass(frozen=True)
class WorkflowRecord:
    id: str
    kind: str
    domain: str
    request: dict[str, Any]
    state: str       # pending | running | succeeded | failed | reverting | reverted | stopped
    created: float
    started: float | None
    ended: float | None
    error: str | None
    pid: int | None
    stop_requested: bool
    host: str | None = None     # the control host of the last run (None: this one)


class Lock(Protocol):
    """One zdt process at a time works on a domain; asking never takes the lock."""

    def acquire(self, what: str) -> None:
        """Take it (LockedError, exit 4, naming the holder, when another has it)."""
        ...

    def release(self) -> None:
        ...

    def held(self) -> bool:
        """Whether any live process holds it now."""
        ...

    def held_by(self, host: str | None, pid: int | None) -> bool:
        """Whether that process (of that control host; None: this one) holds it now."""
        ...

    def held_by_other(self) -> bool:
        """Whether a live process other than this object holds it."""
        ...

    def refuse_if_held(self) -> None:
        """LockedError (exit 4) naming the holder when another process holds it."""
        ...

    def verify(self) -> None:
        """LockedError (exit 4) unless this object still holds the lock it acquired (a
        database session can be lost; an flock cannot)."""
        ...


class Changes(Protocol):
    """Wakes a watcher when the journal commits or the lock is let go; a context manager."""

    def __enter__(self) -> Changes:
        ...

    def __exit__(self, *exc: object) -> None:
        ...

    async def wait(self, patience: float) -> None:
        ...


class Journal(Protocol):
    @property
    def store(self) -> Store:
        """Where it lives (its lock and wake-ups too)."""
        ...

    def close(self) -> None: ...

    def create(self, wid: str, kind: str, domain: str, request: dict[str, Any],
               steps: tuple[StepSpec, ...]) -> None: ...

    def set_state(self, wid: str, state: str, error: str | None = None) -> None: ...

    def set_step(self, wid: str, index: int, state: str, *, error: str | None = None,
                 attempt: bool = False) -> None: ...

    def event(self, wid: str, kind: str, message: str, *, step: int | None = None,
              data: dict[str, Any] | None = None) -> None: ...

    def request_stop(self, wid: str) -> bool: ...

    def clear_stop(self, wid: str) -> None: ...

    def snapshot(self) -> AbstractContextManager[None]: ...

    def workflow(self, wid: str) -> WorkflowRecord: ...

    def steps(self, wid: str) -> list[StepRecord]: ...

    def events(self, wid: str, after: int = 0) -> list[dict[str, Any]]: ...

    def history(self) -> list[WorkflowRecord]: ...

    def holder(self) -> WorkflowRecord | None: ...


class Store(Protocol):
    """Where a domain's journal and lock live."""

    where: str       # for messages: the state dir, or the database (no password)

    def exists(self) -> bool:
        """Whether a journal was ever written here (reading creates nothing)."""
        ...

    def open(self, clock: Clock) -> Journal:
        """The journal, created on first use."""
        ...

    def lock(self) -> Lock:
        ...

    def changes(self) -> Changes:
        ...


def store_of(domain: Domain) -> Store:
    """The domain's store: `[state] url` names a PostgreSQL database, else the state dir."""
    url = domain.state.url if domain.state is not None else None
    if url:
        from zdt.workflow.journal.postgres import PostgresStore  # psycopg only when used

        return PostgresStore(url, domain.domain.name)
    from zdt.workflow.journal.sqlite import SqliteStore

    return SqliteStore(domain.state_dir)

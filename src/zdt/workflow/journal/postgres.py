"""The shared store: a PostgreSQL database (`[state] url = "postgresql://…"`) that several
control hosts and the console share, so they see one truth about a domain.

Tables `zdt_workflows`, `zdt_steps`, `zdt_events` hold what SQLite's journal holds, each
workflow tagged with its domain's name (one database may serve several domains), and
`zdt_locks` one row per locked domain: who holds it, on which host, with which pid. The
row is a label; the lock itself is a session-level advisory lock held by the running zdt
process's own connection, which PostgreSQL lets go when that session ends — a control
host killed mid-rollout leaves the domain free for another one to resume it. Every
commit and the lock's release NOTIFY the domain's channel: a watcher (`zdt status
--watch`, the console) LISTENs instead of polling.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from zdt.errors import LockedError, PreconditionError
from zdt.workflow.journal import HOST, Clock

if TYPE_CHECKING:
    from zdt.workflow.journal.pg_journal import PostgresJournal

SCHEMA = """
CREATE TABLE IF NOT EXISTS zdt_workflows (
    scope TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, domain TEXT NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION, ended DOUBLE PRECISION, error TEXT, pid INTEGER, host TEXT,
    stop_requested BOOLEAN NOT NULL DEFAULT FALSE, PRIMARY KEY (scope, id));
CREATE INDEX IF NOT EXISTS zdt_workflows_by_age ON zdt_workflows (scope, created);
CREATE TABLE IF NOT EXISTS zdt_steps (
    scope TEXT NOT NULL, workflow TEXT NOT NULL, idx INTEGER NOT NULL, grp INTEGER NOT NULL,
    batch INTEGER NOT NULL, node TEXT NOT NULL, name TEXT NOT NULL, servers TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started DOUBLE PRECISION,
    ended DOUBLE PRECISION, error TEXT, PRIMARY KEY (scope, workflow, idx),
    FOREIGN KEY (scope, workflow) REFERENCES zdt_workflows (scope, id));
CREATE TABLE IF NOT EXISTS zdt_events (
    id BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, workflow TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, step INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL,
    data TEXT, FOREIGN KEY (scope, workflow) REFERENCES zdt_workflows (scope, id));
CREATE INDEX IF NOT EXISTS zdt_events_by_workflow ON zdt_events (scope, workflow, id);
CREATE TABLE IF NOT EXISTS zdt_locks (
    scope TEXT PRIMARY KEY, holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    backend INTEGER NOT NULL, since DOUBLE PRECISION NOT NULL);
"""
_SCHEMA_KEY = 0x7A64742D736368    # the advisory lock that serialises creating the tables
CONNECT_TIMEOUT = 10
# TCP keepalives: a dead peer (a server gone, a NAT that forgot the connection) is noticed
# in ~25 s: 10 s idle, then 3 probes 5 s apart


def _safe_url(url: str) -> str:
    """The URL as messages show it: never a password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def key(scope: str, what: str = "lock") -> int:
    """An advisory lock key of the domain: 63 bits of a hash of its name ("lock": the
    domain's lock; "writes": one journal write at a time, so event ids commit in order)."""
    digest = hashlib.sha256(f"zdt:{what}:{scope}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@contextmanager
def _errors(where: str, doing: str) -> Iterator[None]:
    """A database error is a precondition not met (exit 3) naming the database."""
    try:
        yield
    except psycopg.Error as exc:
        raise PreconditionError(f"{where}: {doing}: {str(exc).strip()}; check [state] url, "
                                "the server and the role's rights") from exc


class PostgresStore:
    def __init__(self, url: str, scope: str) -> None:
        self.url = url
        self.scope = scope                 # the domain's name: its rows and its lock
        self.where = f"{_safe_url(url)} (domain {scope})"
        self.channel = f"zdt_{hashlib.sha256(scope.encode()).hexdigest()[:24]}"

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=autocommit,
                                   connect_timeout=CONNECT_TIMEOUT, application_name="zdt",
                                   keepalives=1, keepalives_idle=10, keepalives_interval=5,
                                   keepalives_count=3)
        except psycopg.Error as exc:
            raise PreconditionError(f"{self.where}: cannot reach the journal's database: "
                                    f"{str(exc).strip()}; check [state] url, the server and "
                                    "the credentials (~/.pgpass)") from exc

    def exists(self) -> bool:
        with self.connect() as conn, self.errors("cannot read the journal"):
            if not self.has_tables(conn):
                return False
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM zdt_workflows WHERE scope = %s)",
                               (self.scope,)).fetchone()
        return bool(row and row[0])

    def errors(self, doing: str) -> AbstractContextManager[None]:
        return _errors(self.where, doing)

    @staticmethod
    def has_tables(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regclass('zdt_workflows') IS NOT NULL AND "
                           "to_regclass('zdt_locks') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def open(self, clock: Clock) -> PostgresJournal:
        from zdt.workflow.journal.pg_journal import PostgresJournal

        return PostgresJournal(self, clock)

    def lock(self) -> PgLock:
        return PgLock(self)

    def changes(self) -> PgChanges:
        return PgChanges(self)

    def ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """The tables, made by the first zdt that needs them (a role that only reads a
        journal made by another never needs to create anything)."""
        if self.has_tables(conn):
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))
            conn.execute(SCHEMA)

    def notify(self, conn: psycopg.Connection[Any], what: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, what))


class PgLock:
    """The domain's advisory lock, held by this object's own session while acquired."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.conn: psycopg.Connection[Any] | None = None
        self._checked = 0.0                 # when verify last asked the server
        number = key(store.scope)
        self._where = (number >> 32, number & 0xFFFFFFFF)   # pg_locks' classid and objid

    def acquire(self, what: str) -> None:
        conn = self.store.connect()
        try:
            self._acquire(conn, what)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _acquire(self, conn: psycopg.Connection[Any], what: str) -> None:
        with self.store.errors("cannot take the domain's lock"):
            self.store.ensure_schema(conn)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key(self.store.scope),)
                               ).fetchone()
            if not (row and row[0]):
                raise self._locked()
            with conn.transaction():
                conn.execute(
                    "INSERT INTO zdt_locks (scope, holder, host, pid, backend, since) VALUES "
                    "(%s, %s, %s, %s, pg_backend_pid(), extract(epoch FROM now())) "
                    "ON CONFLICT (scope) DO UPDATE SET holder = excluded.holder, host = "
                    "excluded.host, pid = excluded.pid, backend = excluded.backend, since = "
                    "excluded.since", (self.store.scope, what, HOST, os.getpid()))

    def release(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            conn.execute("DELETE FROM zdt_locks WHERE scope = %s AND backend = "
                         "pg_backend_pid()", (self.store.scope,))
            conn.execute("SELECT pg_advisory_unlock(%s)", (key(self.store.scope),))
            self.store.notify(conn, "released")     # once it is free, not before
        except psycopg.Error:
            pass                   # the session's end below lets the lock go in any case
        finally:
            conn.close()

    def holder(self) -> tuple[str, str, int] | None:
        """(what, host, pid) of the live holder, if any: the row whose session still holds
        the advisory lock (a holder that died left a row, not a lock)."""
        with self.store.connect() as conn, self.store.errors("cannot read the lock"):
            if not self.store.has_tables(conn):
                return None
            row = conn.execute(
                    "SELECT h.holder, h.host, h.pid FROM zdt_locks h JOIN pg_locks l ON "
                    "l.pid = h.backend AND l.locktype = 'advisory' AND l.granted AND "
                    "l.classid = %s AND l.objid = %s AND l.objsubid = 1 WHERE h.scope = %s",
                (*self._where, self.store.scope)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def held(self) -> bool:
        return self.conn is not None or self.holder() is not None

    def held_by(self, host: str | None, pid: int | None) -> bool:
        found = self.holder()
        return found is not None and (found[1], found[2]) == (host or HOST, pid)

    def held_by_other(self) -> bool:
        return self.conn is None and self.holder() is not None

    def refuse_if_held(self) -> None:
        if self.held_by_other():
            raise self._locked()

    def verify(self) -> None:
        """This object's session still holds the advisory lock: a session holds it until
        it ends. Before every step: a round trip when the session's socket has something
        to say (a server that ended it, pg_terminate_backend, a dead link the keepalives
        noticed) or a second has passed since the last one; else nothing to ask."""
        conn = self.conn
        lost = conn is None or conn.closed
        if conn is not None and not lost:
            try:
                readable, _, _ = select.select([conn.fileno()], [], [], 0)
                if readable or time.monotonic() - self._checked > 1.0:
                    conn.execute("SELECT 1")
                    self._checked = time.monotonic()
            except (OSError, psycopg.Error):
                lost = True
        if lost:
            raise LockedError(f"{self.store.where}: this zdt lost the domain's lock (its "
                              "database session ended): it stopped before the next step; "
                              "finish the workflow with `zdt resume ID` or `zdt revert ID`, "
                              "from here or another control host")

    def _locked(self) -> LockedError:
        found = self.holder()
        who = (f"{found[0]} on host {found[1]} (pid {found[2]})" if found
               else "another zdt")
        return LockedError(f"the domain is locked by {who} ({self.store.where}); wait for "
                           "it to finish or stop it with `zdt stop ID`")


class PgChanges:
    """LISTEN on the domain's channel: woken by every commit and the lock's release."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> PgChanges:
        self.conn = self.store.connect()
        with self.store.errors("cannot listen for the journal's changes"):
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.store.channel)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def wait(self, patience: float) -> None:
        conn = self.conn
        if conn is None:
            await asyncio.sleep(patience)
            return

        def wait() -> None:
            try:
                for _ in conn.notifies(timeout=patience, stop_after=1):
                    pass
            except psycopg.Error:    # the connection broke: the watcher reads again (and
                pass                 # its reads say what is wrong)

        await asyncio.to_thread(wait)

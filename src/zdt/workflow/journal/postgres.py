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
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from zdt.errors import LockedError, NotFoundError, PreconditionError
from zdt.steps import StepSpec
from zdt.workflow.journal import HOLDING, HOST, Clock, StepRecord, WorkflowRecord

_SCHEMA = """
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


def _safe_url(url: str) -> str:
    """The URL as messages show it: never a password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _key(scope: str) -> int:
    """The domain's advisory lock key: 63 bits of a hash of its name."""
    return int.from_bytes(hashlib.sha256(f"zdt:{scope}".encode()).digest()[:8], "big") >> 1


class PostgresStore:
    def __init__(self, url: str, scope: str) -> None:
        self.url = url
        self.scope = scope                 # the domain's name: its rows and its lock
        self.where = f"{_safe_url(url)} (domain {scope})"
        self.channel = f"zdt_{hashlib.sha256(scope.encode()).hexdigest()[:24]}"

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=autocommit,
                                   connect_timeout=CONNECT_TIMEOUT, application_name="zdt")
        except psycopg.Error as exc:
            raise PreconditionError(f"{self.where}: cannot reach the journal's database: "
                                    f"{str(exc).strip()}; check [state] url, the server and "
                                    "the credentials (~/.pgpass)") from exc

    def exists(self) -> bool:
        with self.connect() as conn:
            try:
                row = conn.execute("SELECT EXISTS (SELECT 1 FROM zdt_workflows WHERE scope = "
                                   "%s)", (self.scope,)).fetchone()
            except psycopg.errors.UndefinedTable:
                return False
        return bool(row and row[0])

    def open(self, clock: Clock) -> PostgresJournal:
        return PostgresJournal(self, clock)

    def lock(self) -> PgLock:
        return PgLock(self)

    def changes(self) -> PgChanges:
        return PgChanges(self)

    def ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))
            conn.execute(_SCHEMA)

    def notify(self, conn: psycopg.Connection[Any], what: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, what))


class PgLock:
    """The domain's advisory lock, held by this object's own session while acquired."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.conn: psycopg.Connection[Any] | None = None
        key = _key(store.scope)
        self._where = (key >> 32, key & 0xFFFFFFFF)   # pg_locks' classid and objid

    def acquire(self, what: str) -> None:
        conn = self.store.connect()
        try:
            self.store.ensure_schema(conn)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_key(self.store.scope),)
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
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def release(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            with conn.transaction():
                conn.execute("DELETE FROM zdt_locks WHERE scope = %s AND backend = "
                             "pg_backend_pid()", (self.store.scope,))
                self.store.notify(conn, "released")
            conn.execute("SELECT pg_advisory_unlock(%s)", (_key(self.store.scope),))
        except psycopg.Error:
            pass                   # the session's end below lets the lock go in any case
        finally:
            conn.close()

    def holder(self) -> tuple[str, str, int] | None:
        """(what, host, pid) of the live holder, if any: the row whose session still holds
        the advisory lock (a holder that died left a row, not a lock)."""
        with self.store.connect() as conn:
            try:
                row = conn.execute(
                    "SELECT h.holder, h.host, h.pid FROM zdt_locks h JOIN pg_locks l ON "
                    "l.pid = h.backend AND l.locktype = 'advisory' AND l.granted AND "
                    "l.classid = %s AND l.objid = %s AND l.objsubid = 1 WHERE h.scope = %s",
                    (*self._where, self.store.scope)).fetchone()
            except psycopg.errors.UndefinedTable:
                return None
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
            for _ in conn.notifies(timeout=patience, stop_after=1):
                pass

        await asyncio.to_thread(wait)


class PostgresJournal:
    def __init__(self, store: PostgresStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.conn = store.connect()
        try:
            store.ensure_schema(self.conn)
        except psycopg.Error as exc:
            self.conn.close()
            raise PreconditionError(f"{store.where}: cannot set up the journal's tables: "
                                    f"{str(exc).strip()}; nothing was changed") from exc

    def close(self) -> None:
        self.conn.close()

    # -- writing ---------------------------------------------------------------------

    def create(self, wid: str, kind: str, domain: str, request: dict[str, Any],
               steps: tuple[StepSpec, ...]) -> None:
        with self._tx(wid) as cur:
            cur.execute(
                "INSERT INTO zdt_workflows (id, scope, kind, domain, request, state, created, "
                "pid, host) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s)",
                (wid, self.store.scope, kind, domain, json.dumps(request), self.clock(),
                 os.getpid(), HOST))
            cur.executemany(
                "INSERT INTO zdt_steps (scope, workflow, idx, grp, batch, node, name, "
                "servers, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending')",
                [(self.store.scope, wid, s.index, s.group, s.batch, s.node, s.name,
                  json.dumps(list(s.servers))) for s in steps])
            self._event(cur, wid, None, "created", f"{kind} workflow created", request)

    def set_state(self, wid: str, state: str, error: str | None = None) -> None:
        now = self.clock()
        busy = state in ("running", "reverting")
        with self._tx(wid) as cur:
            cur.execute(
                "UPDATE zdt_workflows SET state = %s, error = CASE WHEN %s THEN %s ELSE "
                "COALESCE(%s, error) END, pid = %s, host = %s, started = COALESCE(started, "
                "%s), ended = CASE WHEN %s THEN NULL ELSE %s END WHERE scope = %s AND id = %s",
                (state, state == "running", error, error, os.getpid(), HOST, now, busy, now,
                 self.store.scope, wid))
            self._event(cur, wid, None, "workflow", state, {"error": error} if error else None)

    def set_step(self, wid: str, index: int, state: str, *, error: str | None = None,
                 attempt: bool = False) -> None:
        now = self.clock()
        starting = state in ("running", "reverting")
        with self._tx(wid) as cur:
            cur.execute(
                "UPDATE zdt_steps SET state = %s, error = %s, attempts = attempts + %s, "
                "started = CASE WHEN %s THEN %s ELSE started END, "
                "ended = CASE WHEN %s THEN NULL ELSE %s END WHERE scope = %s AND workflow = %s "
                "AND idx = %s",
                (state, error, int(attempt), starting, now, starting, now, self.store.scope,
                 wid, index))
            self._event(cur, wid, index, "step", state, {"error": error} if error else None)

    def event(self, wid: str, kind: str, message: str, *, step: int | None = None,
              data: dict[str, Any] | None = None) -> None:
        with self._tx(wid) as cur:
            self._event(cur, wid, step, kind, message, data)

    def request_stop(self, wid: str) -> bool:
        with self._tx(wid) as cur:
            cur.execute("UPDATE zdt_workflows SET stop_requested = TRUE WHERE scope = %s AND "
                        "id = %s AND state IN ('pending', 'running')", (self.store.scope, wid))
            stopped = cur.rowcount > 0
            if stopped:
                self._event(cur, wid, None, "stop-requested", "an operator asked to stop",
                            None)
        return stopped

    def clear_stop(self, wid: str) -> None:
        with self._tx(wid) as cur:
            cur.execute("UPDATE zdt_workflows SET stop_requested = FALSE WHERE scope = %s AND "
                        "id = %s", (self.store.scope, wid))

    # -- reading ---------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the journal."""
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield

    def workflow(self, wid: str) -> WorkflowRecord:
        rows = self._read("SELECT * FROM zdt_workflows WHERE scope = %s AND id = %s",
                          (self.store.scope, wid))
        if not rows:
            raise NotFoundError(f"no workflow {wid!r} in {self.store.where}; see "
                                "`zdt history`")
        return _workflow(rows[0])

    def steps(self, wid: str) -> list[StepRecord]:
        rows = self._read("SELECT * FROM zdt_steps WHERE scope = %s AND workflow = %s "
                          "ORDER BY idx", (self.store.scope, wid))
        return [StepRecord(r["idx"], r["grp"], r["node"], r["name"],
                           tuple(json.loads(r["servers"])), r["state"], r["attempts"],
                           r["started"], r["ended"], r["error"], r["batch"]) for r in rows]

    def events(self, wid: str, after: int = 0) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM zdt_events WHERE scope = %s AND workflow = %s AND "
                          "id > %s ORDER BY id", (self.store.scope, wid, after))
        return [{"id": r["id"], "ts": r["ts"], "step": r["step"], "kind": r["kind"],
                 "message": r["message"], "data": json.loads(r["data"]) if r["data"] else None}
                for r in rows]

    def history(self) -> list[WorkflowRecord]:
        rows = self._read("SELECT * FROM zdt_workflows WHERE scope = %s ORDER BY created "
                          "DESC, id DESC", (self.store.scope,))
        return [_workflow(r) for r in rows]

    def holder(self) -> WorkflowRecord | None:
        rows = self._read("SELECT * FROM zdt_workflows WHERE scope = %s AND state = ANY(%s) "
                          "ORDER BY created DESC LIMIT 1", (self.store.scope, list(HOLDING)))
        return _workflow(rows[0]) if rows else None

    # -- internals -------------------------------------------------------------------

    def _read(self, query: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
                cur.execute(query, args)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise PreconditionError(f"{self.store.where}: cannot read the journal: "
                                    f"{str(exc).strip()}; nothing was changed") from exc

    @contextmanager
    def _tx(self, wid: str) -> Iterator[psycopg.Cursor[Any]]:
        """One committed transaction that tells the domain's watchers."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield cur
                self.store.notify(self.conn, wid)
        except psycopg.Error as exc:
            raise PreconditionError(f"{self.store.where}: cannot write the journal: "
                                    f"{str(exc).strip()}") from exc

    def _event(self, cur: psycopg.Cursor[Any], wid: str, step: int | None, kind: str,
               message: str, data: dict[str, Any] | None) -> None:
        cur.execute(
            "INSERT INTO zdt_events (scope, workflow, ts, step, kind, message, data) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s)",
            (self.store.scope, wid, self.clock(), step, kind, message,
             json.dumps(data) if data else None))


def _workflow(r: dict[str, Any]) -> WorkflowRecord:
    return WorkflowRecord(r["id"], r["kind"], r["domain"], json.loads(r["request"]),
                          r["state"], r["created"], r["started"], r["ended"], r["error"],
                          r["pid"], bool(r["stop_requested"]), r["host"])

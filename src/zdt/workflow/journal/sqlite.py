"""The embedded store: SQLite in WAL mode under the domain's state dir, the flock on the
dir (`zdt.lock`), inotify wake-ups (`zdt.changes`).

Every change is committed (synchronous=FULL) before the caller acts on the next step, so a
crash at any instant leaves a journal that says exactly which step was under way.
The journal records the workflows that stopped mid-way and still hold the domain; the lock
of a running one is the flock.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zdt import changes, sqlitedb
from zdt.errors import LockedError, NotFoundError, PreconditionError, ZdtError
from zdt.lock import DomainLock, make_private_dir
from zdt.steps import StepSpec
from zdt.workflow.journal import HOLDING, HOST, Clock, StepRecord, WorkflowRecord

FILE = "journal.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, domain TEXT NOT NULL, request TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, started REAL, ended REAL, error TEXT,
    pid INTEGER, stop_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS steps (
    workflow TEXT NOT NULL REFERENCES workflows(id), idx INTEGER NOT NULL,
    grp INTEGER NOT NULL, node TEXT NOT NULL, name TEXT NOT NULL, servers TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started REAL, ended REAL,
    error TEXT, batch INTEGER, PRIMARY KEY (workflow, idx));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, workflow TEXT NOT NULL, ts REAL NOT NULL,
    step INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT);
CREATE INDEX IF NOT EXISTS events_by_workflow ON events(workflow, id);
"""


def _setup(db: sqlite3.Connection) -> None:
    sqlitedb.setup(db, _SCHEMA)
    steps = {row[1] for row in db.execute("PRAGMA table_info(steps)")}
    if "batch" not in steps:        # a journal of a zdt before batches
        try:
            db.execute("ALTER TABLE steps ADD COLUMN batch INTEGER")
        except sqlite3.OperationalError as exc:   # another process added it meanwhile
            if "duplicate column" not in str(exc):
                raise


class SqliteStore:
    """The domain's state dir on this machine."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.where = str(self.state_dir)

    def exists(self) -> bool:
        return (self.state_dir / FILE).exists()

    def open(self, clock: Clock) -> SqliteJournal:
        return SqliteJournal(self.state_dir, clock)

    def lock(self) -> FileLock:
        return FileLock(self.state_dir)

    def changes(self) -> changes.Changes:
        return changes.Changes(self.state_dir)


class FileLock(DomainLock):
    """The flock on the state dir; its holders are processes of this machine."""

    def held(self) -> bool:
        return bool(self.holders())

    def held_by(self, host: str | None, pid: int | None) -> bool:
        return host in (None, HOST) and pid in self.holders()

    def verify(self) -> None:
        """An flock lasts as long as its descriptor: held until released."""
        if self.fd is None:
            raise LockedError(f"{self.dir}: this process does not hold the domain's lock")


class SqliteJournal:
    def __init__(self, state_dir: Path, clock: Clock) -> None:
        self.state_dir = Path(state_dir)
        self.store = SqliteStore(self.state_dir)
        self.clock = clock
        path = self.state_dir / FILE
        if not path.exists():
            make_private_dir(self.state_dir)
            sqlitedb.create_private(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise PreconditionError(f"{path}: cannot open the journal: {exc}; check the "
                                    "domain's state_dir and its permissions") from exc
        try:
            _check_schema(self.db)      # before any change to a file that is not ours
            _setup(self.db)
        except (sqlite3.Error, ZdtError) as exc:
            self.db.close()
            raise PreconditionError(
                f"{path}: not a zdt journal zdt can use ({exc}); nothing was changed. If the "
                "file was damaged, move it aside (its workflows are then forgotten)") from exc
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # -- writing ---------------------------------------------------------------------

    def create(self, wid: str, kind: str, domain: str, request: dict[str, Any],
               steps: tuple[StepSpec, ...]) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO workflows (id, kind, domain, request, state, created, pid) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (wid, kind, domain, json.dumps(request), self.clock(), os.getpid()))
            self.db.executemany(
                "INSERT INTO steps (workflow, idx, grp, node, name, servers, state, batch) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(wid, s.index, s.group, s.node, s.name, json.dumps(list(s.servers)), s.batch)
                 for s in steps])
            self._event(wid, None, "created", f"{kind} workflow created", request)

    def set_state(self, wid: str, state: str, error: str | None = None) -> None:
        now = self.clock()
        with self._tx():
            self.db.execute(
                "UPDATE workflows SET state = ?, "
                "error = CASE WHEN ? = 'running' THEN ? ELSE COALESCE(?, error) END, pid = ?, "
                "started = COALESCE(started, ?), "
                "ended = CASE WHEN ? IN ('running', 'reverting') THEN NULL ELSE ? END "
                "WHERE id = ?", (state, state, error, error, os.getpid(), now, state, now, wid))
            self._event(wid, None, "workflow", state, {"error": error} if error else None)

    def set_step(self, wid: str, index: int, state: str, *, error: str | None = None,
                 attempt: bool = False) -> None:
        now = self.clock()
        starting = state in ("running", "reverting")
        with self._tx():
            self.db.execute(
                "UPDATE steps SET state = ?, error = ?, attempts = attempts + ?, "
                "started = CASE WHEN ? THEN ? ELSE started END, "
                "ended = CASE WHEN ? THEN NULL ELSE ? END WHERE workflow = ? AND idx = ?",
                (state, error, int(attempt), starting, now, starting, now, wid, index))
            self._event(wid, index, "step", state, {"error": error} if error else None)

    def event(self, wid: str, kind: str, message: str, *, step: int | None = None,
              data: dict[str, Any] | None = None) -> None:
        with self._tx():
            self._event(wid, step, kind, message, data)

    def request_stop(self, wid: str) -> bool:
        """Flag a pending or running workflow to stop; False if it is in no such state."""
        with self._tx():
            cur = self.db.execute("UPDATE workflows SET stop_requested = 1 WHERE id = ? AND "
                                  "state IN ('pending', 'running')", (wid,))
            if cur.rowcount:
                self._event(wid, None, "stop-requested", "an operator asked to stop", None)
        return bool(cur.rowcount)

    def clear_stop(self, wid: str) -> None:
        with self._tx():
            self.db.execute("UPDATE workflows SET stop_requested = 0 WHERE id = ?", (wid,))

    # -- reading ---------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the journal (a WAL read transaction)."""
        self._read("BEGIN")
        try:
            yield
        finally:
            self._read("COMMIT")

    def workflow(self, wid: str) -> WorkflowRecord:
        rows = self._read("SELECT * FROM workflows WHERE id = ?", (wid,))
        if not rows:
            raise NotFoundError(f"no workflow {wid!r} in {self.state_dir}; see `zdt history`")
        return _workflow(rows[0])

    def steps(self, wid: str) -> list[StepRecord]:
        rows = self._read("SELECT * FROM steps WHERE workflow = ? ORDER BY idx", (wid,))
        return [StepRecord(r["idx"], r["grp"], r["node"], r["name"],
                           tuple(json.loads(r["servers"])), r["state"], r["attempts"],
                           r["started"], r["ended"], r["error"],
                           r["grp"] if r["batch"] is None else r["batch"]) for r in rows]

    def events(self, wid: str, after: int = 0) -> list[dict[str, Any]]:
        """The workflow's events in order (those after the event numbered `after`)."""
        rows = self._read("SELECT * FROM events WHERE workflow = ? AND id > ? ORDER BY id",
                          (wid, after))
        return [{"id": r["id"], "ts": r["ts"], "step": r["step"], "kind": r["kind"],
                 "message": r["message"], "data": json.loads(r["data"]) if r["data"] else None}
                for r in rows]

    def history(self) -> list[WorkflowRecord]:
        rows = self._read("SELECT * FROM workflows ORDER BY created DESC, rowid DESC")
        return [_workflow(r) for r in rows]

    def holder(self) -> WorkflowRecord | None:
        """The newest workflow that left the domain half-way, if any."""
        marks = ", ".join("?" * len(HOLDING))
        rows = self._read(
            f"SELECT * FROM workflows WHERE state IN ({marks}) ORDER BY created DESC LIMIT 1",
            HOLDING)
        return _workflow(rows[0]) if rows else None

    # -- internals -------------------------------------------------------------------

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """A query's rows; a database SQLite cannot read (locked past the timeout, damaged)
        is an error naming the file, not a traceback."""
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise PreconditionError(f"{self.state_dir / FILE}: cannot read the "
                                    f"journal: {exc}; nothing was changed") from exc

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with sqlitedb.transaction(self.db, self.state_dir / FILE):
            yield
        changes.changed(self.state_dir)

    def _event(self, wid: str, step: int | None, kind: str, message: str,
               data: dict[str, Any] | None) -> None:
        self.db.execute(
            "INSERT INTO events (workflow, ts, step, kind, message, data) VALUES (?,?,?,?,?,?)",
            (wid, self.clock(), step, kind, message, json.dumps(data) if data else None))


def _check_schema(db: sqlite3.Connection) -> None:
    """A database that is not a zdt journal is refused before anything is written to it;
    an empty one (new) is fine."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table' AND name NOT LIKE 'sqlite_%'")}
    if not tables:
        return
    for table, wanted in _COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not wanted <= have:
            raise ZdtError(f"table {table} lacks column(s) {', '.join(sorted(wanted - have))}")


_COLUMNS = {
    "workflows": {"id", "kind", "domain", "request", "state", "created", "started", "ended",
                  "error", "pid", "stop_requested"},
    "steps": {"workflow", "idx", "grp", "node", "name", "servers", "state", "attempts",
              "started", "ended", "error"},
    "events": {"id", "workflow", "ts", "step", "kind", "message", "data"},
}


def _workflow(r: sqlite3.Row) -> WorkflowRecord:
    return WorkflowRecord(r["id"], r["kind"], r["domain"], json.loads(r["request"]), r["state"],
                          r["created"], r["started"], r["ended"], r["error"], r["pid"],
                          bool(r["stop_requested"]))

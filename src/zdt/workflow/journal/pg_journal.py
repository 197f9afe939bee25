"""The shared store's journal: the rows of one domain in PostgreSQL (`postgres.py` holds
the store, its lock and its wake-ups). Every write is one transaction that also NOTIFYs
the domain's watchers; writes of one domain are serialised, so events commit in id order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from zdt.errors import NotFoundError, PreconditionError
from zdt.steps import StepSpec
from zdt.workflow.journal import HOLDING, HOST, Clock, StepRecord, WorkflowRecord
from zdt.workflow.journal.postgres import PostgresStore, key


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
        """One committed transaction that tells the domain's watchers (NOTIFY is sent at
        the commit)."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                # one writer at a time per domain: event ids are then committed in order,
                # so a watcher reading "after id N" never skips a later-committed one
                cur.execute("SELECT pg_advisory_xact_lock(%s), pg_notify(%s, %s)",
                            (key(self.store.scope, "writes"), self.store.channel, wid))
                yield cur
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

"""The journal of one live workload's updates (STATE_DIR/updates.db): each update with its
real phases — surrogate, ready, checkpoint, restore, retire — and its true end:

    succeeded     the surrogate serves from the new home, with the state
    reverted      the handoff failed and the original serves on (its state kept)
    taken-over    the original died during the handoff: the surrogate serves, without
                  the state
    failed        no workload process is left serving

Every change is committed before the supervisor acts on the next phase, as in the fleet
journal, so a reader (`zdt live status`, a test, the console) sees where an update is.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from zdt import sqlitedb
from zdt.errors import ZdtError
from zdt.lock import make_private_dir

PHASES = ("surrogate", "ready", "checkpoint", "restore", "retire")
ENDS = ("succeeded", "reverted", "taken-over", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id TEXT PRIMARY KEY, workload TEXT NOT NULL, kind TEXT NOT NULL, home TEXT NOT NULL,
    from_home TEXT NOT NULL, request TEXT NOT NULL, state TEXT NOT NULL,
    created REAL NOT NULL, ended REAL, error TEXT, facts TEXT);
CREATE TABLE IF NOT EXISTS phases (
    update_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    started REAL, ended REAL, note TEXT, PRIMARY KEY (update_id, idx));
"""


class LiveJournal:
    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        """The workload's journal, made (0600, in a 0700 dir) when it does not exist."""
        self.path = Path(state_dir) / "updates.db"
        self.clock = clock
        make_private_dir(self.path.parent)
        sqlitedb.create_private(self.path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            sqlitedb.setup(self.db, SCHEMA)
        except sqlite3.Error as exc:
            raise ZdtError(f"{self.path}: cannot open the live journal: {exc}") from exc
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def begin(self, uid: str, workload: str, kind: str, home: str, from_home: str,
              request: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO updates (id, workload, kind, home, from_home, request, state, "
                "created) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (uid, workload, kind, home, from_home, json.dumps(request), self.clock()))
            self.db.executemany(
                "INSERT INTO phases (update_id, idx, name, state) VALUES (?, ?, ?, 'pending')",
                [(uid, i, name) for i, name in enumerate(PHASES)])

    def phase(self, uid: str, name: str, state: str, note: str | None = None) -> None:
        """A phase begins (`running`) or ends (`done`, `failed`)."""
        now = self.clock()
        with self._tx():
            self.db.execute(
                "UPDATE phases SET state = ?, note = COALESCE(?, note), "
                "started = CASE WHEN ? = 'running' THEN ? ELSE started END, "
                "ended = CASE WHEN ? = 'running' THEN NULL ELSE ? END "
                "WHERE update_id = ? AND name = ?",
                (state, note, state, now, state, now, uid, name))

    def end(self, uid: str, state: str, *, error: str | None = None,
            facts: dict[str, Any] | None = None) -> None:
        if state not in ENDS:
            raise ValueError(f"not an end of a live update: {state!r}")
        with self._tx():
            self.db.execute(
                "UPDATE phases SET state = 'failed', ended = ? WHERE update_id = ? AND "
                "state = 'running'", (self.clock(), uid))
            if state == "succeeded":          # an overlap handoff restores no state
                self.db.execute("UPDATE phases SET state = 'skipped' WHERE update_id = ? "
                                "AND state = 'pending'", (uid,))
            self.db.execute(
                "UPDATE updates SET state = ?, ended = ?, error = ?, facts = ? WHERE id = ?",
                (state, self.clock(), error, json.dumps(facts) if facts else None, uid))

    def updates(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest updates first, each with its phases."""
        try:
            rows = self.db.execute("SELECT * FROM updates ORDER BY created DESC, rowid DESC "
                                   "LIMIT ?", (limit,)).fetchall()
            return [self._update(r) for r in rows]
        except sqlite3.Error as exc:
            raise ZdtError(f"{self.path}: cannot read the live journal: {exc}") from exc

    def _update(self, r: sqlite3.Row) -> dict[str, Any]:
        phases = self.db.execute("SELECT * FROM phases WHERE update_id = ? ORDER BY idx",
                                 (r["id"],)).fetchall()
        return {"id": r["id"], "workload": r["workload"], "kind": r["kind"],
                "home": r["home"], "from_home": r["from_home"], "state": r["state"],
                "created": r["created"], "ended": r["ended"], "error": r["error"],
                "request": json.loads(r["request"]),
                "facts": json.loads(r["facts"]) if r["facts"] else None,
                "phases": [{"name": p["name"], "state": p["state"], "started": p["started"],
                            "ended": p["ended"], "note": p["note"]} for p in phases]}

    def _tx(self) -> AbstractContextManager[None]:
        return sqlitedb.transaction(self.db, self.path)

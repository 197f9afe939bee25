"""What zdt's SQLite journals share: WAL with full syncs, a schema made in one transaction,
and write transactions whose failure is an error naming the file."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zdt.errors import PreconditionError, ZdtError


def create_private(path: Path) -> None:
    """A new journal file, 0600 (SQLite gives its -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass                                   # another zdt made it meanwhile
    except OSError as exc:
        raise PreconditionError(f"{path}: cannot create the journal: {exc.strerror}") from exc


def setup(db: sqlite3.Connection, schema: str, patience: float = 10.0) -> None:
    """WAL mode and the schema. Two processes opening a new journal at once (a rollout and
    a `zdt status`) can get "database is locked" at once from the switch to WAL, which
    SQLite's busy timeout does not cover: try again for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # one transaction: another process opening the journal sees no table or all
            db.executescript(f"BEGIN IMMEDIATE; {schema} COMMIT;")
            return
        except sqlite3.OperationalError as exc:
            if db.in_transaction:
                db.rollback()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextmanager
def transaction(db: sqlite3.Connection, path: Path) -> Iterator[None]:
    """One write transaction; any failure rolls it back and is a ZdtError naming the file:
    nothing was recorded, so the caller must act on nothing after it."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
    except sqlite3.Error as exc:
        raise ZdtError(f"{path}: {exc}; nothing was recorded, so zdt acted on nothing after "
                       "it") from exc

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zdt.lab.postgres import Postgres
from zdt.workflow.journal import Store
from zdt.workflow.journal.postgres import PostgresStore
from zdt.workflow.journal.sqlite import SqliteStore

SAMPLE = """\
[domain]
name = "shop"
home = "/srv/app/home"
state_dir = "state"
admin = "admin"

[services]
kind = "supervisor"

[lb]
kind = "haproxy"
socket = "haproxy/admin.sock"
backend = "app"

[[nodes]]
name = "node1"
root = "nodes/node1"

[[nodes]]
name = "node2"
root = "nodes/node2"

[[nodes]]
name = "node3"
root = "nodes/node3"

[[servers]]
name = "admin"
node = "node1"
port = 7001
lb = false

[[servers]]
name = "s1"
node = "node1"
port = 8001

[[servers]]
name = "s2"
node = "node2"
port = 8002

[[servers]]
name = "s3"
node = "node3"
port = 8003

[[servers]]
name = "s4"
node = "node3"
port = 8004

[[clusters]]
name = "web"
servers = ["s1", "s2", "s3"]

[[clusters]]
name = "batch"
servers = ["s4"]
"""


@pytest.fixture
def sample_toml() -> str:
    return SAMPLE


@pytest.fixture
def domain_file(tmp_path: Path) -> Path:
    path = tmp_path / "domain.toml"
    path.write_text(SAMPLE)
    return path


class FakeClock:
    """A clock that advances one millisecond per reading: deterministic journals."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.ticks = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self.ticks) / 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL of the tests' own, for the whole session (of this worker); its
    password in a PGPASSFILE that the tests' processes inherit."""
    server = Postgres()
    try:
        server.start()
        os.environ["PGPASSFILE"] = str(server.passfile)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    """The journal's store of a state dir: SQLite in it, or a domain of this test's own in
    the tests' PostgreSQL (the same suite runs against both)."""
    if request.param == "sqlite":
        return SqliteStore
    server: Postgres = request.getfixturevalue("postgres")
    salt = secrets.token_hex(4)

    def store(state_dir: Path) -> Store:
        scope = hashlib.sha256(f"{salt}:{state_dir}".encode()).hexdigest()[:12]
        return PostgresStore(server.url, f"test-{scope}")

    return store

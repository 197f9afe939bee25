"""Every live workload of this host: listed, and updated as one operation (AIX Live Update
updates a whole LPAR at once).

The workloads are the state dirs under the state root (~/.local/state/zdt/live by
default; one started with a --state-dir elsewhere is named in a `workload:` stanza with its
`state_dir`). One operation updates them one after another under one host lock (a second
one is refused, exit 4); if one fails, those already updated are reverted, last first, and
the operation ends `reverted` (or `revert-failed`, naming what is left).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zdt.errors import ConfigError, ZdtError
from zdt.live import client, operations
from zdt.live.operations import LiveRequest
from zdt.lock import DomainLock


def names(root: Path | None = None) -> list[tuple[str, Path]]:
    """The workloads under the state root: (name, state dir), by name."""
    root = root or client.default_root()
    if not root.is_dir():
        return []
    return [(d.name, d) for d in sorted(root.iterdir())
            if d.is_dir() and client.NAME.match(d.name) and (d / "config.json").is_file()]


def listing(root: Path | None = None) -> list[dict[str, Any]]:
    """Each workload: running or not, and what its supervisor says of it."""
    found = []
    for name, directory in names(root):
        row: dict[str, Any] = {"name": name, "state_dir": str(directory)}
        try:
            row.update(client.ask(directory, {"op": "status"}, timeout=5.0), running=True)
        except ZdtError as exc:
            row.update(running=False, detail=str(exc))
        found.append(row)
    return found


def requests_of(data: Path | None, home_dir: str | None, archive: str | None,
                every: bool, timeouts: dict[str, float | None]) -> list[LiveRequest]:
    """What one host operation updates: the data file's `workload:` stanzas (a home or
    archive of their own, else the options', else `general:`'s), or --all workloads
    running under the state root, each onto --home-dir / --archive."""
    if data is not None:
        from zdt.live import stanza

        parsed = stanza.load(data)
        if not parsed.workloads:
            raise ConfigError(f"{data}: no `workload:` stanza; name the workload instead")
        g = parsed.general
        return [LiveRequest(w.name, w.home or (None if w.archive else home_dir or g.home),
                            w.archive or (None if w.home else archive or g.archive), None,
                            w.state_dir, timeouts) for w in parsed.workloads]
    if not every:
        raise ConfigError("give the workload's NAME, --all, or --data with `workload:` "
                          "stanzas")
    if bool(home_dir) == bool(archive):
        raise ConfigError("--all: give the new home with --home-dir or --archive (one)")
    running = [row["name"] for row in listing() if row["running"]]
    if not running:
        raise ConfigError(f"--all: no workload runs under {client.default_root()}")
    return [LiveRequest(name, home_dir, archive, None, None, timeouts) for name in running]


def update_all(requests: list[LiveRequest], root: Path | None = None) -> dict[str, Any]:
    """Update each in order under the host lock; on a failure, revert the done ones."""
    lock = DomainLock((root or client.default_root()) / ".host")
    lock.acquire("zdt live update of the host's workloads")
    done: list[dict[str, Any]] = []
    try:
        for req in requests:
            try:
                result = operations.update(req)
            except ZdtError as exc:
                failed = {"name": req.name, "error": str(exc)}
                return {"state": _revert(done, requests), "workloads": [*done, failed],
                        "error": f"{req.name}: {exc}"}
            done.append({"name": req.name, "result": result})
        return {"state": "succeeded", "workloads": done}
    finally:
        lock.release()


def _revert(done: list[dict[str, Any]], requests: list[LiveRequest]) -> str:
    """The updated workloads back onto their previous homes, last first."""
    dirs = {r.name: r.state_dir for r in requests}
    state = "reverted"
    for row in reversed(done):
        try:
            row["reverted"] = operations.update(LiveRequest(row["name"],
                                                            state_dir=dirs[row["name"]]),
                                                "revert")
        except ZdtError as exc:
            row["revert_error"] = str(exc)
            state = "revert-failed"
    return state

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
                every: bool, timeouts: dict[str, float | None]
                ) -> tuple[list[LiveRequest], dict[str, tuple[str, ...]]]:
    """What one host operation updates, and the data file's scripts (run once around it):
    the file's `workload:` stanzas — each onto its own home or archive, else the
    options', else `general:`'s — or --all workloads running under the state root, each
    onto --home-dir / --archive."""
    if data is not None and every:
        raise ConfigError("--all or --data with `workload:` stanzas, not both")
    if data is not None:
        from zdt.live import stanza

        parsed = stanza.load(data)
        if not parsed.workloads:
            raise ConfigError(f"{data}: no `workload:` stanza; name the workload instead")
        g = parsed.general
        given = {k: v for k, v in (("ready_timeout", g.ready_timeout),
                                   ("checkpoint_timeout", g.checkpoint_timeout),
                                   ("stop_timeout", g.stop_timeout))}
        given.update({k: v for k, v in timeouts.items() if v is not None})
        default = (home_dir, archive) if home_dir or archive else (g.home, g.archive)
        scripts = {phase: getattr(parsed.scripts, phase)
                   for phase in ("check", "pre", "post", "error", "complete")}
        return [LiveRequest(w.name, *((w.home, w.archive) if w.home or w.archive
                                      else default), None, w.state_dir, dict(given))
                for w in parsed.workloads], scripts
    if not every:
        raise ConfigError("give the workload's NAME, --all, or --data with `workload:` "
                          "stanzas")
    if bool(home_dir) == bool(archive):
        raise ConfigError("--all: give the new home with --home-dir or --archive (one)")
    running = [row["name"] for row in listing() if row["running"]]
    if not running:
        raise ConfigError(f"--all: no workload runs under {client.default_root()}")
    return [LiveRequest(name, home_dir, archive, None, None, timeouts)
            for name in running], {}


def update_all(requests: list[LiveRequest], scripts: dict[str, tuple[str, ...]] | None = None,
               root: Path | None = None) -> dict[str, Any]:
    """Update each in order under the host lock, the data file's scripts around them all;
    on a failure, revert the done ones (last first). A single `zdt live update NAME` is not
    held off between two of them: it takes only its workload's lock."""
    scripts = scripts or {}
    lock = DomainLock((root or client.default_root()) / ".host")
    lock.acquire("zdt live update of the host's workloads")
    done: list[dict[str, Any]] = []
    env = {"ZDT_NAME": ",".join(r.name for r in requests), "ZDT_HOME": "",
           "ZDT_PREVIOUS_HOME": ""}
    try:
        operations.run_scripts(scripts, ("check", "pre"), env)
        for req in requests:
            try:
                result = operations.update(req)
            except (ZdtError, OSError) as exc:
                operations.run_scripts(scripts, ("error",), env, quiet=True)
                failed = {"name": req.name, "error": str(exc)}
                return {"state": _revert(done, requests), "workloads": [*done, failed],
                        "error": f"{req.name}: {exc}"}
            done.append({"name": req.name, "result": result})
        operations.run_scripts(scripts, ("post", "complete"), env)
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

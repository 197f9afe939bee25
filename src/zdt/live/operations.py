"""What an operator does with a live workload, for every front end (through `zdt.app`):
update, revert, preview, status, stop. The supervisor does the handoff itself; this side
gathers the inputs (options or a liveupdate.data file), holds the host lock for the
workload, runs the stanza's scripts around the update, and asks the supervisor.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zdt import archive as archives
from zdt import procfs
from zdt.adapters.transport.local import LocalTransport
from zdt.errors import ConfigError, PreconditionError, ZdtError
from zdt.live import client, homes
from zdt.lock import DomainLock

SCRIPT_TIMEOUT = 600.0
TIMEOUTS = ("ready_timeout", "checkpoint_timeout", "stop_timeout")


@dataclass(frozen=True)
class LiveRequest:
    """A live update (or its preview) as asked: the new home as a directory or an archive,
    or a liveupdate.data file naming it (options win over the file)."""

    name: str
    home_dir: str | None = None
    archive: str | None = None
    data: Path | None = None
    state_dir: str | None = None
    timeouts: dict[str, float | None] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return client.state_dir(self.name, self.state_dir)


def update(req: LiveRequest, op: str = "update") -> dict[str, Any]:
    """Hand the workload over to a surrogate from the new home (or, `revert`, the previous
    one); the measured facts. Refused (exit 4) while another update holds the workload."""
    directory = req.directory
    request, scripts = _inputs(req) if op == "update" else ({}, {})
    request.update({k: v for k, v in req.timeouts.items() if v is not None})
    status = client.require_running(directory)
    lock = DomainLock(directory)
    lock.acquire(f"zdt live {op} of {req.name}")
    try:
        if op == "update":
            request["home"] = homes.prepare_home(directory, request.pop("home_dir"),
                                                  request.pop("archive"))
            problem = homes.entry_point_problem(status.get("command", []), request["home"])
            if problem:
                raise PreconditionError(problem)
        env = {"ZDT_NAME": req.name, "ZDT_HOME": str(request.get("home", "")),
               "ZDT_PREVIOUS_HOME": str(status["home"])}
        run_scripts(scripts, ("check", "pre"), env)
        try:
            result = client.ask(directory, {**request, "op": op})
        except ZdtError:
            run_scripts(scripts, ("error",), env, quiet=True)
            raise
        run_scripts(scripts, ("post", "complete"), env)
    finally:
        lock.release()
    return result


def _inputs(req: LiveRequest) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    request: dict[str, Any] = {"home_dir": req.home_dir, "archive": req.archive}
    scripts: dict[str, tuple[str, ...]] = {}
    if req.data is not None:
        from zdt.live import stanza

        parsed = stanza.load(req.data)
        g = parsed.general
        if g.name and g.name != req.name:
            raise ConfigError(f"{req.data}: general.name is {g.name!r}, not {req.name!r}")
        if not req.home_dir and not req.archive:
            request.update(home_dir=g.home, archive=g.archive)
        request.update(ready_timeout=g.ready_timeout, checkpoint_timeout=g.checkpoint_timeout,
                       stop_timeout=g.stop_timeout)
        scripts = {phase: getattr(parsed.scripts, phase)
                   for phase in ("check", "pre", "post", "error", "complete")}
    return request, scripts


def run_scripts(scripts: dict[str, tuple[str, ...]], phases: tuple[str, ...],
                env: dict[str, str], quiet: bool = False) -> None:
    """The stanza's scripts of each phase, one after the other, on this host (through
    the same transport as a domain's hooks: its own session, done at its exit, all of it
    killed at the timeout). A failing one fails the update unless `quiet`."""
    for phase in phases:
        for script in scripts.get(phase, ()):
            problem = asyncio.run(run_script(script, {**env, "ZDT_PHASE": phase}))
            if problem and not quiet:
                raise PreconditionError(f"{phase} script {script} {problem}")


async def run_script(script: str, env: dict[str, str]) -> str | None:
    """Why the script failed, or None. (A script path never holds '=': the stanza file's
    parser refuses it, since `env` would take it for one more variable.)"""
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), script]
    try:
        result = await LocalTransport("localhost").run(argv, check=False,
                                                       timeout=SCRIPT_TIMEOUT)
    except ZdtError as exc:
        if "timed out" in str(exc):
            return f"ran longer than {SCRIPT_TIMEOUT:g} s (it and its children were killed)"
        return str(exc)
    tail = result.stderr[-300:].strip()
    return f"exited {result.returncode}: {tail}" if result.returncode != 0 else None


def status(name: str, state_dir: str | None = None) -> dict[str, Any]:
    return client.ask(client.state_dir(name, state_dir), {"op": "status"})


def stop(name: str, state_dir: str | None = None) -> None:
    """Stop the workload and its supervisor; returns once the supervisor is gone."""
    directory = client.state_dir(name, state_dir)
    client.ask(directory, {"op": "stop"})
    deadline = time.monotonic() + 60
    while (directory / "control.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if (directory / "control.sock").exists():
        raise ZdtError(f"{name}: the supervisor is still up after 60 s; see "
                       f"{directory / 'supervisor.log'}")


def preview(req: LiveRequest) -> dict[str, Any]:
    """Validate the inputs, check the restrictions, estimate; change nothing. `ok` says
    whether an update would be accepted now."""
    directory = req.directory
    request, _ = _inputs(req)
    home, archive = request.get("home_dir"), request.get("archive")
    if bool(home) == bool(archive):
        raise ConfigError("give the new home with --home-dir or --archive (one of them)")
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": ok, "detail": detail})

    status = client.ask(directory, {"op": "status"}, timeout=5.0)
    check("running and ready", bool(status.get("ready")), f"pid {status.get('pid')}")
    check("readiness of the surrogate", True, _readiness(status))
    need_disk = 0
    if archive:
        manifest = archives.verify(Path(archive))
        need_disk = manifest.unpacked
        check("archive", True, f"version {manifest.version}, sha256 {manifest.sha256[:16]}…")
    else:
        home = str(home)
        exists = Path(home).is_dir()
        check("new home exists", exists, home)
        if exists:
            problem = homes.entry_point_problem(status.get("command", []), home)
            check("entry point", problem is None, problem or "present")
    rss, available = procfs.rss(status.get("pid")), procfs.mem_available()
    check("memory for the surrogate", available >= rss,
          f"{available / 2**20:.0f} MiB available, workload RSS {rss / 2**20:.1f} MiB")
    free = shutil.disk_usage(directory).free
    check("disk for the new home", free >= need_disk,
          f"{free / 2**20:.0f} MiB free, {need_disk / 2**20:.1f} MiB needed")
    return {"name": status.get("name"), "restrictions": checks,
            "ok": all(c["ok"] for c in checks), "estimates": _estimate(directory)}


def _readiness(status: dict[str, Any]) -> str:
    """How the surrogate will be known ready, and how it takes over."""
    how = []
    if status.get("readiness") == "sd_notify" or status.get("checkpoint"):
        how.append("sd_notify READY=1")
    if status.get("health"):
        how.append(f"{status['health']} answering 200 from the surrogate itself")
    takeover = ("its state by checkpoint" if status.get("checkpoint") else
                "by overlap, no state (the workload has no checkpoint)")
    return f"{' or '.join(how) or 'sd_notify READY=1'}; then {takeover}"


def _estimate(directory: Path) -> dict[str, Any]:
    try:
        history = json.loads((directory / "state.json").read_text()).get("history", [])
    except (OSError, ValueError):
        history = []
    if history:
        totals = sorted(h["total_ms"] for h in history)
        blackouts = sorted(h["blackout_ms"] for h in history)
        p90 = min(len(history) - 1, round(0.9 * (len(history) - 1)))
        last = history[-1]          # the blackout follows the mode and the streamed size
        shape = (f"{last.get('mode', '?')}, {last.get('state_bytes', 0):,} bytes streamed"
                 + (f", a {last['segment_bytes']:,}-byte segment by reference"
                    if last.get("segment_bytes") else ""))
        return {"basis": f"median (and 90th percentile) of the last {len(history)} "
                f"update(s); the last: {shape}", "learned": True,
                "total_ms": statistics.median(totals), "total_p90_ms": totals[p90],
                "blackout_ms": statistics.median(blackouts), "blackout_p90_ms": blackouts[p90]}
    return {"basis": "no update yet: an upper bound from the default timeouts",
            "learned": False, "total_ms": 70_000.0, "blackout_ms": 30_000.0}

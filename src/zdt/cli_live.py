"""`zdt live …` (single-host live update) and `zdt stale`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from zdt import archive as archives
from zdt.cli_common import JsonOpt, handled, out, print_json
from zdt.errors import ConfigError, PreconditionError, ZdtError
from zdt.live import client
from zdt.live.supervisor import LiveConfig
from zdt.lock import DomainLock
from zdt.terminal import clean

live_app = typer.Typer(help="Update the software under a running workload on one host: a "
                            "surrogate takes over its sockets and its state.",
                       no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The workload's name (`zdt live run --name`).")]
StateDir = Annotated[str | None, typer.Option(help="The supervisor's state dir [default: "
                                                   "~/.local/state/zdt/live/NAME].")]
HomeDir = Annotated[str | None, typer.Option("--home-dir", help="The new home (a directory).")]
ArchiveOpt = Annotated[str | None, typer.Option("--archive", help="The new home as an archive "
                                                "(`zdt archive create`).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="A liveupdate.data file.")]


@live_app.command("run", context_settings={"allow_interspersed_args": False})
@handled
def run(
    command: Annotated[list[str], typer.Argument(help="-- CMD ARGS…: the workload.")],
    name: Annotated[str, typer.Option(help="The workload's name.")],
    listen: Annotated[list[str], typer.Option(help="HOST:PORT to listen on (repeat).")],
    home: Annotated[str, typer.Option(help="The workload's home [default: the current "
                                           "directory].")] = ".",
    health: Annotated[str | None, typer.Option(help="Readiness by this URL answering 200 "
                                                    "(else sd_notify READY=1).")] = None,
    state_dir: StateDir = None,
    ready_timeout: Annotated[float, typer.Option(min=0.1, max=86400, help="Seconds for the "
                                                 "workload to be ready.")] = 30.0,
    detach: Annotated[bool, typer.Option(help="Run the supervisor in the background.")] = False,
    max_state_bytes: Annotated[int, typer.Option(
        min=0, max=1 << 40, help="The largest state a checkpoint may hand over (a larger "
        "one fails the update; the original serves on).")] = 1 << 30,
    json_out: JsonOpt = False,
) -> None:
    """Run a workload under a live supervisor that holds its listening sockets."""
    directory = client.state_dir(name, state_dir)
    config = LiveConfig(name, tuple(listen), str(Path(home).resolve()), tuple(command),
                        str(directory), health, ready_timeout=ready_timeout,
                        max_state_bytes=max_state_bytes)
    client.check_config(config)
    if not detach:
        client.run(config)
        return
    argv = ["--name", name, "--home", config.home, "--state-dir", str(directory),
            "--ready-timeout", str(ready_timeout), "--max-state-bytes", str(max_state_bytes)]
    argv += [x for a in listen for x in ("--listen", a)]
    argv += ["--health", health] if health else []
    status = client.detach([*argv, "--", *command], directory, timeout=ready_timeout + 5)
    _show_status(status, json_out)


Seconds = Annotated[float | None, typer.Option(min=0.01, max=86400)]


@live_app.command("update")
@handled
def update(name: NameArg, home_dir: HomeDir = None, archive: ArchiveOpt = None,
           data: DataOpt = None, state_dir: StateDir = None,
           ready_timeout: Seconds = None, checkpoint_timeout: Seconds = None,
           stop_timeout: Seconds = None, json_out: JsonOpt = False) -> None:
    """Move the workload onto a new home: surrogate, checkpoint, restore, retire."""
    timeouts = {"ready_timeout": ready_timeout, "checkpoint_timeout": checkpoint_timeout,
                "stop_timeout": stop_timeout}
    _handoff(name, "update", home_dir, archive, data, state_dir, json_out, timeouts)


@live_app.command("revert")
@handled
def revert(name: NameArg, state_dir: StateDir = None, json_out: JsonOpt = False) -> None:
    """Go back to the previous home by the same handoff."""
    _handoff(name, "revert", None, None, None, state_dir, json_out)


def _handoff(name: str, op: str, home_dir: str | None, archive: str | None,
             data: Path | None, state_dir: str | None, json_out: bool,
             timeouts: dict[str, float | None] | None = None) -> None:
    directory = client.state_dir(name, state_dir)
    request, scripts = _inputs(name, data, home_dir, archive)
    request.update({k: v for k, v in (timeouts or {}).items() if v is not None})
    status = client.require_running(directory)
    lock = DomainLock(directory)
    lock.acquire(f"zdt live {op} of {name}")
    try:
        if op == "update":
            request["home"] = client.prepare_home(directory, request.pop("home_dir"),
                                                  request.pop("archive"))
            problem = client.entry_point_problem(status.get("command", []), request["home"])
            if problem:
                raise PreconditionError(problem)
        env = {"ZDT_NAME": name, "ZDT_HOME": str(request.get("home", "")),
               "ZDT_PREVIOUS_HOME": str(status["home"])}
        _scripts(scripts, ("check", "pre"), env)
        try:
            result = client.ask(directory, {**request, "op": op})
        except ZdtError:
            _scripts(scripts, ("error",), env, quiet=True)
            raise
        _scripts(scripts, ("post", "complete"), env)
    finally:
        lock.release()
    if json_out:
        print_json(result)
        return
    out.print(f"{name}: {op} done in {result['total_ms']:.0f} ms, blackout "
              f"{result['blackout_ms']:.1f} ms ({result['mode']}, {result['state_bytes']} bytes "
              f"of state), pid {result['original_pid']} → {result['surrogate_pid']}, home "
              f"{result['home']}")


def _inputs(name: str, data: Path | None, home_dir: str | None, archive: str | None
            ) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    request: dict[str, Any] = {"home_dir": home_dir, "archive": archive}
    scripts: dict[str, tuple[str, ...]] = {}
    if data is not None:
        from zdt.live import stanza

        parsed = stanza.load(data)
        g = parsed.general
        if g.name and g.name != name:
            raise ConfigError(f"{data}: general.name is {g.name!r}, not {name!r}")
        if not home_dir and not archive:
            request.update(home_dir=g.home, archive=g.archive)
        request.update(ready_timeout=g.ready_timeout, checkpoint_timeout=g.checkpoint_timeout,
                       stop_timeout=g.stop_timeout)
        scripts = {phase: getattr(parsed.scripts, phase)
                   for phase in ("check", "pre", "post", "error", "complete")}
    return request, scripts


SCRIPT_TIMEOUT = 600.0


def _scripts(scripts: dict[str, tuple[str, ...]], phases: tuple[str, ...],
             env: dict[str, str], quiet: bool = False) -> None:
    for phase in phases:
        for script in scripts.get(phase, ()):
            problem = _run_script(script, {**os.environ, **env, "ZDT_PHASE": phase})
            if problem and not quiet:
                raise PreconditionError(f"{phase} script {script} {problem}")


def _run_script(script: str, env: dict[str, str]) -> str | None:
    """Why the script failed, or None: run in a session of its own, all of it killed at
    the timeout."""
    with tempfile.TemporaryFile() as err:   # a file: a child it leaves running (`daemon
        try:                                # &`) cannot make us wait for a pipe's end
            proc = subprocess.Popen([script], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            return f"cannot run: {exc.strerror}"
        try:
            proc.wait(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"ran longer than {SCRIPT_TIMEOUT:g} s (it and its children were killed)"
        err.seek(0)
        tail = err.read()[-300:].decode(errors="replace").strip()
    return f"exited {proc.returncode}: {tail}" if proc.returncode != 0 else None


@live_app.command("status")
@handled
def status(name: NameArg, state_dir: StateDir = None, json_out: JsonOpt = False) -> None:
    """Pids, home, version, last blackout."""
    _show_status(client.ask(client.state_dir(name, state_dir), {"op": "status"}), json_out)


def _show_status(s: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(s)
        return
    last = s.get("last_update") or {}
    blackout = f", last blackout {last['blackout_ms']:.1f} ms" if last else ""
    out.print(f"{s['name']}: pid {s['pid']} ({'ready' if s['ready'] else 'not ready'}) on "
              f"{', '.join(s['listen'])}, home {s['home']} (version {s['version']})"
              f"{blackout}")


@live_app.command("stop")
@handled
def stop(name: NameArg, state_dir: StateDir = None) -> None:
    """Stop the workload and its supervisor."""
    directory = client.state_dir(name, state_dir)
    client.ask(directory, {"op": "stop"})
    deadline = time.monotonic() + 60
    while (directory / "control.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if (directory / "control.sock").exists():
        raise ZdtError(f"{name}: the supervisor is still up after 60 s; see "
                       f"{directory / 'supervisor.log'}")
    out.print(f"{name} stopped")


@live_app.command("preview")
@handled
def preview(name: NameArg, home_dir: HomeDir = None, archive: ArchiveOpt = None,
            data: DataOpt = None, state_dir: StateDir = None, json_out: JsonOpt = False) -> None:
    """Validate the inputs, check the restrictions, estimate; change nothing."""
    directory = client.state_dir(name, state_dir)
    request, _ = _inputs(name, data, home_dir, archive)
    report = _preview(directory, request)
    if json_out:
        print_json(report)
    else:
        for c in report["restrictions"]:
            out.print(f"  {'ok' if c['ok'] else 'NO'}  {c['name']}: {c['detail']}")
        e = report["estimates"]
        out.print(f"estimate: total {e['total_ms']:.0f} ms, blackout {e['blackout_ms']:.1f} ms "
                  f"({e['basis']}); nothing was changed")
    if not all(c["ok"] for c in report["restrictions"]):
        raise typer.Exit(3)


def _preview(directory: Path, request: dict[str, Any]) -> dict[str, Any]:
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
        assert home is not None
        exists = Path(home).is_dir()
        check("new home exists", exists, home)
        if exists:
            problem = client.entry_point_problem(status.get("command", []), home)
            check("entry point", problem is None, problem or "present")
    rss = _rss(status.get("pid"))
    available = _mem_available()
    check("memory for the surrogate", available >= rss,
          f"{available / 2**20:.0f} MiB available, workload RSS {rss / 2**20:.1f} MiB")
    free = shutil.disk_usage(directory).free
    check("disk for the new home", free >= need_disk,
          f"{free / 2**20:.0f} MiB free, {need_disk / 2**20:.1f} MiB needed")
    return {"name": status.get("name"), "restrictions": checks,
            "estimates": _estimate(directory, status)}


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


def _estimate(directory: Path, status: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        history = json.loads((directory / "state.json").read_text()).get("history", [])
    except (OSError, ValueError):
        history = []
    if history:
        return {"basis": f"median of the last {len(history)} update(s)",
                "total_ms": statistics.median(h["total_ms"] for h in history),
                "blackout_ms": statistics.median(h["blackout_ms"] for h in history)}
    return {"basis": "no update yet: an upper bound from the default timeouts",
            "total_ms": 70_000.0, "blackout_ms": 30_000.0}


def _rss(pid: int | None) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@handled
def stale(json_out: JsonOpt = False) -> None:
    """Processes still using files deleted or replaced since they loaded them."""
    from zdt import stale as stale_scan

    scan = stale_scan.scan()
    if json_out:
        print_json(stale_scan.as_dict(scan))
        return
    for p in scan.processes:
        out.print(f"{p.pid} {clean(p.command, lines=False)}")   # one line each: a name
        for f in p.files:                                           # cannot forge another
            out.print(f"    {f.why:<8} {clean(f.path, lines=False)}")
    if not scan.processes:
        out.print("no process uses a deleted or replaced file")
    if scan.unreadable:
        out.print(f"could not read {len(scan.unreadable)} process(es) (not ours): "
                  + " ".join(map(str, scan.unreadable[:20])))

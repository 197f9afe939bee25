"""`zdt live …` (single-host live update) and `zdt stale`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from zdt import app
from zdt.app import LiveConfig, LiveRequest
from zdt.cli import live_remote as remote
from zdt.cli.common import AcceptNew, JsonOpt, group, handled, out, print_json
from zdt.cli.live_remote import NodeOpt, RemoteDomain
from zdt.errors import ConfigError
from zdt.terminal import clean

live_app = group("Update the software under a running workload on one host: a "
                 "surrogate takes over its sockets and its state.")

STOP_SIGNALS = ("TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH")
NameArg = Annotated[str, typer.Argument(help="The workload's name (`zdt live run --name`).")]
MaybeName = Annotated[str | None, typer.Argument(help="The workload's name (`zdt live run "
                                                      "--name`).")]
StateDir = Annotated[str | None, typer.Option(help="The supervisor's state dir [default: "
                                                   "~/.local/state/zdt/live/NAME].")]
HomeDir = Annotated[str | None, typer.Option("--home-dir", help="The new home (a directory).")]
ArchiveOpt = Annotated[str | None, typer.Option("--archive", help="The new home as an archive "
                                                "(`zdt archive create`).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="A liveupdate.data file.")]


@live_app.command("run", context_settings={"allow_interspersed_args": False})
@handled
def run(
    name: Annotated[str, typer.Option(help="The workload's name.")],
    command: Annotated[list[str] | None, typer.Argument(help="-- CMD ARGS…: the workload.")
                       ] = None,
    listen: Annotated[list[str] | None, typer.Option(help="HOST:PORT to listen on (repeat)."
                                                     )] = None,
    adopt: Annotated[bool, typer.Option(help="Take back the workload a supervisor that died "
                                        "left serving (its sockets, its pid; the rest as it "
                                        "was run).")] = False,
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
    stop_signal: Annotated[str, typer.Option(
        help="The signal that stops the workload gracefully: TERM, INT (lighttpd), QUIT, "
        "HUP, USR1, USR2 or WINCH.")] = "TERM",
    json_out: JsonOpt = False,
) -> None:
    """Run a workload under a live supervisor that holds its listening sockets."""
    if adopt:
        if command or listen:
            raise ConfigError("--adopt takes the workload as it was run: no --listen, no "
                              "command")
        adopted = app.live_adopt(name, state_dir, detach=detach, timeout=ready_timeout + 5)
        if adopted is not None:
            _show_status(adopted, json_out)
        return
    if stop_signal.upper() not in STOP_SIGNALS:
        raise ConfigError(f"--stop-signal {stop_signal}: one of {', '.join(STOP_SIGNALS)}")
    directory = app.live_state_dir(name, state_dir)
    config = LiveConfig(name, tuple(listen or ()), str(Path(home).resolve()),
                        tuple(command or ()),
                        str(directory), health, ready_timeout=ready_timeout,
                        max_state_bytes=max_state_bytes, stop_signal=stop_signal.upper())
    status = app.live_run(config, detach=detach, timeout=ready_timeout + 5)
    if status is not None:
        _show_status(status, json_out)


Seconds = Annotated[float | None, typer.Option(min=0.01, max=86400)]


@live_app.command("update")
@handled
def update(name: MaybeName = None, home_dir: HomeDir = None, archive: ArchiveOpt = None,
           data: DataOpt = None, state_dir: StateDir = None,
           every: Annotated[bool, typer.Option("--all", help="Every workload running under "
                                               "the state root, one after another.")] = False,
           ready_timeout: Seconds = None, checkpoint_timeout: Seconds = None,
           stop_timeout: Seconds = None, json_out: JsonOpt = False,
           domain: RemoteDomain = None, node: NodeOpt = None) -> None:
    """Move the workload onto a new home: surrogate, checkpoint, restore, retire. Without
    NAME: every workload of a --data file's `workload:` stanzas, or --all, as one
    operation (those done are reverted if a later one fails)."""
    timeouts = {"ready_timeout": ready_timeout, "checkpoint_timeout": checkpoint_timeout,
                "stop_timeout": stop_timeout}
    if name is not None and every:
        raise ConfigError("NAME or --all, not both")
    if name is None and state_dir is not None:
        raise ConfigError("--state-dir names one workload's dir: give its NAME (or a "
                          "`state_dir` in its `workload:` stanza)")
    if domain is not None:
        files = {o: Path(f) for o, f in (("--archive", archive), ("--data", data)) if f}
        args = ["update", *([name] if name else []), *remote.options(
            home_dir=home_dir, state_dir=state_dir, all=every, **timeouts)]
        remote.on_node(domain, node, args, files, json_out, lambda r: (
            _show_handoff(name or "", "update", r, False) if name
            else _show_host_update(r, False)))
        return
    remote.local_only(node)
    if name is None:
        _show_host_update(app.live_update_all(data, home_dir, archive, every, timeouts),
                          json_out)
        return
    request = LiveRequest(name, home_dir, archive, data, state_dir, timeouts)
    _show_handoff(name, "update", app.live_update(request), json_out)


def _show_host_update(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
    else:
        for row in result["workloads"]:
            if "result" in row:
                _show_handoff(row["name"], "update", row["result"], False)
            if "reverted" in row:
                out.print(f"{row['name']}: reverted")
            for key in ("error", "revert_error"):
                if key in row:
                    out.print(f"{row['name']}: {clean(row[key], lines=False)}", style="red")
        out.print(f"host update: {result['state']}")
    if result["state"] != "succeeded":
        raise typer.Exit(1)


@live_app.command("revert")
@handled
def revert(name: NameArg, state_dir: StateDir = None, json_out: JsonOpt = False,
           domain: RemoteDomain = None, node: NodeOpt = None) -> None:
    """Go back to the previous home by the same handoff."""
    if domain is not None:
        remote.on_node(domain, node, ["revert", name, *remote.options(state_dir=state_dir)],
                       {}, json_out, lambda r: _show_handoff(name, "revert", r, False))
        return
    remote.local_only(node)
    _show_handoff(name, "revert", app.live_revert(name, state_dir), json_out)


def _show_handoff(name: str, op: str, result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
        return
    out.print(f"{name}: {op} done in {result['total_ms']:.0f} ms, blackout "
              f"{result['blackout_ms']:.1f} ms ({result['mode']}, {result['state_bytes']} bytes "
              f"of state), pid {result['original_pid']} → {result['surrogate_pid']}, home "
              f"{result['home']}")


@live_app.command("status")
@handled
def status(name: MaybeName = None, state_dir: StateDir = None,
           json_out: JsonOpt = False, domain: RemoteDomain = None,
           node: NodeOpt = None) -> None:
    """Pids, home, version, last blackout; without NAME, every workload of this host (of
    every node of the domain, with -d)."""
    if domain is not None and (name is not None or node is not None):
        remote.on_node(domain, node, ["status", *([name] if name else []),
                                      *remote.options(state_dir=state_dir)], {}, json_out,
                       _show_statuses)
        return
    if domain is not None:
        remote.every_node(domain, json_out, _show_statuses)
        return
    remote.local_only(node)
    if name is not None:
        _show_status(app.live_status(name, state_dir), json_out)
        return
    rows = app.live_host()
    if json_out:
        print_json(rows)
        return
    _show_statuses(rows)
    if not rows:
        out.print("no live workload here")


def _show_statuses(found: dict[str, Any] | list[dict[str, Any]]) -> None:
    """One workload's status, or a host's list of them."""
    for row in found if isinstance(found, list) else [found]:
        if row.get("running", True):
            _show_status(row, False)
        else:
            out.print(f"{row['name']}: not running ({row['state_dir']})")


def _show_status(s: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(s)
        return
    last = s.get("last_update") or {}
    blackout = f", last blackout {last['blackout_ms']:.1f} ms" if last else ""
    how = f", {s['readiness']}" if s.get("readiness") else ""
    out.print(f"{s['name']}: pid {s['pid']} ({'ready' if s['ready'] else 'not ready'}{how}) on "
              f"{', '.join(s['listen'])}, home {s['home']} (version {s['version']})"
              f"{blackout}")


@live_app.command("stop")
@handled
def stop(name: NameArg, state_dir: StateDir = None, domain: RemoteDomain = None,
         node: NodeOpt = None) -> None:
    """Stop the workload and its supervisor."""
    if domain is not None:
        remote.on_node(domain, node, ["stop", name, *remote.options(state_dir=state_dir)],
                       {}, False, print, as_json=False)
    else:
        remote.local_only(node)
        app.live_stop(name, state_dir)
    out.print(f"{name} stopped")


@live_app.command("preview")
@handled
def preview(name: NameArg, home_dir: HomeDir = None, archive: ArchiveOpt = None,
            data: DataOpt = None, state_dir: StateDir = None, json_out: JsonOpt = False,
            domain: RemoteDomain = None, node: NodeOpt = None) -> None:
    """Validate the inputs, check the restrictions, estimate; change nothing."""
    if domain is not None:
        files = {o: Path(f) for o, f in (("--archive", archive), ("--data", data)) if f}
        remote.on_node(domain, node, ["preview", name, *remote.options(
            home_dir=home_dir, state_dir=state_dir)], files, json_out,
            _show_preview)
        return
    remote.local_only(node)
    report = app.live_preview(LiveRequest(name, home_dir, archive, data, state_dir))
    _show_preview(report, json_out)


def _show_preview(report: dict[str, Any], json_out: bool = False) -> None:
    if json_out:
        print_json({k: v for k, v in report.items() if k != "ok"})
    else:
        for c in report["restrictions"]:
            out.print(f"  {'ok' if c['ok'] else 'NO'}  {c['name']}: {c['detail']}")
        e = report["estimates"]
        high = (f" (90th percentile {e['total_p90_ms']:.0f} ms and "
                f"{e['blackout_p90_ms']:.1f} ms)" if e.get("learned") else "")
        out.print(f"estimate: total {e['total_ms']:.0f} ms, blackout {e['blackout_ms']:.1f} ms"
                  f"{high} ({e['basis']}); nothing was changed")
    if not report.get("ok", True):        # (a node's preview: its exit says it)
        raise typer.Exit(3)


StaleDomain = Annotated[Path | None, typer.Option(
    "--domain", "-d", help="Scan every node of this domain (over its transport) and name the "
    "server each stale process belongs to; without it, this host.")]


@handled
def stale(domain: StaleDomain = None, json_out: JsonOpt = False,
          accept_new_host_keys: AcceptNew = False) -> None:
    """Processes still using files deleted or replaced since they loaded them."""
    if domain is not None:
        found = asyncio.run(app.App(domain, connect=app.Connect(accept_new_host_keys))
                            .stale())
        print_json(found) if json_out else _print_fleet(found)
        return
    scan = app.stale_processes()
    if json_out:
        print_json(scan)
        return
    _print_processes(scan["processes"], "")
    if not scan["processes"]:
        out.print("no process uses a deleted or replaced file")
    if scan["unreadable"]:
        out.print(f"could not read {len(scan['unreadable'])} process(es) (not ours): "
                  + " ".join(map(str, scan["unreadable"][:20])))


def _print_processes(processes: list[dict[str, Any]], indent: str) -> None:
    for p in processes:       # one line each: a name cannot forge another
        out.print(f"{indent}{p['pid']} {clean(p['command'], lines=False)}")
        for f in p["files"]:
            package = f" ({clean(f['package'], lines=False)})" if f.get("package") else ""
            out.print(f"{indent}    {f['why']:<8} {clean(f['path'], lines=False)}{package}")


def _print_fleet(found: dict[str, Any]) -> None:
    for row in found["servers"]:
        if row["stale"]:
            out.print(f"{row['server']} on {row['node']} (pid {row['pid']}): runs stale code")
            _print_processes(row["stale"], "  ")
        elif row["pid"] is None and "error" not in row:
            out.print(f"{row['server']} on {row['node']}: not running (nothing to scan)")
    for line in found["blind"]:
        out.print(f"not seen: {clean(line, lines=False)}", style="red")
    if found["stale"]:
        out.print(f"{len(found['stale'])} server(s) to restart: `zdt rollout restart "
                  "--stale` restarts exactly them, behind the load balancer")
    else:
        scanned = sum(1 for r in found["servers"] if r["pid"])
        out.print(f"no server runs stale code ({scanned} running server(s) scanned)")

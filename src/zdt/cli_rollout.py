"""`zdt rollout …`, `zdt preview …` and `zdt archive …`: the commands that start work.

`zdt preview -d D rollout home …` (or `zdt preview -d D home …`, or `zdt rollout home …
--dry-run`) takes the same arguments as the rollout and changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zdt.adapters import Connect
from zdt.cli_common import (
    AcceptNew,
    DomainOpt,
    JsonOpt,
    Parallel,
    err,
    finish,
    handled,
    out,
    print_json,
)
from zdt.display import Progress
from zdt.rollout import RolloutRequest, Runner
from zdt.terminal import styled

rollout_app = typer.Typer(help="Roll a change across a domain, one node at a time.",
                          no_args_is_help=True)
preview_app = typer.Typer(help="Validate, check preconditions, plan and estimate a rollout; "
                               "change nothing.", no_args_is_help=True)
preview_rollout = typer.Typer(help="The same as `zdt preview`.", no_args_is_help=True)
preview_app.add_typer(preview_rollout, name="rollout")
archive_app = typer.Typer(help="Checksummed archives of a patched home.", no_args_is_help=True)

Targets = Annotated[str, typer.Option(help="domain | admin | cluster and server names, "
                                           "comma-separated")]
ShutdownTimeout = Annotated[float | None, typer.Option(
    help="Seconds to wait for a drain and for a graceful stop [default: 30].")]
Retries = Annotated[int, typer.Option(help="Retries of a failing step.")]
RetryDelay = Annotated[float, typer.Option(help="Seconds between retries.")]
Delay = Annotated[float, typer.Option(help="Seconds between nodes (session replication).")]
AutoRevert = Annotated[bool, typer.Option(help="Revert completed steps on failure.")]
AllowDowntime = Annotated[bool, typer.Option(help="Allow a cluster on a single node.")]
PauseAfter = Annotated[int | None, typer.Option(
    help="Stop after the first N nodes (a canary) until `zdt resume`.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Preview only: change nothing.")]
HealthTimeout = Annotated[float, typer.Option(help="Seconds for a started server to answer "
                                                   "its health URL with 200.")]
FailOnLbErrors = Annotated[bool, typer.Option(
    "--fail-on-lb-errors", help="Errors the load balancer counted while a node was out "
    "(connection, response, 5xx, server aborts) fail that node's ready step.")]


@preview_app.callback()
def preview_callback(ctx: typer.Context, domain: DomainOpt = Path("domain.toml")) -> None:
    ctx.obj = {"domain": domain}


def _domain(ctx: typer.Context, domain: Path) -> Path:
    """-d given to `zdt preview` applies to the rollout arguments after it."""
    given = ctx.get_parameter_source("domain")
    if ctx.obj and given is not None and given.name == "DEFAULT":
        return Path(ctx.obj["domain"])
    return domain


def _previewing(ctx: typer.Context) -> bool:
    c: Any = ctx
    while c is not None:
        if c.info_name == "preview":
            return True
        c = c.parent
    return False


def restart(
    ctx: typer.Context,
    domain: DomainOpt = Path("domain.toml"),
    targets: Targets = "domain",
    shutdown_timeout: ShutdownTimeout = None,
    retries: Retries = 2,
    retry_delay: RetryDelay = 1.0,
    delay_between_nodes: Delay = 0.0,
    auto_revert: AutoRevert = True,
    allow_downtime: AllowDowntime = False,
    pause_after: PauseAfter = None,
    health_timeout: HealthTimeout = 30.0,
    fail_on_lb_errors: FailOnLbErrors = False,
    partitions: Annotated[str | None, typer.Option(
        help="Restart only these partitions of the targeted servers, comma-separated.")]
    = None,
    dry_run: DryRun = False,
    json_out: JsonOpt = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """Restart every targeted server, one node at a time, behind the load balancer."""
    request = RolloutRequest(tuple(targets.split(",")), shutdown_timeout, retries, retry_delay,
                             delay_between_nodes, auto_revert, allow_downtime,
                             pause_after=pause_after, health_timeout=health_timeout,
                             fail_on_lb_errors=fail_on_lb_errors,
                             partitions=tuple(p for p in (partitions or "").split(",") if p))
    _go(ctx, _domain(ctx, domain), request, dry_run, json_out,
        Connect(accept_new_host_keys, parallel))


def home(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Option(help="The archive of the patched home "
                                               "(`zdt archive create`).")],
    domain: DomainOpt = Path("domain.toml"),
    targets: Targets = "domain",
    backup_dir: Annotated[str | None, typer.Option(
        help="Node dir for the backups of the home [default: beside the home].")] = None,
    rollback: Annotated[bool, typer.Option(
        help="The archive is an older release (recorded and shown).")] = False,
    session_compatible: Annotated[bool, typer.Option(
        help="Whether the new version can serve sessions of the old one.")] = True,
    shutdown_timeout: ShutdownTimeout = None,
    retries: Retries = 2,
    retry_delay: RetryDelay = 1.0,
    delay_between_nodes: Delay = 0.0,
    auto_revert: AutoRevert = True,
    allow_downtime: AllowDowntime = False,
    pause_after: PauseAfter = None,
    health_timeout: HealthTimeout = 30.0,
    fail_on_lb_errors: FailOnLbErrors = False,
    dry_run: DryRun = False,
    json_out: JsonOpt = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """Move every targeted node onto the patched home in ARCHIVE, one node at a time."""
    request = RolloutRequest(tuple(targets.split(",")), shutdown_timeout, retries, retry_delay,
                             delay_between_nodes, auto_revert, allow_downtime, kind="home",
                             archive=str(archive), backup_dir=backup_dir, rollback=rollback,
                             session_compatible=session_compatible, pause_after=pause_after,
                             health_timeout=health_timeout,
                             fail_on_lb_errors=fail_on_lb_errors)
    _go(ctx, _domain(ctx, domain), request, dry_run, json_out,
        Connect(accept_new_host_keys, parallel))


def runtime(
    ctx: typer.Context,
    runtime_home: Annotated[str, typer.Option(help="The new runtime's path, the same on "
                                                   "every node.")],
    domain: DomainOpt = Path("domain.toml"),
    targets: Targets = "domain",
    shutdown_timeout: ShutdownTimeout = None,
    retries: Retries = 2,
    retry_delay: RetryDelay = 1.0,
    delay_between_nodes: Delay = 0.0,
    auto_revert: AutoRevert = True,
    allow_downtime: AllowDowntime = False,
    pause_after: PauseAfter = None,
    health_timeout: HealthTimeout = 30.0,
    fail_on_lb_errors: FailOnLbErrors = False,
    dry_run: DryRun = False,
    json_out: JsonOpt = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """Point every targeted node's scripts at a new runtime (WebLogic's Java home)."""
    request = RolloutRequest(tuple(targets.split(",")), shutdown_timeout, retries, retry_delay,
                             delay_between_nodes, auto_revert, allow_downtime, kind="runtime",
                             pause_after=pause_after, health_timeout=health_timeout,
                             fail_on_lb_errors=fail_on_lb_errors,
                             runtime_home=runtime_home)
    _go(ctx, _domain(ctx, domain), request, dry_run, json_out,
        Connect(accept_new_host_keys, parallel))


def apps(
    ctx: typer.Context,
    apps_json: Annotated[Path, typer.Option("--apps", help="The apps.json spec.")],
    domain: DomainOpt = Path("domain.toml"),
    targets: Targets = "domain",
    shutdown_timeout: ShutdownTimeout = None,
    retries: Retries = 2,
    retry_delay: RetryDelay = 1.0,
    delay_between_nodes: Delay = 0.0,
    auto_revert: AutoRevert = True,
    allow_downtime: AllowDowntime = False,
    pause_after: PauseAfter = None,
    health_timeout: HealthTimeout = 30.0,
    fail_on_lb_errors: FailOnLbErrors = False,
    dry_run: DryRun = False,
    json_out: JsonOpt = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """Move new application versions into place (stage, nostage, external_stage)."""
    request = RolloutRequest(tuple(targets.split(",")), shutdown_timeout, retries, retry_delay,
                             delay_between_nodes, auto_revert, allow_downtime, kind="apps",
                             pause_after=pause_after, health_timeout=health_timeout,
                             fail_on_lb_errors=fail_on_lb_errors,
                             apps=str(apps_json))
    _go(ctx, _domain(ctx, domain), request, dry_run, json_out,
        Connect(accept_new_host_keys, parallel))


def update(
    ctx: typer.Context,
    archive: Annotated[Path | None, typer.Option(help="A patched home's archive.")] = None,
    runtime_home: Annotated[str | None, typer.Option(help="A new runtime's path.")] = None,
    apps_json: Annotated[Path | None, typer.Option("--apps", help="An apps.json spec.")]
    = None,
    domain: DomainOpt = Path("domain.toml"),
    targets: Targets = "domain",
    backup_dir: Annotated[str | None, typer.Option(
        help="Node dir for the backups of the home [default: beside the home].")] = None,
    rollback: Annotated[bool, typer.Option(
        help="The archive is an older release (recorded and shown).")] = False,
    shutdown_timeout: ShutdownTimeout = None,
    retries: Retries = 2,
    retry_delay: RetryDelay = 1.0,
    delay_between_nodes: Delay = 0.0,
    auto_revert: AutoRevert = True,
    allow_downtime: AllowDowntime = False,
    pause_after: PauseAfter = None,
    health_timeout: HealthTimeout = 30.0,
    fail_on_lb_errors: FailOnLbErrors = False,
    dry_run: DryRun = False,
    json_out: JsonOpt = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """Home, runtime and applications in one workflow: each node is out of rotation once."""
    request = RolloutRequest(tuple(targets.split(",")), shutdown_timeout, retries, retry_delay,
                             delay_between_nodes, auto_revert, allow_downtime, kind="update",
                             archive=str(archive) if archive else None, backup_dir=backup_dir,
                             rollback=rollback, pause_after=pause_after,
                             health_timeout=health_timeout,
                             fail_on_lb_errors=fail_on_lb_errors, runtime_home=runtime_home,
                             apps=str(apps_json) if apps_json else None)
    _go(ctx, _domain(ctx, domain), request, dry_run, json_out,
        Connect(accept_new_host_keys, parallel))


for command, function in (("restart", restart), ("home", home), ("runtime", runtime),
                          ("apps", apps), ("update", update)):
    for group in (rollout_app, preview_app, preview_rollout):
        group.command(command)(handled(function))


def _go(ctx: typer.Context, domain: Path, request: RolloutRequest, dry_run: bool,
        json_out: bool, connect: Connect) -> None:
    runner = Runner(domain, connect=connect)
    if dry_run or _previewing(ctx):
        _show_preview(asyncio.run(runner.preview(request)), json_out)
        return
    plan = runner.prepare(request).plan
    if json_out:
        wid = asyncio.run(runner.rollout(request))
    else:
        with Progress(plan, out) as progress:
            runner.observer = progress
            wid = asyncio.run(runner.rollout(request))
    finish(domain, wid, json_out)


def _show_preview(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(report)
    else:
        _print_preview(report)
    if not report["ok"]:
        raise typer.Exit(3)


def _print_preview(r: dict[str, Any]) -> None:
    out.print(styled(("preview", "bold"), f" of a {r['kind']} rollout of "
                     f"{', '.join(r['targets'])} ({r['domain']}): nothing was changed"))
    if r["archive"]:
        a = r["archive"]
        out.print(f"  archive {a['path']}: version {a['version']}, sha256 {a['sha256'][:16]}…, "
                  f"{a['size'] / 2**20:.1f} MiB ({a['unpacked'] / 2**20:.1f} MiB unpacked)"
                  + (", a rollback" if a["rollback"] else ""))
    table = Table("node", "server", "check", "", "detail", title="preconditions",
                  title_justify="left")
    for c in r["preconditions"]:
        verdict = (("no", "red") if not c["ok"] else ("warn", "yellow") if c.get("warn")
                   else ("ok", "green"))
        table.add_row(c["node"] or "", c["server"] or "", c["name"], styled(verdict),
                      c["detail"])
    out.print(table)
    for node, lines in (r.get("runtime_changes") or {}).items():
        for c in lines:
            out.print(f"  {node}: {c['path']}:{c['line']}: {c['before'].strip()}  →  "
                      f"{c['after'].strip()}")
    plan = Table("node", "servers", "steps", title="plan", title_justify="left")
    for visit in r["plan"]:
        plan.add_row(visit["node"], ", ".join(visit["servers"]), " → ".join(visit["steps"]))
    out.print(plan)
    e = r["estimates"]
    out.print(f"estimate: {e['total_seconds']:.1f} s in all; per node "
              + ", ".join(f"{v['node']} {v['seconds']:.1f} s" for v in e["per_node"])
              + f" ({e['basis']})")
    if "disk_per_node_bytes" in e:
        out.print(f"disk per node: {e['disk_per_node_bytes'] / 2**20:.1f} MiB")
    if not r["ok"]:
        err.print(styled(("preconditions not met", "red"),
                         ": the rollout would be refused (exit 3)"))


@archive_app.command("create")
@handled
def archive_create(
    home_dir: Annotated[Path, typer.Argument(help="The patched home to archive.")],
    output: Annotated[Path, typer.Argument(metavar="OUT.tar.gz")],
    version: Annotated[str | None, typer.Option(help="Version string [default: "
                                                     "HOME_DIR/VERSION].")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make a deterministic, checksummed archive of HOME_DIR (manifest beside it)."""
    from zdt import archive

    manifest = archive.create(home_dir, output, version=version)
    if json_out:
        print_json({"archive": str(output), "manifest": str(archive.manifest_path(output)),
                    "version": manifest.version, "sha256": manifest.sha256,
                    "size": manifest.size, "files": len(manifest.files)})
    else:
        out.print(f"{output}: version {manifest.version}, {len(manifest.files)} files, "
                  f"sha256 {manifest.sha256}")


@archive_app.command("verify")
@handled
def archive_verify(
    archive_path: Annotated[Path, typer.Argument(metavar="ARCHIVE.tar.gz")],
    json_out: JsonOpt = False,
) -> None:
    """Check an archive against its manifest, member by member, as a rollout would; reads
    only (exit 2 naming the member on the first problem)."""
    from zdt import archive

    manifest = archive.verify(archive_path)
    if json_out:
        print_json({"archive": str(archive_path), "version": manifest.version,
                    "sha256": manifest.sha256, "size": manifest.size,
                    "unpacked": manifest.unpacked, "files": len(manifest.files)})
    else:
        out.print(f"{archive_path}: version {manifest.version}, {len(manifest.files)} files, "
                  f"{manifest.unpacked / 2**20:.1f} MiB unpacked, sha256 {manifest.sha256}: "
                  "sound")


@archive_app.command("distribute")
@handled
def archive_distribute(
    archive_path: Annotated[Path, typer.Argument(metavar="ARCHIVE.tar.gz")],
    domain: DomainOpt = Path("domain.toml"),
    parallel: Parallel = 8,
    accept_new_host_keys: AcceptNew = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a verified archive to every node's staging dir (skipping nodes that hold it)."""
    from zdt import adapters, staging
    from zdt import domain as domain_model

    d = domain_model.load(domain)

    async def run() -> dict[str, str]:
        transports = adapters.transports(d, Connect(accept_new_host_keys, parallel))
        try:
            return await staging.distribute(d, archive_path, transports, parallel=parallel)
        finally:
            for t in transports.values():
                await t.close()
    result = asyncio.run(run())
    if json_out:
        print_json({"archive": str(archive_path), "nodes": result})
    else:
        for node, what in result.items():
            out.print(f"{node}: {what}")

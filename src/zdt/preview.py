"""Preview: validate every input, check the preconditions on the live domain, show the plan
and estimate time, time out of rotation and disk — and change nothing.

A rollout runs the same preconditions before its first step, so a typo in a program name
on node3 or a server already down is refused (exit 3, every problem listed) before the
journal gets a workflow and before any node is touched.
"""

from __future__ import annotations

import shlex
import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zdt import capacity, nodepath
from zdt.analysis import Subject
from zdt.analysis.preflight import preflight
from zdt.domain import Server
from zdt.errors import PreconditionError, ZdtError
from zdt.report import node_visits
from zdt.steps import Context, each, nodefs, runtime
from zdt.steps.analysis import peers, settings_of
from zdt.workflow.batches import label
from zdt.workflow.journal import Journal
from zdt.workflow.plan import Plan, lb_members

if TYPE_CHECKING:
    from zdt.archive import Manifest


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    node: str | None = None
    server: str | None = None
    warn: bool = False        # passed, but the operator should know (a small backlog)

    def line(self) -> str:
        where = "".join(f"{x}: " for x in (self.node, self.server) if x)
        return f"{where}{self.detail or self.name}"


async def preconditions(ctx: Context, plan: Plan, manifest: Manifest | None = None
                        ) -> list[Check]:
    """Every precondition of the plan, passed or not, naming node and server."""
    nodes = list(dict.fromkeys(plan.nodes))
    checks = [c for found in await each(_node(ctx, n, manifest) for n in nodes) for c in found]
    targeted = [ctx.domain.server(n) for n in dict.fromkeys(x for s in plan.steps
                                                            for x in s.servers)]
    checks += [c for found in await each(_server(ctx, s) for s in targeted) for c in found]
    checks += await _others_serving(ctx, plan)
    checks += [c for found in await each(_backlogs(ctx, node, servers) for node, servers
                                         in capacity.lb_servers(ctx.domain).items()
                                         if node in ctx.transports) for c in found]
    return checks + await _analysis(ctx, plan)


async def _analysis(ctx: Context, plan: Plan) -> list[Check]:
    """The metric gate's sources answer as its first visit will ask them."""
    first = next((s for s in plan.steps if s.name == "analysis"), None)
    if first is None:
        return []
    settings = settings_of(ctx.domain)     # the first visit's servers against their peers
    compared = peers(ctx.domain, first.servers) - set(first.servers)
    subject = Subject(first.node, tuple(ctx.domain.server(n).backend_name
                                        for n in first.servers),
                      tuple(s.backend_name for s in ctx.domain.servers
                            if s.lb and s.name in compared), settings.interval)
    return [Check(c["name"], c["ok"], c["detail"])
            for c in await preflight(settings, ctx.lb, subject)]


async def require(ctx: Context, plan: Plan, manifest: Manifest | None = None) -> list[Check]:
    """Refuse (exit 3, every problem listed) unless every precondition holds; returns the
    warnings."""
    checks = await preconditions(ctx, plan, manifest)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreconditionError(
            f"{ctx.domain.source}: {len(failed)} precondition(s) not met, nothing was changed:\n"
            + "\n".join(f"  {c.line()}" for c in failed))
    return [c for c in checks if c.warn]


async def _sudo(ctx: Context, t: Any, node: str) -> list[Check]:
    """`sudo -n -l CMD…` for each command the service manager will run on the node: the
    sudoers may allow exactly those (never a shell, never `true`)."""
    privileged = getattr(ctx.services, "privileged", None)
    if privileged is None:
        return []
    commands = {tuple(argv): None for s in ctx.domain.servers_on(node) for argv in privileged(s)}
    refused = []
    for argv in commands:
        r = await t.run(["sudo", "-n", "-l", "--", *argv], check=False, timeout=30)
        if r.returncode != 0:
            refused.append(shlex.join(argv))
    if refused:
        return [Check("sudo", False, f"sudo -n refuses {'; '.join(refused[:3])}"
                      f"{' …' if len(refused) > 3 else ''}: the [services] commands need "
                      "sudo without a password (a sudoers rule for each)", node)]
    return [Check("sudo", True, f"sudo -n allows the {len(commands)} service command(s)",
                  node)]


async def _backlogs(ctx: Context, node: str, servers: list[Server]) -> list[Check]:
    """The listen backlog of each LB server on the node (the servers left in rotation
    take a burst of new connections while another node is out)."""
    floor = ctx.domain.capacity.min_backlog
    try:
        found = await capacity.backlogs(ctx.transport(node))
    except ZdtError as exc:
        return [Check("listen backlog", True, f"cannot read the listen backlogs: {exc}", node,
                      warn=True)]
    return [Check("listen backlog", True,
                  f"{found[s.port]}" if found[s.port] >= floor
                  else capacity.advice(s, found[s.port], floor), node, s.name,
                  warn=found[s.port] < floor)
            for s in servers if s.port in found]


async def _node(ctx: Context, node: str, manifest: Manifest | None) -> list[Check]:
    if not ctx.transports:
        return []
    t = ctx.transport(node)
    try:
        await t.run(["true"], timeout=30)
    except ZdtError as exc:
        return [Check("reachable", False, str(exc), node)]
    checks = [Check("reachable", True, node=node)]
    if ctx.domain.services.sudo and ctx.domain.services.kind != "supervisor":
        checks += await _sudo(ctx, t, node)
    if ctx.runtime_home is not None:
        checks += await _runtime(ctx, t, node)
    for app in (a for a in ctx.apps if node in a.nodes):
        checks += await _app(t, node, app)
    if manifest is None:
        return checks
    home = ctx.domain.domain.home
    kind = await nodefs.kind(t, home)
    checks.append(Check("home present", kind in ("dir", "link"),
                        f"{home} ({kind})" if kind in ("dir", "link") else f"{home} is {kind}",
                        node))
    checks.append(await _disk(ctx, t, node, manifest))
    if ctx.change is not None and ctx.change.backup_dir:
        checks.append(await _same_filesystem(t, node, home, ctx.change.backup_dir))
    return checks


async def _device(t: Any, path: str) -> str | None:
    """The device of a path, or of its nearest existing parent (it may not exist yet)."""
    while True:
        r = await t.run(["stat", "-L", "-c", "%d", t.path(path)], check=False, timeout=30)
        if r.returncode == 0:
            return str(r.stdout.strip())
        if path in ("/", ""):
            return None
        path = path.rsplit("/", 1)[0] or "/"


async def _same_filesystem(t: Any, node: str, home: str, backups: str,
                           what: str = "backup dir on the home's filesystem") -> Check:
    """A backup is a rename of the home: atomic only on the home's own filesystem (across
    filesystems `mv` copies then deletes, and a crash in between would split the home)."""
    parent = home.rsplit("/", 1)[0] or "/"
    same = await _device(t, parent) == await _device(t, backups)
    return Check(what, same,
                 backups if same else f"{backups} is on another filesystem than {parent}: "
                 "choose a dir on the same one", node)


async def _app(t: Any, node: str, app: Any) -> list[Check]:
    """The deployed directory is there, the backup location is free, and (nostage,
    external_stage) the patched directory is already on the node."""
    kinds = {p: await nodefs.kind(t, p) for p in (app.location, app.backup_location)}
    checks = [Check(f"application {app.name} deployed", kinds[app.location] == "dir",
                    f"application {app.name}: deployed at {app.location}, which is "
                    f"{kinds[app.location]}", node),
              Check(f"application {app.name} backup location free",
                    kinds[app.backup_location] == "missing",
                    f"application {app.name}: backup location {app.backup_location} is "
                    f"{kinds[app.backup_location]} (it must not exist yet)", node)]
    if app.mode != "stage":
        patched = await nodefs.kind(t, app.patched_location)
        checks.append(Check(f"application {app.name} patched version placed", patched == "dir",
                            f"{app.patched_location} is {patched} ({app.mode}: it must be on "
                            "every node before the rollout)", node))
    # the moves are renames, atomic only within one filesystem
    others = [app.backup_location] + ([app.patched_location] if app.mode != "stage" else [])
    for other in others:
        checks.append(await _same_filesystem(t, node, app.location, other,
                                             f"application {app.name}: {other} beside it"))
    return checks


async def _runtime(ctx: Context, t: Any, node: str) -> list[Check]:
    assert ctx.runtime_home is not None
    kind = await nodefs.kind(t, ctx.runtime_home)
    checks = [Check("runtime home present", kind in ("dir", "link"),
                    ctx.runtime_home if kind in ("dir", "link") else
                    f"{ctx.runtime_home} is {kind}: install it at the same path on every node",
                    node)]
    try:
        found = await runtime.scripts(ctx, t)
        if ctx.change is not None:     # a combined update rewrites the new home's scripts
            found = runtime.archived_scripts(ctx, ctx.change.archive) + [
                s for s in found if not nodepath.inside(s.path, ctx.domain.domain.home)]
        old = runtime.current(ctx, found, node)
        files = {c.path for c in runtime.changes(found, old, ctx.runtime_home)}
        globs = ", ".join(runtime.globs(ctx))
        # nothing to rewrite would drain, stop and restart the node for nothing
        checks.append(Check("scripts to rewrite", bool(files),
                            f"{len(files)} file(s) name {old}" if files else
                            f"the scripts already name {old}, the runtime asked for"
                            if old.rstrip("/") == ctx.runtime_home.rstrip("/") else
                            f"no file selected by [runtime] scripts ({globs}) names {old}: "
                            "nothing to rewrite; check the globs and the runtime in use",
                            node))
        unmatched = runtime.unmatched(ctx, found)
        if unmatched:
            checks.append(Check("runtime globs", True, f"{', '.join(unmatched)} select(s) no "
                                "text file on this node", node, warn=True))
    except ZdtError as exc:
        checks.append(Check("scripts agree", False, str(exc), node))
    return checks


async def runtime_changes(ctx: Context, plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """Per node, every line a runtime rollout would change: file, line, before, after."""
    assert ctx.runtime_home is not None
    out: dict[str, list[dict[str, Any]]] = {}
    for node in dict.fromkeys(plan.nodes):
        t = ctx.transport(node)
        found = await runtime.scripts(ctx, t)
        try:
            old = runtime.current(ctx, found, node)
        except ZdtError:
            continue
        out[node] = [asdict(c) for c in runtime.changes(found, old, ctx.runtime_home)]
    return out


def disk_needed(ctx: Context, manifest: Manifest) -> int:
    """Bytes a node needs: the staged archive and the release, plus a copy of the home
    when the backup goes to another directory (a rename beside the home costs nothing)."""
    backup_copy = manifest.unpacked if ctx.change and ctx.change.backup_dir else 0
    return manifest.size + manifest.unpacked + backup_copy


async def _disk(ctx: Context, t: Any, node: str, manifest: Manifest) -> Check:
    parent = ctx.domain.domain.home.rsplit("/", 1)[0] or "/"
    r = await t.run(["df", "-Pk", t.path(parent)], check=False, timeout=30)
    try:
        free = int(r.stdout.splitlines()[1].split()[3]) * 1024
    except (IndexError, ValueError):
        return Check("free disk", False, f"cannot read `df` for {parent}: {r.stderr.strip()}",
                     node)
    need = disk_needed(ctx, manifest)
    return Check("free disk", free >= need,
                 f"{free / 2**20:.0f} MiB free under {parent}, {need / 2**20:.1f} MiB needed",
                 node)


async def _server(ctx: Context, server: Server) -> list[Check]:
    def check(name: str, ok: bool, detail: str) -> Check:
        return Check(name, ok, detail, server.node, server.name)

    checks = []
    try:
        st = await ctx.services.state(server)
        checks.append(check("running", st.running,
                            "" if st.running else f"not running ({st.state}); start it first"))
    except ZdtError as exc:
        checks.append(check("running", False, str(exc)))
    if server.lb:
        try:
            lb = await ctx.lb.state(server)
            checks.append(check("in rotation", lb.in_rotation, "" if lb.in_rotation else
                                f"not in rotation in the load balancer ({lb.admin}, "
                                f"{lb.status})"))
        except ZdtError as exc:
            checks.append(check("in rotation", False, str(exc)))
    return checks


async def _others_serving(ctx: Context, plan: Plan) -> list[Check]:
    """While a batch is out, some other server must be in rotation to take its traffic,
    and every cluster must keep what --min-in-service asks of the servers in rotation now
    (a server already out, for maintenance, counts as out)."""
    serving: set[str] = set()
    for server in (s for s in ctx.domain.servers if s.lb):
        try:
            if (await ctx.lb.state(server)).in_rotation:
                serving.add(server.name)
        except ZdtError:
            continue
    checks = []
    members = lb_members(ctx.domain)
    for number, groups in enumerate(plan.batches or [(g,) for g in range(len(plan.nodes))],
                                    start=1):
        out = {x for g in groups for s in plan.for_group(g) if s.name == "drain"
               for x in s.servers}
        if not out:
            continue
        where = ", ".join(dict.fromkeys(plan.nodes[g] for g in groups))
        ok = bool(serving - out)
        checks.append(Check("others serving while out", ok, "" if ok else
                            "no other server of the load balancer is in rotation to take "
                            "its traffic", where))
        for budget in plan.budgets:
            mine = members.get(budget.cluster, set())
            left = len((mine & serving) - out)
            if plan.guarded and mine & out and left < budget.required:
                checks.append(Check(
                    "capacity while out", False, f"batch {number}: {label(budget.cluster)} "
                    f"would have {left} server(s) in rotation (some are out already), fewer "
                    f"than the {budget.required} --min-in-service keeps; put them back in "
                    "rotation first, or use a smaller --batch", where))
    return checks


def estimate(plan: Plan, journal: Journal | None, options: dict[str, float]) -> dict[str, Any]:
    """Time per node visit and in all. From the journal's history when it has one: the
    median and the 90th percentile of the completed node visits of earlier workflows of
    the same kind and domain (a batch's visits run side by side: a batch takes as long as
    one visit); else an upper bound from the timeouts. `learned` says which."""
    visits = len(plan.nodes)
    batches = len(plan.batches) or visits
    history = _history(plan.kind, journal)
    delay = options.get("delay_between_nodes", 0.0) * max(0, batches - 1)
    if history:
        walls = [v["wall"] for v in history]
        wall, high = statistics.median(walls), _p90(walls)
        outs = [v["out_of_rotation"] for v in history if v["out_of_rotation"] is not None]
        out = statistics.median(outs) if outs else None
        basis = (f"median (and 90th percentile) of {len(history)} completed node visit(s) "
                 f"of earlier {plan.kind} workflows")
    else:
        shutdown = options.get("shutdown_timeout", 30.0)
        out = 2 * shutdown + 3 * 30.0          # drain + stop, then start, health, ready
        wall = high = out + 60.0 + options.get("analysis_window", 0.0)   # extract, hooks,
        #                                        the metric gate: bounded by timeouts
        basis = "upper bound from the timeouts (no earlier run in the journal)"
    return {"basis": basis, "learned": bool(history),
            "total_seconds": round(wall * batches + delay, 3),
            "total_p90_seconds": round(high * batches + delay, 3), "batches": batches,
            "per_node": [{"node": n, "seconds": round(wall, 3),
                          "out_of_rotation": None if out is None else round(out, 3)}
                         for n in plan.nodes]}


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _history(kind: str, journal: Journal | None, runs: int = 10) -> list[dict[str, Any]]:
    if journal is None:
        return []
    earlier = [w for w in journal.history() if w.kind == kind][:runs]
    return [v for w in earlier for v in node_visits(journal.steps(w.id), journal.events(w.id))
            if v["completed"]]


def as_dict(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]

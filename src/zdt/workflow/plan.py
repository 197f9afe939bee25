"""Request → ordered steps per node. Pure: no I/O, no clock; everything here is data.

Order (DESIGN.md, "Workflow semantics" 1 and 2): the admin server first, on its own; then
each node that holds a targeted server, in the domain's node order, one node at a time or
in batches of node visits run side by side (`workflow/batches.py`: `--batch`, and the
capacity guard `--min-in-service`). The `before-update` and `after-update` hooks are
batches of their own, so no node of a batch is out before the first or after the last.
The steps of a visit are the workflow kind's (workflow/kinds/): a restart's are drain →
stop → start → health → ready; a home rollout adds extract (before the drain, so the node
is out of rotation only for the switch), backup and switch. Each step covers that visit's
targeted servers (an admin server, not behind the LB, has no drain and no ready). Hooks
are steps too, so a failing hook fails like any step. With a metric gate (`analysis`),
each visit's ready is followed by an `analysis` step that judges its servers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from zdt.domain import Domain, Server
from zdt.errors import ConfigError, PreconditionError
from zdt.steps import StepSpec
from zdt.workflow import batches as batching

LB_STEPS = frozenset({"drain", "ready", "analysis"})   # steps on the servers behind the LB


@dataclass(frozen=True)
class Shape:
    """What a plan takes from a workflow kind: the steps of one node visit, and whether the
    kind's change reaches every server of a node (a change to the node's home does: a visit
    then drains and stops them all, targeted or not, since an untargeted one would run on,
    unchecked, from a home swapped under it)."""

    kind: str
    visit_steps: tuple[str, ...]
    node_wide: bool = False
    omit: frozenset[str] = frozenset()     # steps of the visit this request leaves out


@dataclass(frozen=True)
class Plan:
    kind: str
    targets: tuple[str, ...]
    steps: tuple[StepSpec, ...]
    nodes: tuple[str, ...] = field(default=())   # node visits, in order (admin's node may recur)
    batches: tuple[tuple[int, ...], ...] = ()    # the node visits (groups) of each batch
    budgets: tuple[batching.Budget, ...] = ()    # the capacity guard's arithmetic
    guarded: bool = True                         # False: the operator allowed downtime

    def for_group(self, group: int) -> list[StepSpec]:
        return [s for s in self.steps if s.group == group]


def resolve_targets(domain: Domain, targets: Iterable[str]) -> list[Server]:
    """Targets ("domain" | "admin" | cluster and server names) → servers, domain order."""
    names = [t.strip() for t in targets if t.strip()]
    if not names:
        raise ConfigError("--targets: give 'domain', 'admin', or cluster and server names")
    clusters = {c.name: c for c in domain.clusters}
    servers = {s.name for s in domain.servers}
    chosen: set[str] = set()
    for name in names:
        if name == "domain":
            chosen.update(servers)
        elif name == "admin":
            if domain.domain.admin is None:
                raise ConfigError(f"--targets: 'admin', but {domain.source} names no admin server")
            chosen.add(domain.domain.admin)
        elif name in clusters:
            chosen.update(clusters[name].servers)
        elif name in servers:
            chosen.add(name)
        else:
            known = ", ".join(["domain", "admin", *sorted(clusters), *sorted(servers)])
            raise ConfigError(f"--targets: unknown target {name!r} (known: {known})")
    return [s for s in domain.servers if s.name in chosen]


def check_spread(domain: Domain, servers: list[Server],
                 groups: list[tuple[str, list[Server]]], allow_downtime: bool) -> None:
    """Refuse what cannot be done without downtime (DESIGN.md point 8): a cluster with a
    targeted member whose servers all live on one node, and a node visit that would take
    every server of the load balancer out of rotation at once."""
    if allow_downtime:
        return
    targeted = {s.name for s in servers}
    for cluster in domain.clusters:
        if not targeted & set(cluster.servers):
            continue
        nodes = {domain.server(s).node for s in cluster.servers}
        if len(nodes) < 2:
            raise PreconditionError(
                f"cluster {cluster.name!r} lives on the single node {nodes.pop()!r}: it cannot "
                "be updated without downtime; spread it over two nodes or pass --allow-downtime")
    for part in sorted({s.partition for s in servers if s.partition}):
        nodes = {s.node for s in domain.servers if s.partition == part}
        if len(nodes) < 2:
            raise PreconditionError(
                f"partition {part!r} lives on the single node {nodes.pop()!r}: restarting it "
                "cannot be done without downtime; pass --allow-downtime")
    behind_lb = {s.name for s in domain.servers if s.lb}
    for node, group in groups:
        out = {s.name for s in group if s.lb}
        if out and not behind_lb - out:
            raise PreconditionError(
                f"while {node} is out of rotation no other server of the load balancer would "
                "take traffic: add servers on other nodes or pass --allow-downtime")


def partition_servers(domain: Domain, servers: list[Server], names: Iterable[str]
                      ) -> list[Server]:
    """The partitions named, of the targeted servers: what a partition restart touches."""
    wanted = {n.strip() for n in names if n.strip()}
    targeted = {s.name for s in servers}
    chosen = [s for s in domain.servers
              if s.partition in wanted and s.partition_of in targeted]
    missing = wanted - {s.partition for s in chosen}
    if missing:
        known = sorted({s.partition for s in domain.servers if s.partition} - {None})
        raise ConfigError(f"--partitions: no partition {', '.join(sorted(missing))} on the "
                          f"targeted servers (known: {', '.join(map(str, known)) or 'none'})")
    return chosen


def build(shape: Shape, domain: Domain, targets: Iterable[str], *,
          allow_downtime: bool = False, partitions: Iterable[str] = (), batch: str = "1",
          min_in_service: str = "50%", pause_after: int | None = None,
          analysis: bool = False) -> Plan:
    """Targets → the steps of every node visit, in order (see the module docstring)."""
    targets = tuple(t.strip() for t in targets if t.strip())
    servers = resolve_targets(domain, targets)
    partitions = tuple(partitions)
    if partitions:
        servers = partition_servers(domain, servers, partitions)
    if shape.node_wide:
        servers = _whole_nodes(domain, servers)
    groups = _node_groups(domain, servers, shape.node_wide)
    check_spread(domain, servers, groups, allow_downtime)
    minimum = batching.parse_minimum(min_in_service)
    visits = _visits(domain, groups)
    batched = batching.form(visits, batching.parse_batch(batch), _nodes_of(domain),
                            pause_after)
    budgets = batching.guard(batched, {v.group: v for v in visits}, _in_lb(domain), minimum,
                             [node for node, _ in groups], refuse=not allow_downtime)
    of_group = {g: number for number, b in enumerate(batched) for g in b}
    first = 1 if domain.hooks.at("before-update") else 0   # the hook: a batch of its own
    steps: list[StepSpec] = []
    for number, (node, group) in enumerate(groups):
        names = list(shape.visit_steps)
        if analysis and "ready" in names:     # the metric gate judges the visit's servers
            names.insert(names.index("ready") + 1, "analysis")
        if number == 0:
            names.insert(0, "hook:before-update")
        if number == len(groups) - 1:
            names.append("hook:after-update")
        in_lb = tuple(s.name for s in group if s.lb)
        every = tuple(s.name for s in group)
        for name in names:
            if name in shape.omit or (name.startswith("hook:") and not domain.hooks.at(name[5:])):
                continue
            members = in_lb if name in LB_STEPS else every
            where = {"hook:before-update": 0,
                     "hook:after-update": first + len(batched)}.get(name, first + of_group[number])
            if members:
                steps.append(StepSpec(len(steps), number, node, name, members, where))
    return Plan(shape.kind, targets, tuple(steps), tuple(node for node, _ in groups),
                tuple(tuple(b) for b in batched), budgets, not allow_downtime)


def _clusters_of(domain: Domain) -> dict[str, list[str]]:
    """Each server's clusters ("" for a server in none)."""
    out: dict[str, list[str]] = {s.name: [] for s in domain.servers}
    for cluster in domain.clusters:
        for name in cluster.servers:
            out[name].append(cluster.name)
    return {name: found or [""] for name, found in out.items()}


def _visits(domain: Domain, groups: list[tuple[str, list[Server]]]) -> list[batching.Visit]:
    clusters = _clusters_of(domain)
    visits = []
    for number, (node, group) in enumerate(groups):
        out: dict[str, int] = {}
        for server in (s for s in group if s.lb):
            for c in clusters[server.name]:
                out[c] = out.get(c, 0) + 1
        visits.append(batching.Visit(
            number, node, frozenset(c for s in group for c in clusters[s.name]), out,
            admin=domain.domain.admin in {s.name for s in group}))
    return visits


def _nodes_of(domain: Domain) -> dict[str, int]:
    """Each cluster's count of nodes (the base of `--batch P%`)."""
    clusters = _clusters_of(domain)
    nodes: dict[str, set[str]] = {}
    for server in domain.servers:
        for c in clusters[server.name]:
            nodes.setdefault(c, set()).add(server.node)
    return {c: len(n) for c, n in nodes.items()}


def _in_lb(domain: Domain) -> dict[str, int]:
    """Each cluster's count of servers behind the load balancer."""
    return {c: len(names) for c, names in lb_members(domain).items()}


def lb_members(domain: Domain) -> dict[str, set[str]]:
    """Each cluster's servers behind the load balancer ("": the servers in no cluster)."""
    clusters = _clusters_of(domain)
    members: dict[str, set[str]] = {}
    for server in (s for s in domain.servers if s.lb):
        for c in clusters[server.name]:
            members.setdefault(c, set()).add(server.name)
    return members


def _whole_nodes(domain: Domain, servers: list[Server]) -> list[Server]:
    """Every server of each node that holds a target: they all run from the node's home."""
    nodes = {s.node for s in servers}
    return [s for s in domain.servers if s.node in nodes]


def _node_groups(domain: Domain, servers: list[Server], node_wide: bool = False
                 ) -> list[tuple[str, list[Server]]]:
    """The admin server first, then the other servers grouped by node, in node order. For
    a node-wide change the admin's whole node goes first, as one visit."""
    admin = domain.domain.admin
    groups: list[tuple[str, list[Server]]] = []
    if node_wide and admin in {s.name for s in servers}:
        home_of_admin = domain.server(admin).node
        groups.append((home_of_admin, [s for s in servers if s.node == home_of_admin]))
        servers = [s for s in servers if s.node != home_of_admin]
    first = [s for s in servers if s.name == admin]
    if first:
        groups.append((first[0].node, first))
    rest = [s for s in servers if s.name != admin]
    for node in domain.nodes:
        mine = [s for s in rest if s.node == node.name]
        if mine:
            groups.append((node.name, mine))
    return groups

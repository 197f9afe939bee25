"""The checks of a domain file across its sections: names known and unique, ports, nodes
that are one machine, partitions, process names, hosts of remote servers. Each problem is
(field path, reason); `domain.parse` turns them into one error naming file and line."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from zdt import nodepath
from zdt.errors import ConfigError

if TYPE_CHECKING:
    from zdt.domain.model import Domain


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address in any spelling (127.1, ::ffff:127.0.0.1, [::1]); None for a name."""
    text = host.strip("[]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.inet_aton(text))   # 127.1, 0x7f.1
        except OSError:
            return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _loopback(host: str) -> bool:
    """This machine: a loopback or unspecified address, or localhost by any case."""
    address = _address(host)
    if address is not None:
        return address.is_loopback or address.is_unspecified
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _host_key(host: str) -> str:
    address = _address(host)
    return str(address) if address is not None else host.lower().rstrip(".")


def cross_references(d: Domain) -> Iterable[tuple[str, str]]:
    yield from _duplicates("nodes", [n.name for n in d.nodes])
    yield from _duplicates("servers", [s.name for s in d.servers])
    yield from _duplicates("clusters", [c.name for c in d.clusters])
    yield from _duplicates("servers", [s.backend_name for s in d.servers if s.lb], "lb_name")
    nodes = {n.name for n in d.nodes}
    servers = {s.name for s in d.servers}
    local = {n.name for n in d.nodes if n.address == "local"}
    remote = {n.name: n.ssh.host for n in d.nodes if n.ssh is not None}
    endpoints: dict[tuple[str, str, int], str] = {}
    for i, s in enumerate(d.servers):
        if s.node not in nodes:
            yield f"servers[{i}].node", f"unknown node {s.node!r} (known: {_names(nodes)})"
        elif s.node in remote and _loopback(s.host) and not _loopback(remote[s.node]) \
                and s.health_url is None:
            yield (f"servers[{i}].host",
                   f"{s.host} is this machine, not node {s.node!r}: its health would be probed "
                   "here (a false 'healthy'); leave host out (the node's ssh:// host is the "
                   "default), give the address zdt reaches it at, or set health_url explicitly")
        # local nodes share this machine's addresses: a port is taken once across them all
        key = ("local" if s.node in local else s.node, s.host, s.port)
        if key in endpoints:
            yield f"servers[{i}].port", f"port {s.port} is already used by {endpoints[key]!r}"
        endpoints.setdefault(key, s.name)
    for i, c in enumerate(d.clusters):
        for j, member in enumerate(c.servers):
            if member not in servers:
                yield (f"clusters[{i}].servers[{j}]",
                       f"unknown server {member!r} (known: {_names(servers)})")
        if c.name in servers:
            yield (f"clusters[{i}].name",
                   f"{c.name!r} is also a server name; targets would be ambiguous")
    yield from _duplicates("applications", [a.name for a in d.applications])
    many = isinstance(d.lb, tuple)
    seen: dict[str, int] = {}
    for i, lb in enumerate(d.lbs):
        node = getattr(lb, "node", None)      # an LB reached through a node's transport
        if node is not None and node not in nodes:
            yield (f"lb[{i}].node" if many else "lb.node",
                   f"unknown node {node!r} (known: {_names(nodes)})")
        same = lb.model_dump_json()
        if same in seen:
            yield (f"lb[{i}]", f"the same load balancer as lb[{seen[same]}]: each drain "
                   "would be sent, and each request counted, twice")
        seen.setdefault(same, i)
    for i, a in enumerate(d.applications):
        for j, member in enumerate(a.servers):
            if member not in servers:
                yield (f"applications[{i}].servers[{j}]",
                       f"unknown server {member!r} (known: {_names(servers)})")
    yield from _partitions(d)
    yield from _programs(d)
    yield from _same_machine(d)
    yield from _overlaps(d)
    admin = d.domain.admin
    if admin is not None:
        if admin not in servers:
            yield "domain.admin", f"unknown server {admin!r} (known: {_names(servers)})"
        for i, c in enumerate(d.clusters):
            if admin in c.servers:
                yield "domain.admin", f"the admin server {admin!r} is also in clusters[{i}]"


def _same_machine(d: Domain) -> Iterable[tuple[str, str]]:
    """Two nodes that are one machine (one local root; one ssh host and port) would have
    one home moved twice, and each node's step would undo the other's."""
    seen: dict[tuple[str, ...], str] = {}
    for i, n in enumerate(d.nodes):
        if n.ssh is not None:
            key: tuple[str, ...] = ("ssh", _host_key(n.ssh.host), str(n.ssh.port or 22))
            field, what = "address", f"{n.ssh.host}:{n.ssh.port or 22}"
        else:
            root = os.path.normpath(n.root) if n.root else "/"
            key, field, what = ("local", root), "root", f"root {root}"
        if key in seen:
            yield (f"nodes[{i}].{field}",
                   f"{what} is node {seen[key]!r} already: two nodes would be one machine "
                   "(give each local node a root of its own)")
        seen.setdefault(key, n.name)


def _overlaps(d: Domain) -> Iterable[tuple[str, str]]:
    """Directories a rollout moves whole must not lie inside one another: a staging dir
    in the home, an application inside the home or inside another application."""
    home = d.domain.home
    if d.domain.staging_dir and nodepath.overlap(d.domain.staging_dir, home):
        yield ("domain.staging_dir", f"{d.domain.staging_dir} and the home {home} lie inside "
               "one another; a home rollout would replace the staged archives")
    for i, a in enumerate(d.applications):
        if nodepath.overlap(a.location, home):
            yield (f"applications[{i}].location", f"{a.location} and the home {home} lie "
                   "inside one another; a home rollout would replace the application")
        for j, b in enumerate(d.applications[:i]):
            if nodepath.overlap(a.location, b.location):
                yield (f"applications[{i}].location", f"{a.location} and {b.name}'s "
                       f"{b.location} (applications[{j}]) lie inside one another")


def _partitions(d: Domain) -> Iterable[tuple[str, str]]:
    by_name = {s.name: s for s in d.servers}
    for i, s in enumerate(d.servers):
        if (s.partition_of is None) != (s.partition is None):
            yield (f"servers[{i}].partition",
                   "give both partition_of (the server) and partition (its name), or neither")
            continue
        if s.partition_of is None:
            continue
        parent = by_name.get(s.partition_of)
        if parent is None or parent.node != s.node or parent.partition_of is not None:
            yield (f"servers[{i}].partition_of",
                   f"{s.partition_of!r} is not a server on {s.node!r} (partitions do not nest)")
        elif parent.partitions and s.partition not in parent.partitions:
            yield (f"servers[{i}].partition",
                   f"{s.partition!r} is not one of {parent.name}'s partitions "
                   f"({', '.join(parent.partitions)})")


def _programs(d: Domain) -> Iterable[tuple[str, str]]:
    """Two servers of a node with one process name would stop each other."""
    seen: dict[tuple[str, str], str] = {}
    for i, s in enumerate(d.servers):
        try:
            name = s.program or d.services.process_name(s.name, s.node)
        except ConfigError:
            continue                       # reported by the field's validator
        if name is None:
            continue
        if (s.node, name) in seen:
            yield (f"servers[{i}].program",
                   f"{name!r} on {s.node} is already the process of {seen[(s.node, name)]!r}")
        seen.setdefault((s.node, name), s.name)
    pairs: dict[tuple[str, str], str] = {}
    for i, s in enumerate(d.servers):
        if s.partition_of and s.partition:
            key = (s.partition_of, s.partition)
            if key in pairs:
                yield (f"servers[{i}].partition",
                       f"{s.partition_of} has partition {s.partition!r} twice "
                       f"(also {pairs[key]!r})")
            pairs.setdefault(key, s.name)


def _duplicates(table: str, names: list[str], field: str = "name") -> Iterable[tuple[str, str]]:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            yield (f"{table}[{i}].{field}",
                   f"duplicate {field} {name!r} (first at {table}[{seen[name]}])")
        seen.setdefault(name, i)


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "none"

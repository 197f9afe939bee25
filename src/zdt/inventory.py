"""The domain as it is now: every node's home, every server's process as its manager
reports it and its entry as the load balancer sees it. Read only; each reading that fails
is reported in place (as `error`), never as a guess.
"""

from __future__ import annotations

import posixpath
from typing import Any

from zdt import procfs, stale
from zdt.adapters import Adapters
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.errors import ZdtError
from zdt.steps import each, nodefs

VERSION_FILE = "VERSION"
MAX_VERSION = 200


async def read(domain: Domain, adapters: Adapters) -> dict[str, Any]:
    """Nodes (with their home), clusters and servers (with their live state)."""
    nodes = await each(_node(domain, n.name, adapters.transports[n.name]) for n in domain.nodes)
    servers = await each(_server(s, adapters) for s in domain.servers)
    _stale(domain, servers)
    return {
        "name": domain.domain.name, "source": domain.source, "home": domain.domain.home,
        "admin": domain.domain.admin, "lb": " + ".join(lb.kind for lb in domain.lbs),
        "services": domain.services.kind,
        "nodes": nodes,
        "clusters": [{"name": c.name, "servers": list(c.servers)} for c in domain.clusters],
        "servers": servers,
    }


async def _node(domain: Domain, name: str, t: Transport) -> dict[str, Any]:
    node = domain.node(name)
    out: dict[str, Any] = {"name": name, "address": node.address}
    try:
        out["home"] = await home_of(t, domain.domain.home)
    except ZdtError as exc:
        out["error"] = str(exc)
    return out


async def home_of(t: Transport, home: str) -> dict[str, Any]:
    """What the node's home is: a directory or a link (to which release), and its version:
    the one zdt's release marker names, else the first line of the home's VERSION file."""
    kind = await nodefs.kind(t, home)
    out: dict[str, Any] = {"path": home, "kind": kind, "version": None}
    if kind == "link":
        out["target"] = await nodefs.readlink(t, home)
    if kind not in ("dir", "link"):
        return out
    version = await nodefs.marker_version(t, home)
    if version is None:
        r = await t.run(["head", "-c", str(MAX_VERSION),
                         t.path(posixpath.join(home, VERSION_FILE))], check=False, timeout=30)
        text = r.stdout.strip().splitlines()
        version = text[0] if r.returncode == 0 and text else None
    out["version"] = version
    return out


def _stale(domain: Domain, servers: list[dict[str, Any]]) -> None:
    """Each server on a node of this machine (a local node): its processes that still use
    files deleted or replaced since they loaded them (`zdt stale`). Servers on ssh:// nodes
    say None: not known from here. One reading of /proc and one scan for them all."""
    owner: dict[int, dict[str, Any]] = {}
    stats = procfs.live()
    for s in servers:
        pid = s["process"].get("pid")
        s["stale"] = None if domain.node(s["node"]).ssh is not None or not pid else []
        if s["stale"] is not None:
            owner.update(dict.fromkeys([pid, *procfs.descendants({pid}, stats)], s))
    for p in stale.scan(pids=owner).processes:
        owner[p.pid]["stale"].append({"pid": p.pid, "command": p.command,
                                      "files": [f.path for f in p.files]})


async def _server(server: Server, adapters: Adapters) -> dict[str, Any]:
    out: dict[str, Any] = {"name": server.name, "node": server.node, "port": server.port,
                           "lb": server.lb, "partition": server.partition,
                           "partition_of": server.partition_of}
    try:
        st = await adapters.services.state(server)
        out["process"] = {"state": st.state, "pid": st.pid, "running": st.running}
    except ZdtError as exc:
        out["process"] = {"error": str(exc)}
    if server.lb:
        try:
            lb = await adapters.lb.state(server)
            out["balancer"] = {"admin": lb.admin, "status": lb.status,
                               "sessions": lb.sessions, "queued": lb.queued, "up": lb.up}
        except ZdtError as exc:
            out["balancer"] = {"error": str(exc)}
    return out

"""Plans of a kind's plain request, for tests of the plan and the engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from zdt.domain import Domain
from zdt.lab import simulated
from zdt.workflow import kinds, plan
from zdt.workflow.request import RolloutRequest


def build(kind: str, domain: Domain, targets: Iterable[str], **options: Any) -> plan.Plan:
    targets = tuple(targets)
    shape = kinds.get(kind).shape(RolloutRequest.of(kind, targets))
    return plan.build(shape, domain, targets, **options)


def fleet(nodes: int | list[int], *, admin: bool = False, clusters: dict[str, list[str]]
          | None = None, hooks: dict[str, str] | None = None) -> str:
    """A domain.toml of `nodes` nodes (a list: servers per node) named node1…, servers
    n1s1…, in one cluster `web` unless `clusters` says otherwise (cluster → servers)."""
    per = [1] * nodes if isinstance(nodes, int) else nodes
    lines = ['[domain]', 'name = "fleet"', 'home = "/srv/app/home"', 'state_dir = "state"']
    if admin:
        lines.append('admin = "admin"')
    lines += ['[services]', 'kind = "supervisor"', '[lb]', 'kind = "haproxy"',
              'socket = "haproxy/admin.sock"']
    if hooks:
        lines += ["[hooks]", *(f'{k} = "{v}"' for k, v in hooks.items())]
    servers: list[str] = []
    for i in range(1, len(per) + 1):
        lines += ["[[nodes]]", f'name = "node{i}"', f'root = "nodes/node{i}"']
    if admin:
        lines += ["[[servers]]", 'name = "admin"', 'node = "node1"', "port = 7001", "lb = false"]
    for i, count in enumerate(per, start=1):
        for j in range(1, count + 1):
            servers.append(f"n{i}s{j}")
            lines += ["[[servers]]", f'name = "n{i}s{j}"', f'node = "node{i}"',
                      f"port = {8000 + 10 * i + j}"]
    for name, members in (clusters or {"web": servers}).items():
        lines += ["[[clusters]]", f'name = "{name}"',
                  "servers = [" + ", ".join(f'"{m}"' for m in members) + "]"]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def listening_fleet(d: Path, nodes: int) -> AsyncIterator[Path]:
    """A domain.toml of `fleet(nodes)` in d whose servers' ports are /health listeners of
    this process (for zdt.lab.simulated's adapters), for the length of the with-block."""
    servers, ports = await simulated.listeners(nodes)
    text = fleet(nodes)
    for i, port in enumerate(ports, start=1):
        text = text.replace(f"port = {8000 + 10 * i + 1}\n", f"port = {port}\n")
    path = d / "domain.toml"
    path.write_text(text)
    try:
        yield path
    finally:
        for s in servers:
            s.close()

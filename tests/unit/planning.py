"""Plans of a kind's plain request, for tests of the plan and the engine."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zdt.domain import Domain
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

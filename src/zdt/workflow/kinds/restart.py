"""A rolling restart: every targeted server (or only some of its partitions) restarted,
one node at a time, behind the load balancer. Nothing changes on the nodes.

With `--stale`, only the targeted servers whose processes still run code from files
deleted or replaced since they started (`zdt stale -d`: an `apt upgrade openssl` under
them): the nodes are scanned when the request is planned, the request's targets become
exactly those servers, and what was found is shown by preview and journaled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zdt import stale_fleet
from zdt.errors import NothingToDo, PreconditionError
from zdt.steps import servers
from zdt.terminal import clean
from zdt.workflow.kinds import Field, Kind, Note, register
from zdt.workflow.plan import resolve_targets

if TYPE_CHECKING:
    from zdt.adapters import Adapters
    from zdt.domain import Domain
    from zdt.workflow.request import RolloutRequest

HOOKED = ("hook:each-node", "drain", "stop", "hook:offline-before-update",
          "hook:offline-after-update", "start", "health", "hook:after-server-start", "ready")


class Restart(Kind):
    name = "restart"
    order = 0
    help = "Restart every targeted server, one node at a time, behind the load balancer."
    fields = (Field("partitions", "Restart only these partitions of the targeted servers, "
                    "comma-separated.", type="list"),
              Field("stale", "Restart only the targeted servers whose processes run code "
                    "from files deleted or replaced since they started (see `zdt stale "
                    "-d`).", type="bool", default=False))
    visit_steps = HOOKED
    steps = servers.RESTART

    def narrows(self, request: RolloutRequest) -> bool:
        return bool(request.get("stale"))

    async def narrow(self, request: RolloutRequest, domain: Domain, adapters: Adapters
                     ) -> tuple[RolloutRequest, tuple[Note, ...]]:
        targeted = resolve_targets(domain, request.targets)
        found = await stale_fleet.scan(domain, adapters, targeted)
        blind = stale_fleet.blind(found)
        if blind:
            raise PreconditionError("--stale: cannot tell which servers run stale code: "
                                    + "; ".join(blind) + "; the scan needs python3 (3.10 "
                                    "or later) on each node and the right to read the "
                                    "servers' /proc entries (root, or the servers' user)")
        if not found["stale"]:
            raise NothingToDo(f"nothing to restart: none of the {len(targeted)} targeted "
                              "server(s) runs code from a deleted or replaced file")
        rows = [r for r in found["servers"] if r["stale"]]
        return replace(request, targets=tuple(found["stale"])), (Note(
            f"--stale: restarting {', '.join(found['stale'])}: " + "; ".join(
                f"{r['server']} runs {_files(r)}" for r in rows),
            {"about": "stale", "servers": rows}),)


def _files(row: dict[str, Any]) -> str:
    """What a server runs that is stale, on one line (paths come from the node: cleaned)."""
    files = {f["path"]: f for p in row["stale"] for f in p["files"]}
    return ", ".join(f"{f['why']} {clean(path, lines=False)}" + (
        f" ({clean(f['package'], lines=False)})" if f.get("package") else "")
        for path, f in sorted(files.items()))


register(Restart())

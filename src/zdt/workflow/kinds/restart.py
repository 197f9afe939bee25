"""A rolling restart: every targeted server (or only some of its partitions) restarted,
one node at a time, behind the load balancer. Nothing changes on the nodes."""

from __future__ import annotations

from zdt.steps import servers
from zdt.workflow.kinds import Field, Kind, register

HOOKED = ("hook:each-node", "drain", "stop", "hook:offline-before-update",
          "hook:offline-after-update", "start", "health", "hook:after-server-start", "ready")


class Restart(Kind):
    name = "restart"
    order = 0
    help = "Restart every targeted server, one node at a time, behind the load balancer."
    fields = (Field("partitions", "Restart only these partitions of the targeted servers, "
                    "comma-separated.", type="list"),)
    visit_steps = HOOKED
    steps = servers.RESTART


register(Restart())

"""A rolling restart: every targeted server (or only some of its partitions) restarted,
one node at a time, behind the load balancer. Nothing changes on the nodes."""

from __future__ import annotations

from zdt.errors import ConfigError
from zdt.steps import servers
from zdt.workflow.kinds import Field, Kind, register
from zdt.workflow.request import RolloutRequest

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

    def validate(self, request: RolloutRequest) -> None:
        super().validate(request)
        partitions = request.get("partitions", ())
        if isinstance(partitions, str) or not all(isinstance(p, str) for p in partitions):
            raise ConfigError("--partitions: give partition names, comma-separated")


register(Restart())

"""The operator's own commands as the load balancer (a cloud LB CLI, an F5 script):
`drain` and `ready` must succeed; `state` prints one JSON object
{"admin": "ready"|"drain"|"maint", "status": "UP"|"DOWN"|..., "sessions": N, "queued": N}.
They run on this machine, with {server} (the LB's name for it), {node} and {home} filled
in item by item."""

from __future__ import annotations

import json
from collections.abc import Sequence

from zdt.domain import Domain, Server
from zdt.errors import AdapterError
from zdt.lb import Counters, LbState
from zdt.template import fill
from zdt.transport import Transport


class CommandLB:
    def __init__(self, domain: Domain, transport: Transport) -> None:
        self.domain, self.transport = domain, transport

    def _argv(self, template: tuple[str, ...], server: Server) -> list[str]:
        values = {"server": server.backend_name, "node": server.node,
                  "home": self.domain.domain.home}
        return [fill(item, values) for item in template]

    async def drain(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self.transport.run(self._argv(self.domain.lb.drain, server), timeout=60)

    async def ready(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self.transport.run(self._argv(self.domain.lb.ready, server), timeout=60)

    async def state(self, server: Server) -> LbState:
        result = await self.transport.run(self._argv(self.domain.lb.state, server), timeout=60)
        try:
            data = json.loads(result.stdout)
            return LbState(str(data["admin"]), str(data["status"]), int(data.get("sessions", 0)),
                           int(data.get("queued", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise AdapterError(f"the LB state command for {server.name} printed "
                               f"{result.stdout.strip()[:120]!r}, not the JSON object "
                               '{"admin", "status", "sessions", "queued"}') from exc

    async def counters(self) -> Counters | str:
        return "a command load balancer reports no counters zdt can read"

    async def close(self) -> None:
        """Nothing held."""

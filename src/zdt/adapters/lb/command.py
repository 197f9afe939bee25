"""The operator's own commands as the load balancer (a cloud LB CLI, an F5 script):
`drain` and `ready` must succeed; `state` prints one JSON object
{"admin": "ready"|"drain"|"maint", "status": "UP"|"DOWN"|..., "sessions": N, "queued": N}.
They run on this machine, with {server} (the LB's name for it), {node} and {home} filled
in item by item."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import field_validator, model_validator

from zdt.adapters.lb import Counters, LbState
from zdt.adapters.transport import Transport
from zdt.adapters.transport.local import LocalTransport
from zdt.domain import Domain, Server
from zdt.domain.adapter_config import LbConfig, argv_template, register
from zdt.errors import AdapterError
from zdt.template import fill


class CommandLB:
    def __init__(self, domain: Domain, config: CommandLbConfig, transport: Transport) -> None:
        self.domain, self.config, self.transport = domain, config, transport

    def _argv(self, template: tuple[str, ...], server: Server) -> list[str]:
        values = {"server": server.backend_name, "node": server.node,
                  "home": self.domain.domain.home}
        return [fill(item, values) for item in template]

    async def drain(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self.transport.run(self._argv(self.config.drain, server), timeout=60)

    async def ready(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self.transport.run(self._argv(self.config.ready, server), timeout=60)

    async def state(self, server: Server) -> LbState:
        result = await self.transport.run(self._argv(self.config.state, server), timeout=60)
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


class CommandLbConfig(LbConfig):
    """`[lb] kind = "command"`: drain, ready and state argv templates, run on this machine."""

    kind: Literal["command"] = "command"
    drain: tuple[str, ...] = ()
    ready: tuple[str, ...] = ()
    state: tuple[str, ...] = ()

    _templates = field_validator("drain", "ready", "state")(argv_template)

    @model_validator(mode="after")
    def _commands_given(self) -> CommandLbConfig:
        if not (self.drain and self.ready and self.state):
            raise ValueError("kind = \"command\" needs drain, ready and state commands")
        return self


def create(config: CommandLbConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> CommandLB:
    return CommandLB(domain, config, LocalTransport("load balancer"))


register("lb", CommandLbConfig, create)

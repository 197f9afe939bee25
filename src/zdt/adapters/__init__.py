"""The one place where a domain's config chooses implementations of the protocols."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from zdt.adapters.lb import LoadBalancer
from zdt.adapters.lb.every import EveryLB
from zdt.adapters.services import ServiceManager
from zdt.adapters.transport import Transport
from zdt.adapters.transport.local import LocalTransport
from zdt.domain import Domain, Node, adapter_config
from zdt.errors import ConfigError


@dataclass(frozen=True)
class Connect:
    """How nodes are reached, chosen per command (not journaled): whether first-seen SSH
    host keys may be added, and how many nodes are worked on at once."""

    accept_new_host_keys: bool = False
    parallel: int = 8


@dataclass
class Adapters:
    transports: dict[str, Transport]
    services: ServiceManager
    lb: LoadBalancer

    async def close(self) -> None:
        await self.services.close()
        await self.lb.close()
        for t in self.transports.values():
            await t.close()


def transports(domain: Domain, connect: Connect = Connect()) -> dict[str, Transport]:
    gate = asyncio.Semaphore(connect.parallel)
    return {n.name: _transport(domain, n, connect, gate) for n in domain.nodes}


def _transport(domain: Domain, node: Node, connect: Connect,
               gate: asyncio.Semaphore) -> Transport:
    address = node.ssh
    if address is None:
        return LocalTransport(node.name, node.root)
    from zdt.adapters.transport.ssh import SSHOptions, SSHTransport  # asyncssh only when needed

    return SSHTransport(node.name, address,
                        SSHOptions.of(domain, connect.accept_new_host_keys), gate)


def build(domain: Domain, connect: Connect = Connect()) -> Adapters:
    """The transports to every node, and the service manager and the load balancer(s) the
    domain's `kind`s name (each built by the factory its module registered)."""
    ts = transports(domain, connect)
    return Adapters(ts, _create("services", domain.services, domain, ts),
                    load_balancer(domain, ts))


def load_balancer(domain: Domain, ts: dict[str, Transport]) -> LoadBalancer:
    """The domain's load balancer; several ([[lb]]) driven as one."""
    lbs = [_create("lb", config, domain, ts) for config in domain.lbs]
    if len(lbs) == 1:
        return lbs[0]
    return EveryLB(lbs, [_lb_name(i, c) for i, c in enumerate(domain.lbs)])


def _lb_name(index: int, config: Any) -> str:
    node = getattr(config, "node", None)
    return f"lb[{index}] ({config.kind}{f' on {node}' if node else ''})"


def _create(section: str, config: Any, domain: Domain, ts: dict[str, Transport]) -> Any:
    found = adapter_config.lookup(section, config.kind)
    if found is None:                      # a domain is loaded with its kinds registered
        raise ConfigError(f"{domain.source}: [{section}] kind {config.kind!r} is unknown")
    return found[1](config, domain, ts)

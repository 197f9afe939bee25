"""The one place where a domain's config chooses implementations of the protocols."""

from __future__ import annotations

from dataclasses import dataclass

from zdt.domain import Domain
from zdt.lb import LoadBalancer
from zdt.lb.command import CommandLB
from zdt.lb.haproxy import HAProxy
from zdt.services import ServiceManager
from zdt.services.command import CommandManager
from zdt.services.supervisor import SupervisorManager
from zdt.services.systemd import SystemdManager
from zdt.transport import Transport
from zdt.transport.local import LocalTransport


@dataclass
class Adapters:
    transports: dict[str, Transport]
    services: ServiceManager
    lb: LoadBalancer

    async def close(self) -> None:
        await self.services.close()
        await self.lb.close()


def build(domain: Domain) -> Adapters:
    transports: dict[str, Transport] = {
        n.name: LocalTransport(n.name, n.root) for n in domain.nodes}
    services: ServiceManager
    if domain.services.kind == "systemd":
        services = SystemdManager(domain, transports)
    elif domain.services.kind == "command":
        services = CommandManager(domain, transports)
    else:
        services = SupervisorManager(
            domain, lambda node: transports[node].path(domain.services.socket),
            domain.services.program)
    lb: LoadBalancer
    if domain.lb.kind == "command":
        lb = CommandLB(domain, LocalTransport("load balancer"))
    else:
        lb = HAProxy(domain.lb.socket, domain.lb.backend)
    return Adapters(transports, services, lb)

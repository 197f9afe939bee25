"""The one place where a domain's config chooses implementations of the protocols."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from zdt.domain import Domain, Node
from zdt.lb import LoadBalancer
from zdt.lb.command import CommandLB
from zdt.lb.haproxy import HAProxy
from zdt.lb.nginx import NginxLB
from zdt.lb.nginx_lua import NginxLuaLB
from zdt.services import ServiceManager
from zdt.services.command import CommandManager
from zdt.services.supervisor import SupervisorManager
from zdt.services.systemd import SystemdManager
from zdt.transport import Transport
from zdt.transport.local import LocalTransport


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
    from zdt.transport.ssh import SSHOptions, SSHTransport  # asyncssh only when needed

    return SSHTransport(node.name, address,
                        SSHOptions.of(domain, connect.accept_new_host_keys), gate)


def build(domain: Domain, connect: Connect = Connect()) -> Adapters:
    ts = transports(domain, connect)
    services: ServiceManager
    if domain.services.kind == "systemd":
        services = SystemdManager(domain, ts)
    elif domain.services.kind == "command":
        services = CommandManager(domain, ts)
    else:
        async def socket_for(node: str) -> str:
            return await ts[node].unix_socket(domain.services.socket)
        services = SupervisorManager(domain, socket_for, domain.services.program)
    lb: LoadBalancer
    if domain.lb.kind == "command":
        lb = CommandLB(domain, LocalTransport("load balancer"))
    elif domain.lb.kind == "nginx" and domain.lb.admin_socket:
        lb = NginxLuaLB(domain)
    elif domain.lb.kind == "nginx":
        lb = NginxLB(domain, LocalTransport("load balancer"))
    else:
        lb = HAProxy(domain.lb.socket, domain.lb.backend)
    return Adapters(ts, services, lb)

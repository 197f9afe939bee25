"""Capacity checks before a node leaves rotation: can the servers left take its traffic?

When a node's servers leave rotation, the LB opens new connections to the others in a
burst. A server whose listen backlog is small drops the SYNs beyond it; the LB's connect
times out and the client gets a 503. The sample service once listened with Python's
default backlog of 5 and lost 0.2 % of 2,000 requests/s in every rollout, while a gentle
load of 190 requests/s never showed it. So preview and the start of every rollout read
each LB server's backlog on its node — the Send-Q of its listening socket in `ss -ltn` —
and warn below `[capacity] min_backlog`.
"""

from __future__ import annotations

from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.errors import ZdtError


def parse_listeners(text: str) -> dict[int, int]:
    """`ss -Hltn` → {port: smallest backlog among its listening sockets}.

    A line is `LISTEN Recv-Q Send-Q Local:Port Peer:Port`; for a listening socket Send-Q is
    the backlog it was given (capped by net.core.somaxconn).
    """
    backlogs: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        try:
            port, backlog = int(fields[3].rsplit(":", 1)[1]), int(fields[2])
        except (IndexError, ValueError):
            continue
        backlogs[port] = min(backlog, backlogs.get(port, backlog))
    return backlogs


async def backlogs(transport: Transport) -> dict[int, int]:
    """The listening TCP sockets' backlogs on a node, by port."""
    r = await transport.run(["ss", "-Hltn"], check=False, timeout=30)
    if r.returncode != 0:
        raise ZdtError(f"`ss -Hltn` failed (exit {r.returncode}: "
                       f"{r.stderr.strip()[-200:] or 'no message'}); install iproute2 there")
    return parse_listeners(r.stdout)


def advice(server: Server, backlog: int, floor: int) -> str:
    return (f"listen backlog {backlog} < {floor}: while another node is out, connections "
            f"beyond it are dropped (the LB answers 503); raise the service's listen "
            f"backlog (e.g. listen(1024), gunicorn --backlog, nginx `listen … backlog=`) and "
            f"net.core.somaxconn on {server.node} ([capacity] min_backlog sets this floor)")


def lb_servers(domain: Domain) -> dict[str, list[Server]]:
    """Every server behind the LB, by node: they all take traffic while a node is out."""
    nodes: dict[str, list[Server]] = {}
    for server in domain.servers:
        if server.lb:
            nodes.setdefault(server.node, []).append(server)
    return nodes

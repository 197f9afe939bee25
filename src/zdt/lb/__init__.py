"""Load balancers: take a server out of rotation and put it back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zdt.domain import Server


@dataclass(frozen=True)
class LbState:
    """A server as the load balancer sees it."""

    admin: str       # "ready" | "drain" | "maint"
    status: str      # operational status: "UP", "DOWN", "NOLB", "MAINT", "DRAIN", ...
    sessions: int    # current sessions (HAProxy's scur)
    queued: int      # requests waiting for this server (HAProxy's qcur)

    @property
    def up(self) -> bool:
        return self.status.startswith("UP") or self.status == "DRAIN" or self.status == "no check"

    @property
    def in_rotation(self) -> bool:
        # "no check": the LB does not check this server, so ready means in rotation
        return self.admin == "ready" and (self.status.startswith("UP")
                                          or self.status == "no check")


class LoadBalancer(Protocol):
    """Servers are taken out and put back together (one nginx reload for all the servers
    of a node)."""

    async def drain(self, servers: Sequence[Server]) -> None:
        """Send no new sessions to the servers; sessions in progress go on."""
        ...

    async def ready(self, servers: Sequence[Server]) -> None:
        """Put the servers back in rotation (they take traffic once their checks pass)."""
        ...

    async def state(self, server: Server) -> LbState:
        ...

    async def close(self) -> None:
        ...

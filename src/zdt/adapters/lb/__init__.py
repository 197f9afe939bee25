"""Load balancers: take a server out of rotation and put it back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Counts:
    """What the LB itself counted for a server or the backend since it started: the
    witness of a rollout is the difference between two readings."""

    requests: int = 0
    connection_errors: int = 0    # could not connect to a server (HAProxy econ)
    response_errors: int = 0      # a server's answer broke off or was bad (eresp)
    http_5xx: int = 0             # 5xx answers sent to clients, the LB's own 503s included
    retries: int = 0              # connections the LB retried (wretr): errors it hid
    redispatches: int = 0         # requests it sent to another server (wredis)
    client_aborts: int = 0        # transfers the client ended early (cli_abrt)
    server_aborts: int = 0        # transfers the server ended early (srv_abrt)
    queue_max: int = 0            # the queue's high-water mark (a maximum, not a count)
    rtime_ms: int = 0             # the mean time to an answer's head over the last 1,024
    #                               requests (HAProxy's rtime): a mean, not a count
    response_ms: int = 0          # time to the answers' heads, added up (nginx's module)


# What adds up between two readings; queue_max and rtime_ms are levels, not counts.
LEVEL_FIELDS = ("queue_max", "rtime_ms")
COUNT_FIELDS = tuple(f for f in Counts.__dataclass_fields__ if f not in LEVEL_FIELDS)


@dataclass(frozen=True)
class Counters:
    """One reading of the LB's counters: the backend's, each server's (by the LB's name),
    and which servers were in rotation at that instant."""

    source: str                                  # "HAProxy backend app"
    backend: Counts
    servers: Mapping[str, Counts] = field(default_factory=dict)
    in_rotation: tuple[str, ...] = ()
    epoch: str = ""       # which LB process counted (its counters began with it)


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

    async def counters(self) -> Counters | str:
        """The LB's own counters now; or, when it keeps none zdt can read, why not."""
        ...

    async def close(self) -> None:
        ...


async def unix_exchange(path: str, data: bytes) -> bytes:
    """Send data on a new connection to a unix socket and read the answer to EOF: how
    HAProxy's Runtime API and zdt's nginx admin location both answer."""
    return await _exchange(asyncio.open_unix_connection(path), data)


async def tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    """The same exchange over TCP (HAProxy's `stats socket ipv4@HOST:PORT`)."""
    return await _exchange(asyncio.open_connection(host, port), data)


async def _exchange(opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                    data: bytes) -> bytes:
    reader, writer = await opening
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

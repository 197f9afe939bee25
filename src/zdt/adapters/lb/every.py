"""Several load balancers in front of one domain (an HA pair: keepalived and two
HAProxies), driven as one (DESIGN.md point 11).

Every drain and ready goes to all of them, side by side. One that cannot be reached fails
the call (retryable) after the others were asked: a retry asks them all again, and a
revert puts the server back everywhere, so no server stays out of rotation on one LB and
in on another once a workflow has ended. A server is drained only when every LB says so,
in rotation only when every LB says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from zdt.adapters.lb import COUNT_FIELDS, LEVEL_FIELDS, Counters, Counts, LbState, LoadBalancer
from zdt.domain import Server
from zdt.errors import AdapterError, ZdtError

T = TypeVar("T")


class EveryLB:
    def __init__(self, lbs: Sequence[LoadBalancer], names: Sequence[str]) -> None:
        self.lbs = tuple(lbs)
        self.names = tuple(names)       # how messages name each (lb[0] haproxy …)

    async def drain(self, servers: Sequence[Server]) -> None:
        await self._all("drain", lambda lb: lb.drain(servers))

    async def ready(self, servers: Sequence[Server]) -> None:
        await self._all("ready", lambda lb: lb.ready(servers))

    async def state(self, server: Server) -> LbState:
        return combined(await self._all(f"state of {server.name}", lambda lb: lb.state(server)))

    async def counters(self) -> Counters | str:
        readings = await self._all("counters", lambda lb: lb.counters())
        for name, reading in zip(self.names, readings, strict=True):
            if isinstance(reading, str):
                return f"{name}: {reading}"
        return summed([r for r in readings if not isinstance(r, str)], self.names)

    async def close(self) -> None:
        for lb in self.lbs:
            await lb.close()

    async def _all(self, what: str, call: Callable[[LoadBalancer], Awaitable[T]]) -> list[T]:
        """The call on every LB, side by side; every failure named at once."""
        results = await asyncio.gather(*(call(lb) for lb in self.lbs), return_exceptions=True)
        failed = [(name, r) for name, r in zip(self.names, results, strict=True)
                  if isinstance(r, BaseException)]
        for _, r in failed:
            if not isinstance(r, Exception):
                raise r                      # a cancellation, an interrupt: not ours
        if failed:
            retryable = any(not isinstance(r, ZdtError) or getattr(r, "retryable", True)
                            for _, r in failed)
            raise AdapterError(
                f"{what}: {len(failed)} of {len(self.lbs)} load balancers failed: "
                + "; ".join(f"{name}: {r}" for name, r in failed), retryable=retryable)
        return [r for r in results if not isinstance(r, BaseException)]


def combined(states: Sequence[LbState]) -> LbState:
    """One server's state on every LB as one: ready (and UP) only if ready (and UP) on all;
    drained only if drained on all. Ready on some and not on others is neither: admin
    `mixed`, with a session, so a drain waits and a ready goes on."""
    sessions = sum(s.sessions for s in states if s.up)
    queued = sum(s.queued for s in states if s.up)
    ready = [s for s in states if s.admin == "ready"]
    if len(ready) == len(states):
        down = next((s.status for s in states if not s.in_rotation), None)
        return LbState("ready", down or states[0].status, sessions, queued)
    if not ready:
        admins = {s.admin for s in states}
        status = next((s.status for s in states if s.up), states[0].status)
        return LbState(admins.pop() if len(admins) == 1 else "drain", status, sessions, queued)
    return LbState("mixed", ready[0].status, max(1, sessions), queued)


def summed(readings: Sequence[Counters], names: Sequence[str]) -> Counters:
    """The counts of every LB added up (what clients sent through any of them); in
    rotation: servers in rotation on every one; the epoch changes if any LB restarted."""
    def add(counts: Sequence[Counts]) -> Counts:
        total = {k: sum(getattr(c, k) for c in counts) for k in COUNT_FIELDS}
        levels = {k: max((getattr(c, k) for c in counts), default=0) for k in LEVEL_FIELDS}
        return Counts(**total, **levels)

    servers = {name: add([r.servers[name] for r in readings if name in r.servers])
               for name in dict.fromkeys(n for r in readings for n in r.servers)}
    rotation = [n for n in readings[0].in_rotation
                if all(n in r.in_rotation for r in readings[1:])]
    source = " + ".join(f"{n}: {r.source}" for n, r in zip(names, readings, strict=True))
    return Counters(source, add([r.backend for r in readings]), servers, tuple(rotation),
                    "+".join(r.epoch for r in readings))

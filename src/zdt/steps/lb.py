"""Taking servers out of rotation and back, with waits that never hang.

A drain waits for the server's current sessions and queue (scur, qcur) to reach 0, or
the shutdown timeout; a server that is already DOWN or in maintenance has nothing to
drain (DESIGN.md point 7). A ready waits until the LB's own check reports the server UP,
so the next node is never drained while this one is still out.
"""

from __future__ import annotations

from typing import Any

from zdt.adapters.lb import LbState
from zdt.domain import Server
from zdt.errors import StepError
from zdt.steps import Context, each
from zdt.waiting import poll


def _nothing_left(st: LbState) -> bool:
    return st.admin != "ready" and (not st.up or (st.sessions == 0 and st.queued == 0))


async def drain(ctx: Context, servers: list[Server]) -> dict[str, Any]:
    await ctx.lb.drain(servers)
    states = await each(_wait_drained(ctx, s) for s in servers)
    left = {s.name: st.sessions + st.queued for s, st in zip(servers, states, strict=True)
            if not _nothing_left(st)}
    return {"sessions_left": left} if left else {}


async def _wait_drained(ctx: Context, server: Server) -> LbState:
    _, state = await poll(lambda: ctx.lb.state(server), _nothing_left,
                          ctx.options.shutdown_timeout, ctx.timing)
    return state


async def drained(ctx: Context, servers: list[Server]) -> bool:
    states = await each(ctx.lb.state(s) for s in servers)
    return all(_nothing_left(st) for st in states)


async def ready(ctx: Context, servers: list[Server]) -> None:
    await ctx.lb.ready(servers)
    results = await each(_wait_in_rotation(ctx, s) for s in servers)
    late = [f"{s.name} ({st.status})" for s, (ok, st) in zip(servers, results, strict=True)
            if not ok]
    if late:
        raise StepError(f"not UP in the load balancer after {ctx.options.ready_timeout:g} s: "
                        f"{', '.join(late)}; check its health URL and the LB's checks")


async def _wait_in_rotation(ctx: Context, server: Server) -> tuple[bool, LbState]:
    return await poll(lambda: ctx.lb.state(server), lambda st: st.in_rotation,
                      ctx.options.ready_timeout, ctx.timing)


async def in_rotation(ctx: Context, servers: list[Server]) -> bool:
    states = await each(ctx.lb.state(s) for s in servers)
    return all(st.in_rotation for st in states)

"""Preconditions of a workflow, checked against the live domain before anything changes.

A rollout that would fail on node3 because of a typo in a program name, or that would
drain node1 while node2 is already down, is refused here (exit 3) with every problem
listed, before the journal gets a workflow and before any node is touched.
"""

from __future__ import annotations

from zdt.domain import Server
from zdt.errors import PreconditionError, ZdtError
from zdt.plan import Plan
from zdt.steps import Context, each


async def preconditions(ctx: Context, plan: Plan) -> list[str]:
    """Every unmet precondition of the plan, as one line each naming node and server."""
    targeted = [ctx.domain.server(n) for n in dict.fromkeys(x for s in plan.steps
                                                            for x in s.servers)]
    problems = [p for found in await each(_server(ctx, s) for s in targeted) for p in found]
    problems += await _others_serving(ctx, plan)
    return problems


async def require(ctx: Context, plan: Plan) -> None:
    problems = await preconditions(ctx, plan)
    if problems:
        raise PreconditionError(
            f"{ctx.domain.source}: {len(problems)} precondition(s) not met, nothing was changed:\n"
            + "\n".join(f"  {p}" for p in problems))


async def _server(ctx: Context, server: Server) -> list[str]:
    where = f"{server.name} on {server.node}"
    problems = []
    try:
        st = await ctx.services.state(server)
        if not st.running:
            problems.append(f"{where}: not running ({st.state}); start it first")
    except ZdtError as exc:
        problems.append(f"{where}: {exc}")
    if server.lb:
        try:
            lb = await ctx.lb.state(server)
            if not lb.in_rotation:
                problems.append(f"{where}: not in rotation in the load balancer "
                                f"({lb.admin}, {lb.status})")
        except ZdtError as exc:
            problems.append(f"{where}: {exc}")
    return problems


async def _others_serving(ctx: Context, plan: Plan) -> list[str]:
    """While a node is out, some other server must be in rotation to take its traffic."""
    behind_lb = [s for s in ctx.domain.servers if s.lb]
    serving: set[str] = set()
    for server in behind_lb:
        try:
            if (await ctx.lb.state(server)).in_rotation:
                serving.add(server.name)
        except ZdtError:
            continue
    problems = []
    for group in range(len(plan.nodes)):
        out = {x for s in plan.for_group(group) if s.name == "drain" for x in s.servers}
        if out and not serving - out:
            problems.append(f"{plan.nodes[group]}: while it is out of rotation no other "
                            "server of the load balancer is in rotation to take its traffic")
    return problems

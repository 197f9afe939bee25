"""The steps around the servers of a node visit: drain → stop → start → health → ready.

In a restart, which changes nothing that needs undoing, reverting any of them means one
thing: make sure the step's servers are started, healthy, and ready in the LB. Around a
change of the node's files the reverts of start, health and ready differ (AROUND_CHANGE).
"""

from __future__ import annotations

import asyncio
from typing import Any

from zdt.domain import Server
from zdt.errors import StepError
from zdt.steps import Context, StepClass, StepSpec, each, health, lb
from zdt.waiting import poll


class ServersStep:
    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.servers = ctx.servers(spec.servers)

    async def check(self) -> bool:
        raise NotImplementedError

    async def execute(self) -> dict[str, Any] | None:
        raise NotImplementedError

    async def revert(self) -> dict[str, Any] | None:
        return await ensure_serving(self.ctx, self.servers)


class Drain(ServersStep):
    async def check(self) -> bool:
        return await lb.drained(self.ctx, self.servers)

    async def execute(self) -> dict[str, Any] | None:
        if self.ctx.witness is not None:      # the visit's window opens before the drain
            await self.ctx.witness.mark("drain", node=self.spec.node, group=self.spec.group,
                                        out=[s.backend_name for s in self.servers])
        return await lb.drain(self.ctx, self.servers)


class Stop(ServersStep):
    async def check(self) -> bool:
        states = await each(self.ctx.services.state(s) for s in self.servers)
        return all(st.down for st in states)

    async def execute(self) -> dict[str, Any] | None:
        timeout = self.ctx.options.shutdown_timeout
        clean = await each(self.ctx.services.stop(s, timeout) for s in self.servers)
        killed = [s.name for s, ok in zip(self.servers, clean, strict=True) if not ok]
        return {"killed": killed} if killed else None


class Start(ServersStep):
    async def check(self) -> bool:
        return all(await each(_listening(self.ctx, s) for s in self.servers))

    async def execute(self) -> dict[str, Any] | None:
        return {"pids": dict(await each(start(self.ctx, s) for s in self.servers))}


class Health(ServersStep):
    async def check(self) -> bool:
        return await health.healthy(self.ctx, self.servers)

    async def execute(self) -> dict[str, Any] | None:
        await health.wait_healthy(self.ctx, self.servers)
        return None


class Ready(ServersStep):
    async def check(self) -> bool:
        return await lb.in_rotation(self.ctx, self.servers)

    async def execute(self) -> dict[str, Any] | None:
        await lb.ready(self.ctx, self.servers)
        witness = self.ctx.witness
        if witness is None:
            return None
        await witness.mark("ready", node=self.spec.node, group=self.spec.group)
        if not witness.fail_on_errors:
            return None
        visit = witness.visit(self.spec.group)
        if visit is None or "errors" not in visit:
            raise StepError(f"{self.spec.node}: --fail-on-lb-errors, but the load balancer's "
                            "counters could not be read around this visit (see the journal's "
                            "witness readings): it cannot tell whether clients saw errors",
                            retryable=False)
        if visit["errors"]:
            raise StepError(
                f"{visit['node']}: the load balancer saw {visit['errors']} error(s) while the "
                f"node was out of rotation ({visit['connection_errors']} connection, "
                f"{visit['response_errors']} response, {visit['http_5xx']} 5xx, "
                f"{visit['server_aborts']} aborted by a server); --fail-on-lb-errors",
                retryable=False)
        return None


class StartForChange(Start):
    async def revert(self) -> dict[str, Any] | None:
        """The node's files are about to be put back: its servers must be out and stopped."""
        behind_lb = [s for s in self.servers if s.lb]
        if behind_lb and not await lb.drained(self.ctx, behind_lb):
            await lb.drain(self.ctx, behind_lb)
        return await Stop(self.ctx, self.spec).execute()


class HealthForChange(Health):
    async def revert(self) -> dict[str, Any] | None:
        return None


class ReadyForChange(Ready):
    async def revert(self) -> dict[str, Any] | None:
        return await lb.drain(self.ctx, self.servers)


# A restart changes nothing: every revert makes sure the servers serve again.
RESTART: dict[str, StepClass] = {
    "drain": Drain, "stop": Stop, "start": Start, "health": Health, "ready": Ready}
# Around a change of the node's files (home, runtime, apps), reverting the visit runs
# backwards through it: ready → drain again, start → stop, then the change's own revert
# puts the files back, stop → start, health, ready.
AROUND_CHANGE: dict[str, StepClass] = {
    "drain": Drain, "stop": Stop, "start": StartForChange, "health": HealthForChange,
    "ready": ReadyForChange}


async def start(ctx: Context, server: Server) -> tuple[str, int | None]:
    """Start a server and wait until its process runs and its port accepts connections."""
    await ctx.services.start(server)

    async def probe() -> tuple[bool, bool]:
        st = await ctx.services.state(server)
        return st.running and await _accepts(server), st.down

    # STARTING and BACKOFF are waited for; only a process that is down fails at once
    ok, (serving, _) = await poll(probe, lambda r: r[0] or r[1],
                                  ctx.options.start_timeout, ctx.timing)
    st = await ctx.services.state(server)
    if ok and serving:
        return server.name, st.pid
    detail = f": {st.detail.strip()[-300:]}" if st.detail else ""
    if not st.running:
        raise StepError(f"{server.name} on {server.node} did not start: {st.state}"
                        f" (exit status {st.exit_status}){detail}")
    raise StepError(f"{server.name} on {server.node} runs (pid {st.pid}) but port "
                    f"{server.port} accepts nothing after {ctx.options.start_timeout:g} s")


async def ensure_serving(ctx: Context, servers: list[Server]) -> dict[str, Any] | None:
    """Started, healthy, ready in the LB: the state a restart's revert restores."""
    started = []
    for server in servers:
        if not (await ctx.services.state(server)).running:
            await start(ctx, server)
            started.append(server.name)
    await health.wait_healthy(ctx, servers)
    behind_lb = [s for s in servers if s.lb]
    if behind_lb and not await lb.in_rotation(ctx, behind_lb):
        await lb.ready(ctx, behind_lb)
    return {"started": started} if started else None


async def _listening(ctx: Context, server: Server) -> bool:
    return (await ctx.services.state(server)).running and await _accepts(server)


async def _accepts(server: Server) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(server.host, server.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True

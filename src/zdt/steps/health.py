"""Health: HTTP GET of a server's health URL until it answers 200, or a timeout.

While waiting, the server's process is watched too: a process that exited will never
become healthy, so the wait ends at once with what its manager reported.
"""

from __future__ import annotations

from zdt import http
from zdt.domain import Server
from zdt.errors import StepError
from zdt.steps import Context, each
from zdt.waiting import poll


async def answers(server: Server, timeout: float = 2.0) -> int | None:
    """The health URL's status code, or None when nothing answered."""
    try:
        return (await http.get(server.health, timeout=timeout)).status
    except (OSError, TimeoutError, ValueError):
        return None


async def healthy(ctx: Context, servers: list[Server]) -> bool:
    codes = await each(answers(s) for s in servers)
    return all(code == 200 for code in codes)


async def wait_healthy(ctx: Context, servers: list[Server]) -> None:
    await each(_wait_one(ctx, s) for s in servers)


async def _wait_one(ctx: Context, server: Server) -> None:
    async def probe() -> tuple[int | None, bool]:
        code = await answers(server)
        if code == 200:
            return code, False
        return code, (await ctx.services.state(server)).down

    ok, (code, down) = await poll(probe, lambda r: r[0] == 200 or r[1],
                                  ctx.options.health_timeout, ctx.timing)
    if ok and code == 200:
        return
    if down:
        st = await ctx.services.state(server)
        raise StepError(f"{server.name} on {server.node}: the process is {st.state}"
                        f" (exit status {st.exit_status}) while waiting for {server.health}"
                        + (f": {st.detail.strip()[-300:]}" if st.detail else ""))
    raise StepError(f"{server.name} on {server.node}: {server.health} answered "
                    f"{code or 'nothing'} for {ctx.options.health_timeout:g} s")

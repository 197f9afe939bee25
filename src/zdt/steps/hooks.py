"""Hooks as steps (DESIGN.md point 9): the executables the domain names for a phase run on
the step's node, one after the other, with the workflow's facts in ZDT_* variables. A hook
that exits non-zero is a failing step (retried, then reverted like any other). Reverting a
hook does nothing: a hook is told the phase, not asked to undo it.
"""

from __future__ import annotations

from typing import Any

from zdt.steps import Context, StepSpec
from zdt.steps.home import Paths


def environment(ctx: Context, node: str, servers: tuple[str, ...], phase: str) -> list[str]:
    t = ctx.transport(node)
    new_home = backup = ""
    if ctx.change is not None:
        paths = Paths(ctx)     # the home steps own the release's naming
        new_home, backup = t.path(paths.release), t.path(paths.backup)
    return [f"ZDT_WORKFLOW_ID={ctx.workflow}", f"ZDT_NODE={node}",
            f"ZDT_SERVERS={','.join(servers)}", f"ZDT_HOME={t.path(ctx.domain.domain.home)}",
            f"ZDT_NEW_HOME={new_home}", f"ZDT_BACKUP={backup}", f"ZDT_PHASE={phase}"]


async def run_phase(ctx: Context, node: str, servers: tuple[str, ...], phase: str) -> list[str]:
    t = ctx.transport(node)
    ran = []
    for hook in ctx.domain.hooks.at(phase):
        argv = ["env", *environment(ctx, node, servers, phase), t.path(hook)]
        await t.run(argv, timeout=ctx.options.command_timeout)
        ran.append(hook)
    return ran


class Hook:
    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.phase = spec.name.removeprefix("hook:")

    async def check(self) -> bool:
        return False

    async def execute(self) -> dict[str, Any] | None:
        ran = await run_phase(self.ctx, self.spec.node, self.spec.servers, self.phase)
        return {"hooks": ran}

    async def revert(self) -> dict[str, Any] | None:
        return None

"""Run a rollout and kill -9 this very process at a chosen point of a chosen step.

    python crash_rollout.py DOMAIN ARCHIVE|restart|runtime:PATH|update:ARCHIVE:PATH:APPS \
        NODE STEP POINT [BATCH]

POINT is a state the journal records (`running`, `done`): the kill comes from the engine's
observer right after the journal committed it, so the crash lands at a precise point every
run. `running+S`: S seconds after the step began (inside a drain's wait). `during:CMD`:
while the step's first CMD runs on the node (tar mid-extract, mv mid-switch); its process
is left to finish or not, as after a real crash. BATCH is the rollout's --batch (default 1).
The workflow id is printed first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zdt.adapters.transport import Result
from zdt.adapters.transport.local import LocalTransport
from zdt.app import App, RolloutRequest
from zdt.workflow.journal import StepRecord


def main() -> None:
    domain, archive, node, step, state = sys.argv[1:6]
    batch = sys.argv[6] if len(sys.argv) > 6 else "1"
    wid = "crash-" + os.urandom(3).hex()
    print(wid, flush=True)

    current = {"step": ""}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def kill_at(record: StepRecord, now: str) -> None:
        if record.node == node:
            current["step"] = record.name if now == "running" else ""
        if (record.node, record.name, now) == (node, step, state):
            die()
        if (record.node, record.name, now) == (node, step, "running") and "+" in state:
            asyncio.get_running_loop().call_later(float(state.split("+")[1]), die)

    if state.startswith("during:"):
        _kill_during_command(node, step, state.removeprefix("during:"), current, die)

    if archive.startswith("update:"):   # "update:ARCHIVE:RUNTIME:APPS": a combined update
        _, tarball, runtime, apps = archive.split(":")
        request = RolloutRequest.of("update", ("domain",), shutdown_timeout=10, archive=tarball,
                                    runtime_home=runtime, apps=apps, retry_delay=0.1)
    elif archive == "restart":                 # a rolling restart of cluster1
        request = RolloutRequest.of("restart", ("cluster1",), shutdown_timeout=10, retry_delay=0.1)
    elif archive.startswith("runtime:"):       # "runtime:/opt/runtime-2": a runtime rollout
        request = RolloutRequest.of("runtime", ("cluster1",), shutdown_timeout=10,
                                    runtime_home=archive.removeprefix("runtime:"), retry_delay=0.1)
    else:
        request = RolloutRequest.of("home", ("cluster1",), shutdown_timeout=10, archive=archive,
                                    retry_delay=0.1)
    request = replace(request, batch=batch)
    runner = App(Path(domain), ids=lambda: wid, observer=kill_at)
    asyncio.run(runner.start(request))
    sys.exit(3)   # not reached when the kill point is hit


def _kill_during_command(node: str, step: str, command: str, current: dict[str, str],
                         die: Callable[[], None]) -> None:
    original = LocalTransport.run

    async def run(self: LocalTransport, argv: list[str], **kw: Any) -> Result:
        if self.node == node and current["step"] == step and \
                os.path.basename(argv[0]) == command:
            started = asyncio.ensure_future(original(self, argv, **kw))
            await asyncio.sleep(0.003)
            die()
            return await started
        return await original(self, argv, **kw)

    # the real transport, patched in this throw-away process only: the kill must land
    # while the command runs, which no journal state marks
    LocalTransport.run = run  # type: ignore[method-assign]


if __name__ == "__main__":
    main()

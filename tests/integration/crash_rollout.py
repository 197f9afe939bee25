"""Run a rollout and kill -9 this very process once a chosen step reaches a chosen state.

    python crash_rollout.py DOMAIN ARCHIVE|restart|runtime:PATH|update:ARCHIVE:PATH:APPS \
        NODE STEP STATE

The workflow id is printed first (flushed), so the test can resume or revert it. The kill
comes from the engine's observer, right after the journal committed that state: the
crash lands at a precise point of the workflow, every run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from zdt.journal import StepRecord
from zdt.rollout import RolloutRequest, Runner


def main() -> None:
    domain, archive, node, step, state = sys.argv[1:6]
    wid = "crash-" + os.urandom(3).hex()
    print(wid, flush=True)

    def kill_at(record: StepRecord, now: str) -> None:
        if (record.node, record.name, now) == (node, step, state):
            os.kill(os.getpid(), signal.SIGKILL)

    if archive.startswith("update:"):   # "update:ARCHIVE:RUNTIME:APPS": a combined update
        _, tarball, runtime, apps = archive.split(":")
        request = RolloutRequest(("domain",), shutdown_timeout=10, kind="update",
                                 archive=tarball, runtime_home=runtime, apps=apps,
                                 retry_delay=0.1)
    elif archive == "restart":                 # a rolling restart of cluster1
        request = RolloutRequest(("cluster1",), shutdown_timeout=10, retry_delay=0.1)
    elif archive.startswith("runtime:"):       # "runtime:/opt/runtime-2": a runtime rollout
        request = RolloutRequest(("cluster1",), shutdown_timeout=10, kind="runtime",
                                 runtime_home=archive.removeprefix("runtime:"), retry_delay=0.1)
    else:
        request = RolloutRequest(("cluster1",), shutdown_timeout=10, kind="home",
                                 archive=archive, retry_delay=0.1)
    runner = Runner(Path(domain), ids=lambda: wid, observer=kill_at)
    asyncio.run(runner.rollout(request))
    sys.exit(3)   # not reached when the kill point is hit


if __name__ == "__main__":
    main()

"""Service managers ("Node Manager"): what starts and stops servers on a node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from zdt.domain import Server

# The states every manager reports in (supervisord's words; other managers map to them).
# Only these three mean "no process and none coming": anything else (STARTING, BACKOFF,
# STOPPING) is on its way somewhere and must be waited for, never taken as an answer.
DOWN_STATES = frozenset({"STOPPED", "EXITED", "FATAL"})


@dataclass(frozen=True)
class ProcessState:
    """A server's process as its manager reports it."""

    running: bool
    pid: int | None
    state: str            # RUNNING, STARTING, BACKOFF, STOPPING, STOPPED, EXITED, FATAL
    exit_status: int | None = None
    detail: str = ""      # the tail of the error output when it failed

    @property
    def down(self) -> bool:
        """No process, and none on its way."""
        return not self.running and self.state in DOWN_STATES


class ServiceManager(Protocol):
    async def start(self, server: Server) -> None:
        """Ask the manager to start the server's process; returns once it is spawned."""
        ...

    async def stop(self, server: Server, timeout: float) -> bool:
        """SIGTERM, wait up to `timeout` s, then kill. True if it stopped by itself."""
        ...

    async def state(self, server: Server) -> ProcessState:
        ...

    async def close(self) -> None:
        ...

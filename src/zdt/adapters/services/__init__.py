"""Service managers ("Node Manager"): what starts and stops servers on a node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from zdt.domain import Domain, Server
from zdt.template import fill as fill_template

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


def command_argv(template: tuple[str, ...], domain: Domain, server: Server) -> list[str]:
    """An argv template filled in item by item: a value with spaces, quotes or `$()` stays
    one argument and is never seen by a shell."""
    values = {"server": server.name, "node": server.node, "home": domain.domain.home}
    return [fill_template(item, values) for item in template]


def sudo(domain: Domain, argv: list[str]) -> list[str]:
    """`sudo -n` (never a password prompt: a rollout cannot answer one) when asked for."""
    return ["sudo", "-n", *argv] if domain.services.sudo else argv

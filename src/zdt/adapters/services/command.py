"""The operator's own commands as the service manager (start, stop, status templates)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import field_validator, model_validator

from zdt.adapters.services import ProcessState, command_argv, sudo
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.domain.adapter_config import ServicesConfig, argv_template, register
from zdt.errors import AdapterError
from zdt.waiting import REAL_TIME, Timing, poll

# `status` exits 0 while the server runs; 1, 2 or 3 when it does not (LSB: dead with a pid
# file, dead with a lock file, not running). Anything else (4 "unknown", 126/127 cannot
# run, 124 timed out, a signal) says nothing about the server: an error, never "stopped".
NOT_RUNNING = (1, 2, 3)
KILL_WAIT = 10.0      # s for the status to say stopped after SIGKILL


def _pid(stdout: str) -> int | None:
    """The pid a status command printed: its first line holding only a number (or
    MAINPID=N, as `systemctl show` prints it). Any other text names no pid: a port, a date
    or a count must never be taken for one and killed. 0 and 1 are never a server's."""
    first = stdout.strip().splitlines()[0].strip() if stdout.strip() else ""
    found = re.fullmatch(r"(?:MAINPID=)?([0-9]{1,10})", first)
    pid = int(found.group(1)) if found else None
    return pid if pid is not None and pid > 1 else None


class CommandManager:
    """`start` and `stop` must succeed (exit 0); a stop is done when `status` says so (the
    pid it prints is killed when the stop command leaves the server running)."""

    def __init__(self, domain: Domain, transports: Mapping[str, Transport],
                 timing: Timing = REAL_TIME) -> None:
        self.domain, self.transports, self.timing = domain, transports, timing
        self.config = domain.config_of("services", CommandConfig)

    def _argv(self, template: tuple[str, ...], server: Server) -> list[str]:
        return sudo(self.domain, command_argv(template, self.domain, server))

    def privileged(self, server: Server) -> list[list[str]]:
        """Every command run for the server under `sudo -n` (for preview to ask sudo)."""
        c = self.config
        return [command_argv(argv, self.domain, server) for argv in (c.start, c.stop, c.status)]

    async def start(self, server: Server) -> None:
        await self.transports[server.node].run(self._argv(self.config.start, server),
                                               timeout=120)

    async def stop(self, server: Server, timeout: float) -> bool:
        """The stop command, then the status until it says stopped; after `timeout` s the
        pid the status gave is killed. True if it stopped without the kill."""
        before = await self.state(server)
        if before.down:
            return True
        argv = self._argv(self.config.stop, server)
        # its exit status is not the answer (a stop that "fails" on a server already going
        # down is common); the status is
        await self.transports[server.node].run(argv, check=False, timeout=timeout + 30)
        stopped, last = await poll(lambda: self.state(server), lambda st: st.down, timeout,
                                   self.timing)
        if stopped:
            return True
        pid = last.pid or before.pid
        if pid is None:
            raise AdapterError(f"{server.node}: {server.name} still runs {timeout:g} s after "
                               "its stop command, and its status command prints no pid to "
                               "kill; make `status` print the pid, or `stop` wait for the end")
        await self.transports[server.node].run(sudo(self.domain, ["kill", "-KILL", str(pid)]),
                                               timeout=30)
        gone, _ = await poll(lambda: self.state(server), lambda st: st.down, KILL_WAIT,
                             self.timing)
        if not gone:
            raise AdapterError(f"{server.node}: {server.name} (pid {pid}) still runs "
                               f"{KILL_WAIT:g} s after SIGKILL, by its status command")
        return False

    async def state(self, server: Server) -> ProcessState:
        argv = self._argv(self.config.status, server)
        result = await self.transports[server.node].run(argv, check=False, timeout=60)
        refused = self.config.sudo and result.stderr.lstrip().startswith("sudo:")
        if result.returncode in NOT_RUNNING and not refused:
            return ProcessState(running=False, pid=None, state="STOPPED",
                                detail=result.stderr.strip()[-300:])
        if result.returncode != 0:
            raise AdapterError(
                f"{server.node}: the status command of {server.name} ({argv[0]}) exited "
                f"{result.returncode}: {result.stderr.strip()[-300:] or 'no message'}; it must "
                f"exit 0 (running) or {', '.join(map(str, NOT_RUNNING))} (not running)")
        return ProcessState(running=True, pid=_pid(result.stdout), state="RUNNING")

    async def close(self) -> None:
        """Nothing held."""


class CommandConfig(ServicesConfig):
    """`[services] kind = "command"`: the operator's own start, stop and status commands
    (argv templates, each item filled in on its own; status exits 0 while it runs)."""

    kind: Literal["command"] = "command"
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    status: tuple[str, ...] = ()

    _templates = field_validator("start", "stop", "status")(argv_template)

    @model_validator(mode="after")
    def _commands_given(self) -> CommandConfig:
        if not (self.start and self.stop and self.status):
            raise ValueError("kind = \"command\" needs start, stop and status commands")
        return self


def create(config: CommandConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> CommandManager:
    return CommandManager(domain, transports)


register("services", CommandConfig, create)

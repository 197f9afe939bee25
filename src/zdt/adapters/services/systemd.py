"""systemd as the service manager: `systemctl` over the node's transport.

Stop honours zdt's own --shutdown-timeout rather than the unit's TimeoutStopSec: the stop
is asked for without blocking, watched, and a SIGKILL follows when the timeout passes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from pydantic import field_validator

from zdt.adapters.services import ProcessState, sudo
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.domain.adapter_config import ServicesConfig, name_template, register
from zdt.errors import AdapterError
from zdt.template import fill
from zdt.waiting import REAL_TIME, Timing, poll

# systemd's ActiveState → the words every manager reports in (see zdt.adapters.services)
STATES = {"active": "RUNNING", "reloading": "RUNNING", "activating": "STARTING",
          "deactivating": "STOPPING", "inactive": "STOPPED", "failed": "FATAL"}


SHOW = ("-p", "ActiveState", "-p", "SubState", "-p", "MainPID", "-p", "ExecMainStatus")


class SystemdManager:
    def __init__(self, domain: Domain, transports: Mapping[str, Transport],
                 timing: Timing = REAL_TIME) -> None:
        self.domain, self.transports, self.timing = domain, transports, timing
        self.config = domain.config_of("services", SystemdConfig)

    def unit(self, server: Server) -> str:
        return server.program or self.config.process_name(server.name, server.node)

    def privileged(self, server: Server) -> list[list[str]]:
        """Every command run for the server under `sudo -n` (for preview to ask sudo)."""
        unit = self.unit(server)
        return [["systemctl", "start", "--no-block", unit],
                ["systemctl", "stop", "--no-block", unit],
                ["systemctl", "kill", "--signal=SIGKILL", unit],
                ["systemctl", "show", *SHOW, unit]]

    async def _systemctl(self, server: Server, *args: str, check: bool = True) -> str:
        argv = sudo(self.domain, ["systemctl", *args])
        result = await self.transports[server.node].run(argv, check=check, timeout=60)
        return result.stdout

    async def start(self, server: Server) -> None:
        await self._systemctl(server, "start", "--no-block", self.unit(server))

    async def stop(self, server: Server, timeout: float) -> bool:
        await self._systemctl(server, "stop", "--no-block", self.unit(server))
        stopped, _ = await poll(lambda: self.state(server), lambda st: st.down, timeout,
                                self.timing)
        if stopped:
            return True
        await self._systemctl(server, "kill", "--signal=SIGKILL", self.unit(server))
        began = time.monotonic()
        gone, _ = await poll(lambda: self.state(server), lambda st: st.down, 10.0, self.timing)
        if not gone:
            raise AdapterError(f"{server.node}: {self.unit(server)} is still up "
                               f"{time.monotonic() - began:.0f} s after SIGKILL")
        return False

    async def state(self, server: Server) -> ProcessState:
        out = await self._systemctl(server, "show", *SHOW, self.unit(server))
        fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        word = STATES.get(fields.get("ActiveState", ""), "UNKNOWN")
        if word == "STOPPED" and fields.get("ExecMainStatus", "0") not in ("0", ""):
            word = "EXITED"
        pid = int(fields.get("MainPID", "0") or 0) or None
        status = fields.get("ExecMainStatus")
        return ProcessState(running=word == "RUNNING", pid=pid, state=word,
                            exit_status=int(status) if status and status.isdigit() else None)

    async def close(self) -> None:
        """Nothing held: every call is one command."""


class SystemdConfig(ServicesConfig):
    """`[services] kind = "systemd"`: a unit per server (`unit`, or the server's `program`)."""

    kind: Literal["systemd"] = "systemd"
    unit: str = "{server}.service"

    _unit = field_validator("unit")(name_template)

    def process_name(self, server: str, node: str) -> str:
        return fill(self.unit, {"server": server, "node": node})


def create(config: SystemdConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> SystemdManager:
    return SystemdManager(domain, transports)


register("services", SystemdConfig, create)

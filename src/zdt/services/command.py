"""The operator's own commands as the service manager (start, stop, status templates)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from zdt.domain import Domain, Server
from zdt.services import ProcessState
from zdt.services.commands import fill, sudo
from zdt.transport import Transport


class CommandManager:
    """`start` and `stop` must succeed (exit 0); `status` exits 0 while the server runs,
    and may print its pid (the first number on its output)."""

    def __init__(self, domain: Domain, transports: Mapping[str, Transport]) -> None:
        self.domain, self.transports = domain, transports

    def _argv(self, template: tuple[str, ...], server: Server) -> list[str]:
        return sudo(self.domain, fill(template, self.domain, server))

    async def start(self, server: Server) -> None:
        await self.transports[server.node].run(self._argv(self.domain.services.start, server),
                                               timeout=120)

    async def stop(self, server: Server, timeout: float) -> bool:
        argv = self._argv(self.domain.services.stop, server)
        result = await self.transports[server.node].run(argv, check=False,
                                                        timeout=timeout + 30)
        return result.returncode == 0

    async def state(self, server: Server) -> ProcessState:
        argv = self._argv(self.domain.services.status, server)
        result = await self.transports[server.node].run(argv, check=False, timeout=60)
        if result.returncode != 0:
            return ProcessState(running=False, pid=None, state="STOPPED",
                                detail=result.stderr.strip()[-300:])
        number = re.search(r"\b(\d+)\b", result.stdout)
        return ProcessState(running=True, pid=int(number.group(1)) if number else None,
                            state="RUNNING")

    async def close(self) -> None:
        """Nothing held."""

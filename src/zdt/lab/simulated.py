"""A simulated fleet for scale benchmarks and for tests of pure orchestration: a transport,
a service manager and a load balancer that answer at once (optionally after `delay`
seconds, counting how many calls were under way together), and /health listeners on real
loopback ports so the start and health steps do their real network checks. Never used in
place of a component that can run here: the sandbox runs the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from zdt import domain as dm
from zdt.adapters import Adapters, Connect
from zdt.adapters.lb import Counters, LbState
from zdt.adapters.services import ProcessState
from zdt.domain import Server
from zdt.result import Result


class InstantTransport:
    def __init__(self, node: str) -> None:
        self.node = node

    def path(self, remote: str) -> str:
        return remote

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        return Result(tuple(argv), 0, "", "")

    async def put(self, local: str, remote: str) -> None:
        return None

    async def unix_socket(self, remote: str) -> str:
        return remote

    async def close(self) -> None:
        return None


class InstantServices:
    def __init__(self, delay: float = 0.0) -> None:
        self.stopped: set[str] = set()
        self.delay = delay
        self.busy = 0
        self.most_busy = 0          # the most stops and starts under way together

    async def _call(self) -> None:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.busy -= 1

    async def start(self, server: Server) -> None:
        await self._call()
        self.stopped.discard(server.name)

    async def stop(self, server: Server, timeout: float) -> bool:
        await self._call()
        self.stopped.add(server.name)
        return True

    async def state(self, server: Server) -> ProcessState:
        if server.name in self.stopped:
            return ProcessState(False, None, "STOPPED")
        return ProcessState(True, 1000, "RUNNING")

    async def close(self) -> None:
        return None


class InstantLB:
    def __init__(self) -> None:
        self.out: set[str] = set()

    async def drain(self, servers: Sequence[Server]) -> None:
        self.out.update(s.name for s in servers)

    async def ready(self, servers: Sequence[Server]) -> None:
        self.out.difference_update(s.name for s in servers)

    async def state(self, server: Server) -> LbState:
        return LbState("drain" if server.name in self.out else "ready", "UP", 0, 0)

    async def counters(self) -> Counters | str:
        return "a simulated load balancer keeps no counters"

    async def close(self) -> None:
        return None


def build(domain: dm.Domain, connect: Connect, services: InstantServices | None = None
          ) -> Adapters:
    """The adapters of a simulated fleet (App's `build_adapters`)."""
    return Adapters({n.name: InstantTransport(n.name) for n in domain.nodes},
                    services or InstantServices(), InstantLB())


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readline() not in (b"\r\n", b"\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    finally:
        writer.close()


async def listeners(count: int) -> tuple[list[asyncio.Server], list[int]]:
    """`count` /health listeners on loopback, and their ports."""
    servers = [await asyncio.start_server(_health, "127.0.0.1", 0) for _ in range(count)]
    return servers, [s.sockets[0].getsockname()[1] for s in servers]

"""ServiceManager over supervisord's XML-RPC interface, one supervisord per node.

Each call opens its own connection to the node's Unix socket: the XML-RPC client keeps
one HTTP connection per transport and is not thread-safe, and the calls run in worker
threads (`asyncio.to_thread`) so the event loop never blocks on a slow supervisord.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
import xmlrpc.client
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import field_validator
from supervisor.xmlrpc import Faults, SupervisorTransport, UnixStreamHTTPConnection

from zdt.adapters.services import DOWN_STATES, ProcessState
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.domain.adapter_config import ServicesConfig, name_template, register
from zdt.errors import AdapterError, socket_problem
from zdt.template import fill

CALL_TIMEOUT = 10.0        # s; a supervisord that answers nothing in 10 s is hung
KILL_WAIT = 10.0           # s; after SIGKILL, how long the process may take to be reaped
TAIL_BYTES = 500           # stderr tail put into ProcessState.detail
FAILED = frozenset({"EXITED", "FATAL", "BACKOFF"})
_CONNECTION_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)


class _TimedConnection(UnixStreamHTTPConnection):
    """supervisord's unix-socket connection with a timeout on every socket operation: a
    hung supervisord (SIGSTOPped, wedged) ends the call, and the thread running it, instead
    of holding a worker thread (and the process's exit) for ever."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CALL_TIMEOUT)
        self.sock.connect(self.socketfile)


def call(socket_path: str, method: str, *args: object) -> Any:
    """One blocking XML-RPC call to `supervisor.<method>` over a fresh connection."""
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")

    def connection() -> _TimedConnection:
        conn = _TimedConnection("localhost")
        conn.socketfile = socket_path
        return conn

    transport._get_connection = connection
    # The host part is ignored for unix:// transports, but ServerProxy needs an http URL.
    proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
    try:
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


class SupervisorManager:
    """Start, stop and inspect servers through each node's supervisord.

    `socket_for_node(node)` gives a local path that reaches that node's supervisord
    socket (the socket itself, or an SSH forward of it);
    `program` is the supervisord program name, formatted with `server` and `node`.
    """

    def __init__(self, domain: Domain, socket_for_node: Callable[[str], Awaitable[str]],
                 program: str = "{server}") -> None:
        self.domain = domain
        self._socket_for_node = socket_for_node
        self._program = program

    def program(self, server: Server) -> str:
        """supervisord's name for the process: the server's own `program` (a partition in
        a group is "GROUP:PROGRAM"), else the domain's template."""
        if server.program:
            return server.program
        return fill(self._program, {"server": server.name, "node": server.node})

    async def start(self, server: Server) -> None:
        """Spawn the server's process; return once supervisord has forked it.

        No waiting on supervisord's `startsecs`: whether the server works is the health
        check's business, and waiting here would only add seconds to every node.
        """
        await self._call(server, "startProcess", self.program(server), False,
                         allow=(Faults.ALREADY_STARTED,))

    async def stop(self, server: Server, timeout: float) -> bool:
        """SIGTERM (the program's stopsignal), wait up to `timeout` s, then SIGKILL.

        Returns True if the process stopped by itself (or was not running).
        """
        deadline = time.monotonic() + timeout
        name = self.program(server)
        # NOT_RUNNING also covers a process already STOPPING (stopped by someone else):
        # wait for it all the same rather than report it stopped too early.
        await self._call(server, "stopProcess", name, False, allow=(Faults.NOT_RUNNING,))
        if await self._wait_stopped(server, deadline):
            return True
        # signalProcess signals the main pid only (stopasgroup applies to stopProcess);
        # the sample service and most servers are a single process.
        answer = await self._call(server, "signalProcess", name, "KILL",
                                  allow=(Faults.NOT_RUNNING,))
        if isinstance(answer, xmlrpc.client.Fault):
            return True  # it finished on its own between the last poll and the kill
        if not await self._wait_stopped(server, time.monotonic() + KILL_WAIT):
            raise AdapterError(
                f"server {server.name!r} on node {server.node!r} is still running "
                f"{KILL_WAIT:.0f} s after SIGKILL; check the process on the node")
        return False

    async def _wait_stopped(self, server: Server, deadline: float) -> bool:
        """Poll until the process is down; False if `deadline` (monotonic) passes first.

        Polls start at 10 ms and grow by half up to 100 ms: a stop that takes 50 ms is
        seen within ~15 ms, and a long one costs at most 10 calls a second. Each call
        also wakes supervisord's main loop, which is when it reaps its children; left
        alone it would notice an exit only at its next 1 s tick.
        """
        name = self.program(server)
        delay = 0.01
        while True:
            info = await self._call(server, "getProcessInfo", name)
            if info["statename"] in DOWN_STATES:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.1)

    async def state(self, server: Server) -> ProcessState:
        name = self.program(server)
        info = await self._call(server, "getProcessInfo", name)
        statename = info["statename"]
        failed = statename in FAILED
        return ProcessState(
            running=statename == "RUNNING",
            pid=info["pid"] or None,
            state=statename,
            exit_status=info["exitstatus"] if failed else None,
            detail=await self._failure_detail(server, info) if failed else "",
        )

    async def _failure_detail(self, server: Server, info: dict[str, Any]) -> str:
        """supervisord's spawn error (if any) and the last bytes the process wrote to stderr."""
        parts = [f"spawn error: {info['spawnerr']}"] if info.get("spawnerr") else []
        tail = await self._call(server, "tailProcessStderrLog", self.program(server),
                                0, TAIL_BYTES, allow=(Faults.NO_FILE, Faults.FAILED))
        if not isinstance(tail, xmlrpc.client.Fault) and tail[0].strip():
            parts.append(tail[0].strip())
        return "\n".join(parts)

    async def close(self) -> None:
        """Nothing to release: every call uses its own connection."""

    async def _call(self, server: Server, method: str, *args: object,
                    allow: tuple[int, ...] = ()) -> Any:
        """Call supervisord on the server's node; the Faults in `allow` are returned."""
        path = await self._socket_for_node(server.node)
        try:
            # the socket's own timeout ends the thread; this one is a backstop
            return await asyncio.wait_for(asyncio.to_thread(call, path, method, *args),
                                          CALL_TIMEOUT + 2)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in allow:
                return exc
            raise self._fault_error(server, path, method, exc) from exc
        except TimeoutError as exc:
            raise AdapterError(
                f"supervisord on node {server.node!r} did not answer {method} for server "
                f"{server.name!r} within {CALL_TIMEOUT:.0f} s (socket {path}); "
                f"is it hung? check its log under the node's root") from exc
        except _CONNECTION_ERRORS as exc:
            raise AdapterError(
                f"cannot reach supervisord on node {server.node!r} for server "
                f"{server.name!r} at socket {path}: {socket_problem(exc, 'supervisord')}; is "
                f"supervisord running? (for the sandbox: `zdt sandbox up`)") from exc

    def _fault_error(self, server: Server, path: str, method: str,
                     exc: xmlrpc.client.Fault) -> AdapterError:
        where = (f"supervisord on node {server.node!r} (socket {path}), server "
                 f"{server.name!r}")
        if exc.faultCode == Faults.BAD_NAME:
            return AdapterError(
                f"{where}: no program named {self.program(server)!r}; check the "
                f"[services] program pattern and the supervisord config of the node",
                retryable=False)
        return AdapterError(f"{where}: {method} failed: {exc.faultString}")


class SupervisorConfig(ServicesConfig):
    """`[services] kind = "supervisor"` (the default): each node's supervisord, through its
    XML-RPC socket (a node path, reached over the node's transport)."""

    kind: Literal["supervisor"] = "supervisor"
    socket: str = "/run/supervisor.sock"
    program: str = "{server}"

    _program = field_validator("program")(name_template)

    def process_name(self, server: str, node: str) -> str:
        return fill(self.program, {"server": server, "node": node})


def create(config: SupervisorConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> SupervisorManager:
    async def socket_for(node: str) -> str:
        return await transports[node].unix_socket(config.socket)
    return SupervisorManager(domain, socket_for, config.program)


register("services", SupervisorConfig, create)

"""LoadBalancer over the HAProxy Runtime API (the `stats socket ... level admin` socket).

One command per connection, read to EOF: HAProxy closes a non-interactive CLI connection
after answering, so the end of the answer needs no parsing. Commands used (HAProxy 2.6):

  set server <backend>/<server> state drain|ready   answers nothing on success
  show stat <backend> 4 -1                          CSV, servers of one backend (type 4)
  show stat <backend> 6 -1                          the same and the BACKEND row (2 | 4)
  show info                                         "Name: value" lines, the Pid among them
  show servers state <backend>                      version line, "# " header, rows

The socket is on this machine (`socket = "/run/haproxy/admin.sock"`), on a node of the
domain reached over its transport (`node = "lb1"`: over SSH, forwarded through the node's
connection; `stats socket` needs no change), or a TCP address (`socket =
"tcp://10.0.0.5:9999"`, for `stats socket ipv4@10.0.0.5:9999 level admin`).

The parsers are plain functions on text so that code without an event loop (the sandbox)
can reuse them with a blocking socket.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from zdt.adapters.lb import Counters, Counts, LbState, tcp_exchange, unix_exchange
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Name, Server
from zdt.domain.adapter_config import LbConfig, register
from zdt.errors import AdapterError, socket_problem

COMMAND_TIMEOUT = 5.0   # s; the CLI answers in microseconds unless HAProxy is wedged
# HAProxy accepts 10 connections on a stats socket by default (`stats maxconn`) and drops
# the rest; a preview of 12 servers asks for 24 states at once, so zdt keeps well below.
MAX_CONNECTIONS = 4

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced maint, inherited maint (tracking),
# maint from DNS resolution, forced drain, inherited drain, and 0x20 maint because the
# address was never resolved. Maintenance wins over drain: such a server gets no traffic.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20
_DRAIN_BITS = 0x08 | 0x10


def admin_state(bits: int) -> str:
    """Map a srv_admin_state bit field to "maint", "drain" or "ready"."""
    if bits & _MAINT_BITS:
        return "maint"
    if bits & _DRAIN_BITS:
        return "drain"
    return "ready"


def parse_stat(text: str) -> dict[str, dict[str, str]]:
    """`show stat` CSV → {svname: row} for the server rows (not FRONTEND/BACKEND)."""
    if not text.startswith("# "):
        raise ValueError(text.strip() or "empty answer")
    rows = csv.DictReader(text[2:].splitlines())
    return {row["svname"]: row for row in rows
            if row.get("svname") and row["svname"] not in ("FRONTEND", "BACKEND")}


def parse_servers_state(text: str) -> dict[str, int]:
    """`show servers state BACKEND` → {srv_name: srv_admin_state}.

    The answer is a format version line ("1"), a "# "-prefixed header of space-separated
    column names, then one row per server; columns are found by name, not position.
    """
    lines = text.splitlines()
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise ValueError(text.strip() or "empty answer")
    header = lines[1][2:].split()
    name_col, admin_col = header.index("srv_name"), header.index("srv_admin_state")
    states = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) == len(header):
            states[fields[name_col]] = int(fields[admin_col])
    return states


# Counts field → `show stat` column. req_tot is counted in HTTP mode; in TCP mode stot
# (sessions) stands in for it.
_COLUMNS = {"requests": "req_tot", "connection_errors": "econ", "response_errors": "eresp",
            "http_5xx": "hrsp_5xx", "retries": "wretr", "redispatches": "wredis",
            "client_aborts": "cli_abrt", "server_aborts": "srv_abrt", "queue_max": "qmax",
            "rtime_ms": "rtime"}


def parse_counts(row: dict[str, str]) -> Counts:
    values = {name: _int(row.get(column)) for name, column in _COLUMNS.items()}
    if not row.get("req_tot"):
        values["requests"] = _int(row.get("stot"))
    return Counts(**values)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def parse_pid(info: str) -> str:
    """`show info` → the process's "Pid": a restarted or reloaded HAProxy counts anew."""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Pid":
            return value.strip()
    return ""


def parse_counters(text: str, admin: dict[str, int], source: str, epoch: str = ""
                   ) -> Counters:
    """`show stat BACKEND 6 -1` and `show servers state BACKEND` → one reading."""
    if not text.startswith("# "):
        raise ValueError(text.strip() or "empty answer")
    backend, servers, serving = None, {}, []
    for row in csv.DictReader(text[2:].splitlines()):
        name = row.get("svname")
        if name == "BACKEND":
            backend = parse_counts(row)
        elif name and name != "FRONTEND":
            servers[name] = parse_counts(row)
            if lb_state(row, admin.get(name, 0)).in_rotation:
                serving.append(name)
    if backend is None:
        raise ValueError("no BACKEND row")
    return Counters(source, backend, servers, tuple(serving), epoch)


def lb_state(row: dict[str, str], admin_bits: int) -> LbState:
    return LbState(admin=admin_state(admin_bits), status=row.get("status", ""),
                   sessions=int(row.get("scur") or 0), queued=int(row.get("qcur") or 0))


Exchange = Callable[[bytes], Awaitable[bytes]]   # one command sent, the whole answer read


class HAProxy:
    """One backend of one HAProxy, through its admin socket. `socket_path` names it in
    messages; `exchange` reaches it (default: the Unix socket at that path)."""

    def __init__(self, socket_path: str, backend: str, exchange: Exchange | None = None
                 ) -> None:
        self.socket_path = socket_path
        self.backend = backend
        self._exchange = exchange or (lambda data: unix_exchange(socket_path, data))
        self._gate = asyncio.Semaphore(MAX_CONNECTIONS)

    async def drain(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self._set_state(server, "drain")

    async def ready(self, servers: Sequence[Server]) -> None:
        for server in servers:
            await self._set_state(server, "ready")

    async def state(self, server: Server) -> LbState:
        servers = await self.servers()
        name = server.backend_name
        if name not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise AdapterError(
                f"HAProxy (socket {self.socket_path}) has no server {name!r} in backend "
                f"{self.backend!r} (it has: {known}); check the server's name/lb_name in "
                f"domain.toml against the HAProxy config", retryable=False)
        return servers[name]

    async def servers(self) -> dict[str, LbState]:
        """Every server of the backend: one `show stat` and one `show servers state`."""
        stat, admin = await asyncio.gather(
            self.command(f"show stat {self.backend} 4 -1"),
            self.command(f"show servers state {self.backend}"))
        try:
            rows, bits = parse_stat(stat), parse_servers_state(admin)
        except ValueError as exc:
            raise AdapterError(
                f"HAProxy (socket {self.socket_path}) cannot report backend "
                f"{self.backend!r}: {exc}; check [lb] backend in domain.toml against the "
                f"HAProxy config", retryable=False) from exc
        return {name: lb_state(row, bits.get(name, 0)) for name, row in rows.items()}

    async def counters(self) -> Counters | str:
        stat, admin, info = await asyncio.gather(
            self.command(f"show stat {self.backend} 6 -1"),
            self.command(f"show servers state {self.backend}"), self.command("show info"))
        try:
            return parse_counters(stat, parse_servers_state(admin),
                                  f"HAProxy backend {self.backend}", parse_pid(info))
        except ValueError as exc:
            raise AdapterError(f"HAProxy (socket {self.socket_path}) cannot report the "
                               f"counters of backend {self.backend!r}: {exc}",
                               retryable=False) from exc

    async def close(self) -> None:
        """Nothing to release: every command uses its own connection."""

    async def _set_state(self, server: Server, state: str) -> None:
        target = f"{self.backend}/{server.backend_name}"
        answer = await self.command(f"set server {target} state {state}")
        if answer.strip():
            # "No such server.", "No such backend.", "Unknown command...": never transient.
            raise AdapterError(
                f"HAProxy (socket {self.socket_path}) refused to set {target} to {state}: "
                f"{answer.strip().splitlines()[0]}; check the backend ([lb] backend) and the "
                f"server's name/lb_name in domain.toml", retryable=False)

    async def command(self, line: str) -> str:
        """Send one Runtime API command and return HAProxy's whole answer.

        Backend and server names are safe to put in a command line: domain.py only
        accepts names without spaces, newlines or ';' (HAProxy's command separator).
        """
        try:
            async with self._gate:
                answer = await asyncio.wait_for(self._exchange(line.encode() + b"\n"),
                                                COMMAND_TIMEOUT)
                return answer.decode(errors="replace")
        except TimeoutError as exc:
            raise AdapterError(
                f"HAProxy did not answer {line.split()[0]!r} on {self.socket_path} within "
                f"{COMMAND_TIMEOUT:.0f} s; is it overloaded or stopped?") from exc
        except OSError as exc:
            raise AdapterError(
                f"cannot reach HAProxy's admin socket {self.socket_path} (backend "
                f"{self.backend!r}): {socket_problem(exc, 'HAProxy')}; is HAProxy running "
                f"with "
                f"`stats socket {self.socket_path} level admin`? (for the sandbox: "
                f"`zdt sandbox up`)") from exc

class HAProxyConfig(LbConfig):
    """`[lb] kind = "haproxy"` (the default): HAProxy's Runtime API on its admin socket
    (`stats socket PATH level admin`): a path on this machine, a path on `node` (a node of
    the domain), or `tcp://HOST:PORT`."""

    kind: Literal["haproxy"] = "haproxy"
    socket: str = Field("", validate_default=True)
    backend: Name = "app"
    node: Name | None = None
    local_paths = ("socket",)

    @field_validator("socket")
    @classmethod
    def _socket(cls, v: str) -> str:
        if not v:
            raise ValueError("kind = \"haproxy\" needs socket (the Runtime API socket)")
        if v.startswith("tcp://"):
            tcp_address(v)
        elif "://" in v:
            raise ValueError(f"socket {v!r}: a path, or tcp://HOST:PORT")
        return v

    @field_validator("node")
    @classmethod
    def _node(cls, v: str | None, info: ValidationInfo) -> str | None:
        socket = info.data.get("socket", "")
        if v is not None and socket.startswith("tcp://"):
            raise ValueError("socket = \"tcp://…\" is reached from this machine: leave node "
                             "out")
        if v is not None and socket and not socket.startswith("/"):
            raise ValueError(f"socket {socket!r}: an absolute path on node {v!r}")
        return v


def tcp_address(socket: str) -> tuple[str, int]:
    """`tcp://HOST:PORT` → (host, port); ValueError naming what is wrong."""
    parts = urlsplit(socket)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query \
            or parts.username:
        raise ValueError(f"socket {socket!r}: give tcp://HOST:PORT (the `stats socket "
                         "ipv4@HOST:PORT level admin` address)")
    return parts.hostname, port


def create(config: HAProxyConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> HAProxy:
    if config.socket.startswith("tcp://"):
        host, port = tcp_address(config.socket)
        return HAProxy(config.socket, config.backend,
                       lambda data: tcp_exchange(host, port, data))
    if config.node is not None:
        transport = transports[config.node]

        async def forwarded(data: bytes) -> bytes:
            return await unix_exchange(await transport.unix_socket(config.socket), data)

        return HAProxy(f"{config.node}:{config.socket}", config.backend, forwarded)
    return HAProxy(config.socket, config.backend)


register("lb", HAProxyConfig, create)

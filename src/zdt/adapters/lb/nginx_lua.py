"""nginx with zdt's Lua peer list (`zdt_nginx.lua`, Debian's libnginx-mod-http-lua): a drain
or a ready changes a shared dict that every worker reads per request. No reload, so no old
worker closes its idle keep-alive client connections under the clients' feet (the reload
mode lost 71 of 43,415 requests at 128 keep-alive connections), and nginx itself counts
what the witness needs.

zdt still owns the upstream file, in the same format as the reload mode (`server IP:PORT
[PARAMS];  # NAME`, `down` when drained): it is what the Lua module loads when nginx starts
or reloads (servers and addresses come from there only), so a drain survives an nginx
restart. A drain writes the file, then tells the module which servers are down (POST
/zdt/peers on the admin socket, `NAME up|down` lines); the module's answer says what nginx
now routes. If the module refuses or cannot be reached, the file is put back. The state of
a server is what the module says, never what the file says: a file written by a zdt that
died before its POST shows the server still in rotation, and the next drain or ready brings
nginx in line. A server in the file that the module does not know (added since nginx
loaded the file) is an error that says to reload nginx.

A server's sessions are its requests in flight, counted by the module (balancer phase up,
log phase down): a drain is complete when they reach 0.

nginx on another host (`node = "lb1"`, a node of the domain): the upstream file is read
and replaced there through the node's transport (a temp file renamed over it, its mode
kept), and the admin socket is forwarded over the node's connection.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zdt import http
from zdt.adapters.lb import Counters, Counts, LbState, unix_exchange
from zdt.adapters.lb.nginx import NginxConfig
from zdt.adapters.lb.upstream_file import mark, write_atomically
from zdt.adapters.lb.upstream_file import servers as in_file
from zdt.adapters.transport import Transport
from zdt.domain import Server
from zdt.errors import AdapterError

LUA_DIR = Path(__file__).resolve().parent     # zdt_nginx.lua, for lua_package_path
TIMEOUT = 5.0


@dataclass(frozen=True)
class Peers:
    """The module's answer: each server's rotation and requests in flight, the counters."""

    up: dict[str, bool]
    active: dict[str, int]
    counts: dict[str, Counts]
    epoch: str = ""


def parse_admin(text: str) -> Peers:
    """`server NAME up|down active N` and `counts NAME key=value…` lines → Peers."""
    up, active, counts, epoch = {}, {}, {}, ""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "epoch":
            epoch = words[1]
        elif len(words) == 5 and words[0] == "server" and words[3] == "active":
            up[words[1]] = words[2] == "up"
            active[words[1]] = int(words[4])
        elif len(words) >= 2 and words[0] == "counts":
            values = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            counts[words[1]] = Counts(**{k: int(v) for k, v in values.items()
                                         if k in Counts.__dataclass_fields__})
    if not any(line.startswith("version ") for line in text.splitlines()):
        raise ValueError(text.strip()[:200] or "empty answer")
    return Peers(up, active, counts, epoch)


class LocalFile:
    """The upstream file on this machine."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.where = str(path)

    async def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AdapterError(f"cannot read nginx's upstream file {self.where}: "
                               f"{exc.strerror}", retryable=False) from exc

    async def write(self, text: str) -> None:
        write_atomically(self.path, text)


class NodeFile:
    """The upstream file on nginx's node, through the node's transport."""

    def __init__(self, transport: Transport, path: str) -> None:
        self.transport, self.path = transport, path
        self.where = f"{transport.node}:{path}"

    async def read(self) -> str:
        r = await self.transport.run(["cat", "--", self.path], check=False, timeout=30)
        if r.returncode != 0:
            raise AdapterError(f"cannot read nginx's upstream file {self.where}: "
                               f"{r.stderr.strip()[-200:]}", retryable=False)
        return r.stdout

    async def write(self, text: str) -> None:
        r = await self.transport.run(["stat", "-c", "%a", "--", self.path], check=False,
                                     timeout=30)
        mode = int(r.stdout.strip(), 8) if r.returncode == 0 else 0o644
        with tempfile.TemporaryDirectory(prefix="zdt-upstream-") as d:
            local = Path(d) / "upstream.conf"
            local.write_text(text, encoding="utf-8")
            os.chmod(local, mode & 0o777)
            await self.transport.put(str(local), self.path)   # a temp file, then renamed


class NginxLuaLB:
    def __init__(self, cfg: NginxConfig, transport: Transport | None = None) -> None:
        """`transport`: nginx's node when it runs on another host ([lb] node)."""
        self.file: LocalFile | NodeFile = (NodeFile(transport, cfg.upstream_file)
                                           if transport else LocalFile(cfg.upstream_file))
        self.upstream = self.file.where
        self.transport = transport
        self.socket = cfg.admin_socket
        self.backend = cfg.backend
        self._lock = asyncio.Lock()

    async def drain(self, servers: Sequence[Server]) -> None:
        await self._set(servers, down=True)

    async def ready(self, servers: Sequence[Server]) -> None:
        await self._set(servers, down=False)

    async def state(self, server: Server) -> LbState:
        peers = await self._ask("GET")
        name = server.backend_name
        if name not in peers.up:
            raise self._missing(server)
        return LbState("ready" if peers.up[name] else "drain", "no check",
                       peers.active.get(name, 0), 0)

    async def counters(self) -> Counters | str:
        peers = await self._ask("GET")
        servers = {k: v for k, v in peers.counts.items() if k not in ("BACKEND", "-")}
        return Counters(f"nginx upstream {self.backend}", peers.counts.get("BACKEND", Counts()),
                        servers, tuple(k for k, v in peers.up.items() if v), peers.epoch)

    async def close(self) -> None:
        """Nothing held: one connection per request."""

    async def _set(self, servers: Sequence[Server], *, down: bool) -> None:
        if not servers:
            return
        async with self._lock:
            text = await self.file.read()
            named = list(in_file(text, self.backend))
            changed = text
            for server in servers:
                if server.backend_name not in named:
                    raise self._missing(server)
                changed = mark(changed, server.backend_name, down, self.backend)
            if changed != text:
                await self.file.write(changed)
            states = "".join(f"{s.backend_name} {'down' if down else 'up'}\n" for s in servers)
            try:
                peers = await self._ask("POST", states)
            except BaseException:
                if changed != text:
                    await self.file.write(text)   # as nginx still has it
                raise
            unknown = [n for n in named if n not in peers.up]
            if unknown:
                raise AdapterError(
                    f"nginx's Lua peer list does not know {', '.join(unknown)} from "
                    f"{self.upstream}: reload nginx so that it loads the file (only `server "
                    f"IP:PORT` lines without `backup` are taken)", retryable=False)

    async def _ask(self, method: str, body: str = "") -> Peers:
        try:
            async with asyncio.timeout(TIMEOUT):
                path = "/zdt/peers" if method == "POST" else "/zdt/state"
                local = (await self.transport.unix_socket(self.socket) if self.transport
                         else self.socket)
                raw = await unix_exchange(local, (
                    f"{method} {path} HTTP/1.0\r\nHost: zdt\r\nContent-Length: "
                    f"{len(body.encode())}\r\n\r\n{body}").encode())
        except TimeoutError as exc:
            raise AdapterError(f"nginx's admin socket {self.socket} did not answer within "
                               f"{TIMEOUT:g} s; is nginx overloaded or stopped?") from exc
        except OSError as exc:
            raise AdapterError(f"cannot reach nginx's admin socket {self.socket}: "
                               f"{exc.strerror or exc}; is nginx running with zdt's admin "
                               "location on it (see the README)?") from exc
        try:
            answer = http.parse(raw, f"unix:{self.socket}")
            body = answer.body.decode(errors="replace")
            if answer.status != 200:
                raise AdapterError(f"nginx's admin location answered {answer.status}: "
                                   f"{body.strip()[:200]}", retryable=False)
            return parse_admin(body)
        except ValueError as exc:
            raise AdapterError(f"nginx's admin location on {self.socket} did not answer "
                               f"like zdt_nginx.lua: {exc}", retryable=False) from exc

    def _missing(self, server: Server) -> AdapterError:
        return AdapterError(f"{self.upstream}: no line `server ADDRESS [PARAMETERS];  # "
                            f"{server.backend_name}` in `upstream {self.backend} {{ … }}` for "
                            f"server {server.name!r} (or nginx's Lua peer list has not loaded "
                            f"it)", retryable=False)

"""nginx with zdt's Lua peer list (`zdt_nginx.lua`, Debian's libnginx-mod-http-lua): a drain
or a ready changes a shared dict that every worker reads per request. No reload, so no old
worker closes its idle keep-alive client connections under the clients' feet (the reload
mode lost 71 of 43,415 requests at 128 keep-alive connections), and nginx itself counts
what the witness needs.

zdt still owns the upstream file, in the same format as the reload mode (`server ADDRESS
[PARAMS];  # NAME`, `down` when drained): it is what the Lua module loads when nginx starts
or reloads, so a drain survives an nginx restart. A drain writes the file, then hands its
text to the module (POST /zdt/peers on the admin socket: nginx's workers need not read
the file); the module's answer says what nginx now routes. The state of a server is what
the module says, never what the file says: a file written by a zdt that died before its
POST shows the server still in rotation, and the next drain or ready brings nginx in line.

A server's sessions are its requests in flight, counted by the module (balancer phase up,
log phase down): a drain is complete when they reach 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zdt.domain import Domain, Server
from zdt.errors import AdapterError
from zdt.lb import Counters, Counts, LbState
from zdt.lb.nginx import LINE, mark, write_atomically

LUA_DIR = Path(__file__).resolve().parent     # zdt_nginx.lua, for lua_package_path
TIMEOUT = 5.0


@dataclass(frozen=True)
class Peers:
    """The module's answer: each server's rotation and requests in flight, the counters."""

    up: dict[str, bool]
    active: dict[str, int]
    counts: dict[str, Counts]


def parse_admin(text: str) -> Peers:
    """`server NAME up|down active N` and `counts NAME key=value…` lines → Peers."""
    up, active, counts = {}, {}, {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 5 and words[0] == "server" and words[3] == "active":
            up[words[1]] = words[2] == "up"
            active[words[1]] = int(words[4])
        elif len(words) >= 2 and words[0] == "counts":
            values = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            counts[words[1]] = Counts(**{k: int(v) for k, v in values.items()
                                         if k in Counts.__dataclass_fields__})
    if not any(line.startswith("version ") for line in text.splitlines()):
        raise ValueError(text.strip()[:200] or "empty answer")
    return Peers(up, active, counts)


class NginxLuaLB:
    def __init__(self, domain: Domain) -> None:
        cfg = domain.lb
        self.upstream = Path(cfg.upstream_file)
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
                        servers, tuple(k for k, v in peers.up.items() if v))

    async def close(self) -> None:
        """Nothing held: one connection per request."""

    async def _set(self, servers: Sequence[Server], *, down: bool) -> None:
        if not servers:
            return
        async with self._lock:
            try:
                text = self.upstream.read_text(encoding="utf-8")
            except OSError as exc:
                raise AdapterError(f"cannot read nginx's upstream file {self.upstream}: "
                                   f"{exc.strerror}", retryable=False) from exc
            named = {m["name"] for m in map(LINE.match, text.splitlines()) if m}
            changed = text
            for server in servers:
                if server.backend_name not in named:
                    raise self._missing(server)
                changed = mark(changed, server.backend_name, down)
            if changed != text:
                write_atomically(self.upstream, changed)
            peers = await self._ask("POST", changed)
            wrong = [s.name for s in servers if peers.up.get(s.backend_name) != (not down)]
            if wrong:
                raise AdapterError(
                    f"nginx's Lua peer list did not take the change to {', '.join(wrong)}; "
                    f"is it zdt_nginx.lua behind {self.socket}?",
                    retryable=False)

    async def _ask(self, method: str, body: str = "") -> Peers:
        try:
            async with asyncio.timeout(TIMEOUT):
                text = await self._exchange(method, body.encode())
        except TimeoutError as exc:
            raise AdapterError(f"nginx's admin socket {self.socket} did not answer within "
                               f"{TIMEOUT:g} s; is nginx overloaded or stopped?") from exc
        except OSError as exc:
            raise AdapterError(f"cannot reach nginx's admin socket {self.socket}: "
                               f"{exc.strerror or exc}; is nginx running with zdt's admin "
                               "location on it (see the README)?") from exc
        head, _, body = text.partition("\r\n\r\n")
        status = head.split(" ", 2)[1] if head.count(" ") >= 1 else "?"
        if status != "200":
            raise AdapterError(f"nginx's admin location answered {status}: "
                               f"{body.strip()[:200]}", retryable=False)
        try:
            return parse_admin(body)
        except ValueError as exc:
            raise AdapterError(f"nginx's admin location on {self.socket} did not answer "
                               f"like zdt_nginx.lua: {exc}", retryable=False) from exc

    async def _exchange(self, method: str, body: bytes) -> str:
        path = "/zdt/peers" if method == "POST" else "/zdt/state"
        reader, writer = await asyncio.open_unix_connection(self.socket)
        try:
            writer.write(f"{method} {path} HTTP/1.0\r\nHost: zdt\r\nContent-Length: "
                         f"{len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _missing(self, server: Server) -> AdapterError:
        return AdapterError(f"{self.upstream}: no line `server ADDRESS [PARAMETERS];  # "
                            f"{server.backend_name}` for server {server.name!r} (or nginx's "
                            f"Lua peer list has not loaded it)", retryable=False)

"""nginx as the load balancer, on this machine: zdt owns one file, the upstream block
that nginx.conf includes, one line per server, its LB name in a trailing comment:

    upstream app {
        server 198.18.1.10:8001;  # node1-s1
        server 198.18.1.11:8001 down;  # node2-s1
    }

A drain marks the server's line `down` and reloads nginx (SIGHUP to the master): new
workers start with the new file, the old ones finish the requests they hold and exit.
Until every old worker is gone, one of them may still send a request on a kept-alive
client connection to the drained server; so a server counts as drained only when no
worker is "shutting down" and no connection from this machine to it is established.
Open-source nginx has no active health checks: its status is "no check".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from zdt import procfs
from zdt.adapters.lb import Counters, LbState, LoadBalancer
from zdt.adapters.lb.upstream_file import mark, servers, write_atomically
from zdt.adapters.transport import Transport
from zdt.adapters.transport.local import LocalTransport
from zdt.domain import Domain, Name, Server
from zdt.domain.adapter_config import LbConfig, register
from zdt.errors import AdapterError, StepError

RELOAD_TIMEOUT = 10.0    # s; for the master to start the new workers after a SIGHUP
class NginxLB:
    def __init__(self, cfg: NginxConfig, transport: Transport) -> None:
        self.upstream = Path(cfg.upstream_file)
        # the digest of the text nginx was last reloaded with, kept beside the file
        self.loaded = self.upstream.with_name(f".{self.upstream.name}.zdt-loaded")
        self.pid_file = Path(cfg.pid_file)
        self.config = cfg.config
        self.backend = cfg.backend
        self.binary = cfg.binary
        self.transport = transport         # this machine: `nginx -t` runs through it
        self._lock = asyncio.Lock()
        self._signalled = False            # whether the reload under way sent its SIGHUP

    async def drain(self, servers: Sequence[Server]) -> None:
        await self._set(servers, down=True)

    async def ready(self, servers: Sequence[Server]) -> None:
        await self._set(servers, down=False)

    async def state(self, server: Server) -> LbState:
        text, marks = self._lines()
        down = marks.get(server.backend_name)
        if down is None:
            raise self._missing(server)
        master = self._master()
        status = "no check" if master is not None else "DOWN"
        if not self._is_loaded(text):
            # written, but the reload did not finish (zdt died, or was stopped): what nginx
            # routes is unknown, so the server is neither drained nor in rotation
            return LbState("pending", status, 1, 0)
        busy = _shutting_down(master) if master is not None else 0
        busy += _established(server.host, server.port)
        return LbState("drain" if down else "ready", status, busy, 0)

    def _is_loaded(self, text: str) -> bool:
        """Whether nginx was reloaded with this text (no record yet: it was started with it)."""
        try:
            return self.loaded.read_text().strip() == _digest(text)
        except FileNotFoundError:
            return True

    def _record_loaded(self, text: str) -> None:
        write_atomically(self.loaded, _digest(text) + "\n", mode=0o644)

    async def counters(self) -> Counters | str:
        return ("open-source nginx keeps no per-server counters zdt can read (no "
                "witness for this workflow)")

    async def close(self) -> None:
        """Nothing held."""

    async def _set(self, servers: Sequence[Server], *, down: bool) -> None:
        """Mark the servers' lines and reload once. Also when the file already says so: an
        earlier run may have written it and died before its reload took effect."""
        if not servers:
            return
        async with self._lock:
            text, marks = self._lines()
            for server in servers:
                if server.backend_name not in marks:
                    raise self._missing(server)
            changed = text
            for server in servers:
                changed = mark(changed, server.backend_name, down, self.backend)
            if changed == text:
                await self._reload(wait_old=down)
                self._record_loaded(text)
                return
            if not self.loaded.exists():
                self._record_loaded(text)      # what nginx was started with
            write_atomically(self.upstream, changed)
            self._signalled = False
            try:
                await self._reload(wait_old=down)
                self._record_loaded(changed)
            except BaseException:
                # Whatever stopped the reload (nginx refusing, a kill not allowed, a
                # cancel): the file goes back. If the signal went out, nginx may load the
                # change yet, or the file put back, or neither: it is asked to read the
                # file again, and until a drain or ready completes, what nginx routes is
                # unknown (`pending`).
                write_atomically(self.upstream, text)
                if self._signalled:
                    write_atomically(self.loaded, "unknown\n", mode=0o644)
                    self._hup_quietly()
                raise

    def _hup_quietly(self) -> None:
        master = self._master()
        if master is not None:
            with contextlib.suppress(OSError):
                os.kill(master, signal.SIGHUP)

    async def _reload(self, *, wait_old: bool) -> None:
        """SIGHUP, then wait until new workers run; with wait_old (a drain), also until
        every old worker stopped accepting (for a ready, an old worker that still takes a
        connection merely leaves the readied server out of it)."""
        if self.config:
            try:
                result = await self.transport.run(
                    [self.binary, "-t", "-q", "-c", self.config], check=False, timeout=30)
            except StepError as exc:
                raise AdapterError(f"cannot test nginx's config: {exc}",
                                   retryable=False) from exc
            if result.returncode != 0:
                raise AdapterError(f"nginx refuses its config after zdt's change to "
                                   f"{self.upstream}: {result.stderr.strip()[-300:]}",
                                   retryable=False)
        master = self._master()
        if master is None:
            raise AdapterError(f"nginx is not running (no live master in {self.pid_file}); "
                               "start it, then run the command again")
        old = set(_workers(master))
        try:
            os.kill(master, signal.SIGHUP)
            self._signalled = True
        except OSError as exc:
            raise AdapterError(f"cannot signal nginx's master (pid {master}) to reload: "
                               f"{exc.strerror}; run zdt as nginx's user or root",
                               retryable=False) from exc
        deadline = time.monotonic() + RELOAD_TIMEOUT
        delay = 0.005
        # Done when new workers run and every old one stopped accepting: it is gone, or
        # "shutting down" (counted by `state` until it exits). Before the master's QUIT
        # reaches it, an old worker still takes connections with the old file.
        while not (set(_workers(master)) - old) or \
                (wait_old and any(_accepting(pid) for pid in old & set(_workers(master)))):
            if time.monotonic() > deadline:
                raise AdapterError(f"nginx (master {master}) did not replace its workers "
                                   f"within {RELOAD_TIMEOUT:g} s of a reload; see its "
                                   f"error log")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _lines(self) -> tuple[str, dict[str, bool]]:
        try:
            text = self.upstream.read_text(encoding="utf-8")
        except OSError as exc:
            raise AdapterError(f"cannot read nginx's upstream file {self.upstream}: "
                               f"{exc.strerror}", retryable=False) from exc
        return text, servers(text, self.backend)

    def _missing(self, server: Server) -> AdapterError:
        return AdapterError(f"{self.upstream}: no line `server ADDRESS [PARAMETERS];  # "
                            f"{server.backend_name}` in `upstream {self.backend} {{ … }}` for "
                            f"server {server.name!r}; zdt marks servers down by that comment",
                            retryable=False)

    def _master(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if "nginx: master" in procfs.cmdline(pid) else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _workers(master: int) -> list[int]:
    """The master's children that are workers (not the cache manager or loader)."""
    return [pid for pid in procfs.children(master) if "worker process" in procfs.cmdline(pid)]


def _accepting(pid: int) -> bool:
    title = procfs.cmdline(pid)
    return "worker process" in title and "is shutting down" not in title


def _shutting_down(master: int) -> int:
    return sum(1 for pid in _workers(master) if "is shutting down" in procfs.cmdline(pid))


def _established(host: str, port: int) -> int:
    """Connections from this machine to host:port that are ESTABLISHED (IPv4)."""
    try:
        packed = bytes(int(x) for x in host.split("."))
    except ValueError:
        return 0
    if len(packed) != 4:
        return 0
    want = f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(1 for line in lines if line.split()[2] == want and line.split()[3] == "01")


class NginxConfig(LbConfig):
    """`[lb] kind = "nginx"`: nginx on this machine, through an upstream file zdt owns and a
    graceful reload (`pid_file`), or with zdt's Lua peer list (libnginx-mod-http-lua: its
    admin location's unix socket, `admin_socket`), where a drain changes a shared dict and
    nothing is reloaded."""

    kind: Literal["nginx"] = "nginx"
    backend: Name = "app"
    upstream_file: str = ""              # the `upstream` block zdt rewrites
    pid_file: str = ""                   # its master's pid (the reload is a SIGHUP)
    config: str = ""                     # nginx.conf, tested (`nginx -t`) first
    binary: str = "nginx"
    admin_socket: str = ""
    node: Name | None = None             # nginx on this node of the domain (else here)
    local_paths = ("upstream_file", "pid_file", "config", "admin_socket")

    @model_validator(mode="after")
    def _complete(self) -> NginxConfig:
        if not (self.upstream_file and (self.pid_file or self.admin_socket)):
            raise ValueError("kind = \"nginx\" needs upstream_file (the file with the "
                             "upstream block zdt rewrites) and pid_file (nginx's pid, for "
                             "reloads) or admin_socket (zdt's Lua peer list, no reloads)")
        if self.node is not None:
            if not self.admin_socket:
                raise ValueError(f"nginx on node {self.node!r} is driven through zdt's Lua "
                                 "peer list: set admin_socket (reloads on another host are "
                                 "not supported)")
            relative = [p for p in (self.upstream_file, self.admin_socket)
                        if not p.startswith("/")]
            if relative:
                raise ValueError(f"{relative[0]!r}: an absolute path on node {self.node!r}")
        return self


def create(config: NginxConfig, domain: Domain, transports: Mapping[str, Transport]
           ) -> LoadBalancer:
    if config.admin_socket:
        from zdt.adapters.lb.nginx_lua import NginxLuaLB  # it builds on this module

        return NginxLuaLB(config, transports[config.node] if config.node else None)
    return NginxLB(config, LocalTransport("load balancer"))


register("lb", NginxConfig, create)

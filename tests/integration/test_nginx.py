"""nginx as the load balancer, for real. With zdt's Lua peer list (`--lb nginx`) a drain
changes a shared dict, no reload: under keep-alive load at capacity nothing may fail, and
nginx's own counters witness it. Without the Lua module (`--lb nginx-reload`) zdt marks
servers `down` in the upstream file it owns and reloads nginx."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.client import HTTPConnection, RemoteDisconnected
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import running_sandbox, zdt, zdt_under_load
from zdt import domain as dm
from zdt import http, procfs
from zdt.adapters.lb.nginx import NginxLB
from zdt.adapters.lb.nginx_lua import NginxLuaLB
from zdt.adapters.transport.local import LocalTransport
from zdt.errors import AdapterError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(),
                       reason="needs nginx (`.ci/run` installs it)"),
]


@pytest.fixture
def nsb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 1, admin=False, lb="nginx") as info:
        yield info


@pytest.fixture
def rsb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 1, admin=False, lb="nginx-reload") as info:
        yield info


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def workers(info: dict[str, Any]) -> set[int]:
    """nginx's workers that take connections (not the old ones shutting down)."""
    master = int(Path(info["dir"], "nginx", "nginx.pid").read_text())
    return {pid for pid in procfs.children(master)
            if "shutting down" not in procfs.cmdline(pid)}


class KeptAlive:
    """Clients that keep their connection to nginx open across requests (HTTP/1.1), as
    browsers and most HTTP libraries do. A request on a connection the server had closed
    gets no answer and is sent again on a new one, as those clients do; an answer of 5xx
    (nginx could not reach the server it chose) is a failure."""

    def __init__(self, url: str, clients: int = 2) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.answers, self.failures, self.reconnects = 0, [], 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def __enter__(self) -> KeptAlive:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _client(self) -> None:
        conn = HTTPConnection(self.host, self.port, timeout=10)
        while not self._stop.wait(0.005):
            try:
                conn.request("GET", "/")
                reply = conn.getresponse()
                reply.read()
            except (RemoteDisconnected, ConnectionError):
                conn.close()
                self.reconnects += 1
                continue
            self.answers += 1
            if reply.status >= 500:
                self.failures.append(reply.status)
        conn.close()


async def test_restart_home_and_revert_through_nginx_without_a_reload(
        nsb: dict[str, Any]) -> None:
    upstream = nsb["nginx_upstream"]
    before, first_workers = digest(upstream), workers(nsb)
    r = await zdt_under_load(nsb["lb_url"], "rollout", "restart", "-d", nsb["domain"],
                             "--json")
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)["witness"]
    assert w["source"] == "nginx upstream app" and len(w["visits"]) == 3
    assert digest(upstream) == before                 # every server back, byte for byte
    r = await zdt_under_load(nsb["lb_url"], "rollout", "home", "-d", nsb["domain"],
                             "--archive", nsb["archives"]["v2"], "--json")
    assert r.returncode == 0, r.stderr
    wid = json.loads(r.stdout)["id"]
    replies = {json.loads((await http.get(nsb["lb_url"])).body)["version"] for _ in range(6)}
    assert replies == {"v2"}
    r = await zdt_under_load(nsb["lb_url"], "revert", wid, "-d", nsb["domain"], "--json")
    assert json.loads(r.stdout)["state"] == "reverted", r.stderr
    assert digest(upstream) == before
    assert workers(nsb) == first_workers              # not one reload: the same workers


async def test_restart_and_home_through_nginx_with_reloads(rsb: dict[str, Any]) -> None:
    """Each drain and ready reloads nginx. Clients that reconnect when a kept-alive
    connection closes (as browsers do) and new-connection clients see no failure; nginx
    keeps no counters: no witness."""
    upstream, first_workers = rsb["nginx_upstream"], workers(rsb)
    before = digest(upstream)
    with KeptAlive(rsb["lb_url"]) as kept:
        r = await zdt_under_load(rsb["lb_url"], "rollout", "restart", "-d", rsb["domain"],
                                 "--json", keep_alive=False, witness=False)
    assert r.returncode == 0, r.stderr
    assert kept.failures == [] and kept.answers > 30, (kept.failures, kept.answers)
    assert json.loads(r.stdout)["witness"]["unavailable"].startswith("open-source nginx")
    assert digest(upstream) == before
    assert not workers(rsb) & first_workers           # nginx really reloaded
    r = await zdt_under_load(rsb["lb_url"], "rollout", "home", "-d", rsb["domain"],
                             "--archive", rsb["archives"]["v2"], "--json", keep_alive=False,
                             witness=False)
    assert r.returncode == 0, r.stderr


async def test_nginx_errors_leave_the_file_as_nginx_has_it(rsb: dict[str, Any]) -> None:
    nsb = rsb
    domain = dm.load(nsb["domain"])
    upstream = Path(nsb["nginx_upstream"])
    lb = NginxLB(domain.lb, LocalTransport("load balancer"))
    server = domain.server("node2-s1")
    original = upstream.read_text()
    # a config nginx refuses: the change is undone, nothing reloaded, not retried
    conf = Path(nsb["dir"], "nginx", "nginx.conf")
    good = conf.read_text()
    conf.write_text(good.replace("worker_processes 2;", "worker_processes two;"))
    running = workers(nsb)
    with pytest.raises(AdapterError, match="nginx refuses its config") as err:
        await lb.drain([server])
    assert not err.value.retryable
    assert upstream.read_text() == original
    assert workers(nsb) == running                    # no reload happened
    conf.write_text(good)
    # a server the file does not name
    upstream.write_text(original.replace("# node2-s1", "# someone-else"))
    with pytest.raises(AdapterError, match=r"no line `server ADDRESS \[PARAMETERS\];  # node2-s1`"):
        await lb.state(server)
    upstream.write_text(original)
    # no nginx behind the pid file: said so, the file as it was
    gone = domain.lb.model_copy(update={"pid_file": str(Path(nsb["dir"], "nginx", "no.pid"))})
    with pytest.raises(AdapterError, match="nginx is not running"):
        await NginxLB(gone, LocalTransport("load balancer")).drain([server])
    assert upstream.read_text() == original
    # a reload that did not finish (zdt killed between the write and the reload): the
    # server is neither drained nor in rotation until a drain or ready reloads nginx
    upstream.write_text(original.replace("  # node2-s1", " down;  # node2-s1"
                                         ).replace("; down;", " down;"))
    pending = await lb.state(server)
    assert pending.admin == "pending" and pending.sessions > 0 and not pending.in_rotation
    running = workers(nsb)
    await lb.drain([server])
    assert not workers(nsb) & running                 # the drain reloaded all the same
    assert (await lb.state(server)).admin == "drain"
    await lb.ready([server])
    assert upstream.read_text() == original
    # and the real one drains and readies it, with nothing else changed
    await lb.drain([server])
    assert (await lb.state(server)).admin == "drain"
    assert upstream.read_text() == original.replace("  # node2-s1", " down;  # node2-s1"
                                                    ).replace("; down;", " down;")
    await lb.ready([server])
    assert upstream.read_text() == original
    r = zdt("preview", "-d", nsb["domain"], "restart", "--json")
    assert r.returncode == 0, r.stdout


async def test_the_lua_peer_list_is_what_nginx_routes(nsb: dict[str, Any]) -> None:
    domain = dm.load(nsb["domain"])
    upstream = Path(nsb["nginx_upstream"])
    lb = NginxLuaLB(domain.lb)
    server = domain.server("node2-s1")
    original = upstream.read_text()
    # drained: nginx sends it nothing, the file says so, and a reload of nginx (by an
    # operator) keeps it drained: the module loads the file again
    await lb.drain([server])
    assert (await lb.state(server)).admin == "drain"
    assert "down;  # node2-s1" in upstream.read_text()
    served = {json.loads((await http.get(nsb["lb_url"])).body)["server"] for _ in range(9)}
    assert served == {"node1-s1", "node3-s1"}
    master = int(Path(nsb["dir"], "nginx", "nginx.pid").read_text())
    running = workers(nsb)
    os.kill(master, signal.SIGHUP)
    while workers(nsb) & running:
        await asyncio.sleep(0.01)
    assert (await lb.state(server)).admin == "drain"
    await lb.ready([server])
    assert upstream.read_text() == original
    # a file written by a zdt that died before telling nginx: the state is what nginx
    # routes (still in rotation), and the next drain brings nginx in line
    upstream.write_text(original.replace(";  # node2-s1", " down;  # node2-s1"))
    assert (await lb.state(server)).admin == "ready"
    await lb.drain([server])
    assert (await lb.state(server)).admin == "drain"
    await lb.ready([server])
    assert upstream.read_text() == original
    # nginx counted every request itself, per server
    before = await lb.counters()
    for _ in range(6):
        await http.get(nsb["lb_url"])
    await http.get(nsb["lb_url"] + "fail")
    after = await lb.counters()
    assert not isinstance(before, str) and not isinstance(after, str)
    assert (after.backend.requests - before.backend.requests,
            after.backend.http_5xx - before.backend.http_5xx) == (7, 1)
    # and the time to each answer's head, added up (the metric gate's response time)
    await http.get(nsb["lb_url"] + "slow?ms=60")
    timed = await lb.counters()
    assert not isinstance(timed, str)
    assert 60 <= timed.backend.response_ms - after.backend.response_ms < 1000
    assert sorted(after.in_rotation) == ["node1-s1", "node2-s1", "node3-s1"]
    # the admin location takes states of known servers only, never an address
    for body, why in (("evil 192.0.2.1:80 up\n", "not a `NAME up|down` line"),
                      ("ghost up\n", "unknown server ghost")):
        with pytest.raises(AdapterError, match=why):
            await lb._ask("POST", body)
    assert sorted(after.in_rotation) == sorted((await lb.counters()).in_rotation)
    # a server the file does not name; an admin socket nobody answers on
    ghost = server.model_copy(update={"name": "ghost"})
    with pytest.raises(AdapterError, match="no line `server ADDRESS"):
        await lb.state(ghost)
    gone = domain.lb.model_copy(
        update={"admin_socket": str(Path(nsb["dir"], "nginx", "no.sock"))})
    with pytest.raises(AdapterError, match="cannot reach nginx's admin socket") as err:
        await NginxLuaLB(gone).drain([server])
    assert err.value.retryable

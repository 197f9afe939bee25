"""`zdt.lab.sandbox`: up builds a working domain, down leaves nothing running."""

from __future__ import annotations

import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import get, lb_servers

from zdt import domain as dm
from zdt.errors import ConfigError, ZdtError
from zdt.lab import sandbox
from zdt.lab.sandbox.processes import started_processes

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; init reaps it in its own time


def test_up_reports_what_it_built(small_sandbox: dict[str, Any]) -> None:
    info = small_sandbox
    assert {"dir", "domain", "lb_url", "haproxy_socket", "nodes", "archives"} <= info.keys()
    assert info["home_link"] is False
    assert info == sandbox.info(info["dir"])
    domain = dm.load(info["domain"])
    assert [n.name for n in domain.nodes] == ["node1", "node2"]
    assert domain.domain.admin == "admin"
    assert not domain.server("admin").lb
    assert domain.cluster("cluster1").servers == ("node1-s1", "node1-s2", "node2-s1", "node2-s2")
    for node in info["nodes"]:
        assert Path(node["home"], "VERSION").read_text().strip() == "v1"
        assert Path(node["home"]).is_dir() and not Path(node["home"]).is_symlink()
        assert node["home"] == str(Path(domain.node(node["name"]).root, "srv/app/home"))
        assert Path(node["supervisor_socket"]).is_socket()


def test_every_server_answers_directly_and_through_the_lb(
        small_sandbox: dict[str, Any]) -> None:
    info = small_sandbox
    for node in info["nodes"]:
        for server in node["servers"]:
            status, _, body = get(server["url"])
            assert (status, body["version"], body["server"], body["node"]) == (
                200, "v1", server["name"], node["name"])
    names = [s["name"] for s in lb_servers(info)]
    served = Counter(get(info["lb_url"])[2]["server"] for _ in range(3 * len(names)))
    # Round-robin over the LB servers only: each exactly 3 times, the admin server never.
    assert served == dict.fromkeys(names, 3)


def test_up_refuses_a_dir_with_a_running_sandbox(small_sandbox: dict[str, Any]) -> None:
    pids = {s["name"]: get(s["url"])[2]["pid"] for s in lb_servers(small_sandbox)}
    with pytest.raises(ConfigError, match="already running"):
        sandbox.up(small_sandbox["dir"])
    assert {s["name"]: get(s["url"])[2]["pid"] for s in lb_servers(small_sandbox)} == pids


def test_down_stops_everything_and_is_idempotent(short_dir: Path) -> None:
    d = short_dir / "sb"
    info = sandbox.up(d, nodes=2, servers_per_node=1, admin=False)
    ports = [int(info["lb_url"].rsplit(":", 1)[1].strip("/"))]
    ports += [s["port"] for node in info["nodes"] for s in node["servers"]]
    pids = [p.pid for p in started_processes(d)]
    assert len(pids) == 2 + 1 + 2  # supervisords, haproxy, servers
    assert all(listening(port) for port in ports)

    summary = sandbox.down(d)

    assert sorted(p["pid"] for p in summary["stopped"]) == sorted(pids)
    assert summary["killed"] == []
    assert not any(alive(pid) for pid in pids)
    assert not any(listening(port) for port in ports)
    assert sandbox.down(d) == {"dir": str(d), "stopped": [], "killed": []}


def test_a_failed_up_stops_what_it_started(short_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def lb_never_ready(*_: object) -> None:
        raise ZdtError("HAProxy is not ready (injected)")

    monkeypatch.setattr(sandbox, "_wait_lb_up", lb_never_ready)
    d = short_dir / "sb"
    with pytest.raises(ZdtError, match="injected"):
        sandbox.up(d, nodes=2, servers_per_node=1)
    ports = [s.port for s in dm.load(d / "domain.toml").servers]
    assert started_processes(d) == []
    assert not any(listening(port) for port in ports)
    assert not (d / "sandbox.json").exists()


def test_a_dir_too_long_for_unix_sockets_is_refused_before_anything_starts() -> None:
    d = Path("/tmp", "zdt-" + "x" * 90)
    with pytest.raises(ConfigError, match="too long"):
        sandbox.up(d)
    assert not d.exists()


def test_bad_sizes_are_refused(short_dir: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1 node"):
        sandbox.up(short_dir / "sb", nodes=0)
    assert os.listdir(short_dir) == []

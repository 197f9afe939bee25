"""Rollouts over SSH on the isolated sandbox: every node a network namespace with its own
address, sshd, supervisord and private /srv, /opt and /run, HAProxy in front of them.

Needs root (namespaces, mounts) and OpenSSH's sshd; `.ci/run` runs as root and installs it.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import recorded_workflows

from conftest import (
    ZDT,
    capacity_load,
    needs_isolation,
    running_sandbox,
    served,
    zdt,
    zdt_under_load,
)
from zdt import adapters, http, procfs
from zdt import domain as dm
from zdt.adapters.services.supervisor import call as supervisor_call
from zdt.lab import sandbox
from zdt.lab.sandbox.isolated import wait_sshd
from zdt.lab.sandbox.processes import live_processes, wait_gone
from zdt.workflow.admission import open_journal

ZLIB = sorted(glob.glob("/usr/lib/*/libz.so.1") + glob.glob("/lib/*/libz.so.1"))[0]

pytestmark = [pytest.mark.integration, needs_isolation]


@pytest.fixture
def isb(short_dir: Path) -> Iterator[dict[str, Any]]:
    with running_sandbox(short_dir, 3, 1, admin=False, isolated=True) as info:
        yield info


async def on_nodes(info: dict[str, Any], argv: list[str]) -> dict[str, str]:
    """argv's stdout on every node, run over SSH as zdt runs it: what the node sees."""
    ts = adapters.transports(dm.load(info["domain"]))
    try:
        return {n: (await t.run(argv)).stdout.strip() for n, t in ts.items()}
    finally:
        for t in ts.values():
            await t.close()


async def homes(info: dict[str, Any]) -> set[str]:
    """The versions of the homes, as each node sees its /srv/app/home."""
    return set((await on_nodes(info, ["cat", "/srv/app/home/VERSION"])).values())


def home(info: dict[str, Any], *extra: str) -> list[str]:
    return ["rollout", "home", "-d", info["domain"], "--archive", info["archives"]["v2"],
            "--shutdown-timeout", "10", "--json", *extra]


def failed_checks(r: subprocess.CompletedProcess[str]) -> set[tuple[str, str]]:
    return {(c["node"], c["name"]) for c in json.loads(r.stdout)["preconditions"]
            if not c["ok"]}


def node(info: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in info["nodes"] if n["name"] == name)


def sshd_pid(info: dict[str, Any], name: str) -> int:
    sock = node(info, name)["supervisor_socket"]
    return int(supervisor_call(sock, "getProcessInfo", "sshd")["pid"])


def kill_sshd(info: dict[str, Any], name: str) -> None:
    """SIGKILL the node's sshd and every session it forked: the node is unreachable."""
    pid = sshd_pid(info, name)
    procs = live_processes([pid, *procfs.descendants({pid})], "sshd")
    assert procs and procs[0].pid == pid
    for p in procs:
        p.signal(signal.SIGKILL)
    assert wait_gone(procs, 5.0) == []


def start_sshd(info: dict[str, Any], name: str) -> None:
    supervisor_call(node(info, name)["supervisor_socket"], "startProcess", "sshd", False)
    wait_sshd(node(info, name)["address"], 10.0)


def wait_step(info: dict[str, Any], done: Any, timeout: float = 60.0) -> None:
    """Poll the journal until `done(steps)` holds for the workflow running now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(info["dir"], "state", "journal.db").exists():
            journal = open_journal(Path(info["domain"]))
            try:
                holder = journal.holder()
                if holder is not None and done(journal.steps(holder.id)):
                    return
            finally:
                journal.close()
        time.sleep(0.02)
    raise AssertionError("the workflow never reached the awaited step")


def rollout_losing_node2(isb: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    """A home rollout in the background whose node2 loses its sshd (and sessions) as
    node1's visit ends."""
    proc = subprocess.Popen([*ZDT, *home(isb, *extra)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_step(isb, lambda steps: any(
        s.node == "node1" and s.name == "start" and s.state == "done" for s in steps))
    kill_sshd(isb, "node2")
    return proc


async def test_home_rollout_and_revert_over_ssh(isb: dict[str, Any]) -> None:
    assert await homes(isb) == {"v1"}
    result = await zdt_under_load(isb["lb_url"], *home(isb))
    assert result.returncode == 0, result.stderr
    wid = json.loads(result.stdout)["id"]
    # the same path on every node, each node's own private copy of it
    assert await homes(isb) == {"v2"}
    assert {(Path(n["home"]) / "VERSION").read_text().strip() for n in isb["nodes"]} == {"v2"}
    assert await served(isb) == {"v2"}
    reverted = await zdt_under_load(isb["lb_url"], "revert", wid, "-d", isb["domain"], "--json")
    assert reverted.returncode == 0, reverted.stderr
    assert json.loads(reverted.stdout)["state"] == "reverted"
    assert await homes(isb) == {"v1"}
    assert await served(isb) == {"v1"}
    # a library node1's server loads, replaced under it: found over SSH, restarted alone
    library = Path(isb["nodes"][0]["home"]) / "lib" / "native" / "libapp.so"
    library.parent.mkdir()
    shutil.copyfile(ZLIB, library)
    loaded = zdt("rollout", "restart", "-d", isb["domain"], "--targets", "node1-s1")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    shutil.copyfile(ZLIB, library.with_suffix(".new"))
    os.replace(library.with_suffix(".new"), library)
    found = json.loads(zdt("stale", "-d", isb["domain"], "--json").stdout)
    assert [n.get("error") for n in found["nodes"]] == [None, None, None], found["nodes"]
    assert all(r["pid"] for r in found["servers"]) and found["stale"] == ["node1-s1"]
    [process] = found["servers"][0]["stale"]
    assert process["files"][0]["path"] == "/srv/app/home/lib/native/libapp.so"
    result = await zdt_under_load(isb["lb_url"], "rollout", "restart", "-d", isb["domain"],
                                  "--stale", "--json")
    assert {s["node"] for s in json.loads(result.stdout)["steps"]} == {"node1"}
    assert json.loads(zdt("stale", "-d", isb["domain"], "--json").stdout)["stale"] == []


async def test_broken_release_over_ssh_is_reverted(isb: dict[str, Any]) -> None:
    argv = home(isb)
    argv[argv.index(isb["archives"]["v2"])] = isb["archives"]["broken"]
    result = await zdt_under_load(isb["lb_url"], *argv, "--health-timeout", "3",
                                  "--retries", "0")
    assert result.returncode == 1
    assert json.loads(result.stdout)["state"] == "reverted"
    assert await homes(isb) == {"v1"}
    assert await served(isb) == {"v1"}


async def test_combined_update_over_ssh(isb: dict[str, Any]) -> None:
    result = await zdt_under_load(
        isb["lb_url"], "rollout", "update", "-d", isb["domain"], "--archive",
        isb["archives"]["v2"], "--runtime-home", isb["runtime_home"], "--apps", isb["apps"],
        "--shutdown-timeout", "10", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    drains = [s for s in report["steps"] if s["name"] == "drain"]
    assert [s["node"] for s in drains] == ["node1", "node2", "node3"]   # once per node
    assert await homes(isb) == {"v2"}
    scripts = await on_nodes(isb, ["grep", "-rh", "JAVA_HOME=", "/srv/app/home/bin"])
    assert all(isb["runtime_home"] in text for text in scripts.values()), scripts
    replies = [json.loads((await http.get(isb["lb_url"])).body) for _ in range(6)]
    assert {(r["version"], r["app_version"]) for r in replies} == {("v2", "2")}


async def test_sshd_killed_mid_rollout_then_revert(isb: dict[str, Any]) -> None:
    """node2's sshd dies as node1's visit ends: node2's step fails after its retries, the
    automatic revert cannot reach node2 and says so; with sshd back, `zdt revert` ends
    it. The LB keeps serving throughout."""
    async with capacity_load(isb["lb_url"]) as load:
        proc = await asyncio.to_thread(rollout_losing_node2, isb, "--retries", "1",
                                       "--retry-delay", "0.3")
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 1, err
        report = json.loads(out)
        assert report["state"] == "revert-failed", report
        assert "node2" in report["error"] and "zdt revert" in report["error"]
        failed = [s for s in report["steps"] if s["node"] == "node2" and s["error"]]
        # tried and retried once, then its revert likewise
        assert failed and failed[0]["attempts"] == 4
        assert "cannot reach root@" in failed[0]["error"], failed
        assert "connection refused" in failed[0]["error"], failed
        start_sshd(isb, "node2")
        again = await asyncio.to_thread(zdt, "revert", report["id"], "-d", isb["domain"],
                                        "--json")
        assert json.loads(again.stdout)["state"] == "reverted", again.stderr
    assert load.stats.failed == 0, load.stats.errors
    assert load.stats.requests > 30
    assert await homes(isb) == {"v1"}
    assert await served(isb) == {"v1"}


async def test_sshd_killed_without_auto_revert_waits_then_resumes(isb: dict[str, Any]
                                                                   ) -> None:
    """With --no-auto-revert the workflow waits in `failed`, holding the domain; once sshd
    is back, `zdt resume` finishes it."""
    async with capacity_load(isb["lb_url"]) as load:
        proc = await asyncio.to_thread(rollout_losing_node2, isb, "--retries", "1",
                                       "--retry-delay", "0.3", "--no-auto-revert")
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 1, err
        report = json.loads(out)
        assert report["state"] == "failed"
        assert [s["node"] for s in report["steps"] if s["state"] == "failed"] == ["node2"]
        other = await asyncio.to_thread(zdt, *home(isb))
        assert other.returncode == 4                          # the domain is still held
        start_sshd(isb, "node2")
        again = await asyncio.to_thread(zdt, "resume", report["id"], "-d", isb["domain"],
                                        "--json")
        assert json.loads(again.stdout)["state"] == "succeeded", again.stderr
    assert load.stats.failed == 0, load.stats.errors
    assert await homes(isb) == {"v2"}


async def test_sshd_back_during_retries_the_rollout_goes_on(isb: dict[str, Any]) -> None:
    """The connection is opened again by the next attempt: sshd restarted while node2's
    step is being retried lets the same workflow finish."""
    async with capacity_load(isb["lb_url"]) as load:
        proc = await asyncio.to_thread(rollout_losing_node2, isb, "--retries", "10",
                                       "--retry-delay", "0.3")
        await asyncio.to_thread(wait_step, isb, lambda steps: any(
            s.node == "node2" and s.attempts >= 2 for s in steps))
        start_sshd(isb, "node2")
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["state"] == "succeeded"
    assert load.stats.failed == 0, load.stats.errors
    assert await homes(isb) == {"v2"}


def test_host_keys_are_verified(isb: dict[str, Any], tmp_path: Path) -> None:
    """A changed key is refused, also with --accept-new-host-keys; an unknown one is
    refused unless that flag is given, which adds exactly the node's real key."""
    known = Path(isb["ssh"]["known_hosts"])
    lines = known.read_text().splitlines(keepends=True)
    before = {n["name"]: (Path(n["home"]) / "VERSION").read_text() for n in isb["nodes"]}
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    addr2, addr3 = node(isb, "node2")["address"], node(isb, "node3")["address"]
    forged = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(lines[0] + f"{addr2} {' '.join(forged)}\n" + lines[2])
    for extra in ((), ("--accept-new-host-keys",)):
        r = zdt(*home(isb, *extra))
        assert r.returncode == 3, r.stderr
        assert "node2" in r.stderr and "CHANGED" in r.stderr and "ssh-keygen -R" in r.stderr
        assert known.read_text() == lines[0] + f"{addr2} {' '.join(forged)}\n" + lines[2]
    known.write_text(lines[0] + lines[1])                       # node3 never seen
    r = zdt("preview", "-d", isb["domain"], "home", "--archive", isb["archives"]["v2"],
            "--json")
    assert r.returncode == 3
    assert ("node3", "reachable") in failed_checks(r)
    assert "is unknown" in r.stdout and "--accept-new-host-keys" in r.stdout
    assert known.read_text() == lines[0] + lines[1]
    r = zdt("preview", "-d", isb["domain"], "home", "--archive", isb["archives"]["v2"],
            "--accept-new-host-keys")
    assert r.returncode == 0, r.stderr
    real = (Path(node(isb, "node3")["root"]) / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    assert known.read_text() == lines[0] + lines[1] + f"{addr3} {' '.join(real.split()[:2])}\n"
    assert {n["name"]: (Path(n["home"]) / "VERSION").read_text()
            for n in isb["nodes"]} == before
    assert recorded_workflows(isb["domain"]) == []          # no workflow was recorded


def test_a_known_hosts_file_not_there_yet_trusts_nothing(isb: dict[str, Any]) -> None:
    """Not even ~/.ssh/known_hosts: only --accept-new-host-keys fills it, with the real keys."""
    d = Path(isb["dir"])
    fresh = d / "fresh.toml"
    fresh.write_text(Path(isb["domain"]).read_text().replace(
        'known_hosts = "ssh/known_hosts"', 'known_hosts = "ssh/new/known_hosts"'))
    home_dir = d / "operator"                  # whose own known_hosts trusts every node
    (home_dir / ".ssh").mkdir(parents=True)
    shutil.copy(isb["ssh"]["known_hosts"], home_dir / ".ssh" / "known_hosts")
    r = subprocess.run([*ZDT, "preview", "-d", str(fresh), "restart", "--json"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(home_dir)})
    assert r.returncode == 3
    assert {(n, "reachable") for n in ("node1", "node2", "node3")} <= failed_checks(r)
    assert not (d / "ssh" / "new").exists()
    r = zdt("preview", "-d", str(fresh), "restart", "--json", "--accept-new-host-keys")
    assert r.returncode == 0, r.stdout
    assert sorted((d / "ssh" / "new" / "known_hosts").read_text().splitlines()) == \
        sorted(Path(isb["ssh"]["known_hosts"]).read_text().splitlines())
    assert (d / "ssh" / "new" / "known_hosts").stat().st_mode & 0o077 == 0


def test_unreachable_node_and_refused_key(isb: dict[str, Any], tmp_path: Path) -> None:
    text = Path(isb["domain"]).read_text()
    addr3 = node(isb, "node3")["address"]
    nowhere = Path(isb["dir"], "nowhere.toml")
    nowhere.write_text(text.replace(f"ssh://root@{addr3}", "ssh://root@198.18.255.254")
                       .replace("[ssh]\n", "[ssh]\nconnect_timeout = 2\n"))
    r = zdt("preview", "-d", str(nowhere), "restart", "--json")
    assert r.returncode == 3
    assert ("node3", "reachable") in failed_checks(r)
    assert {n for n, _ in failed_checks(r)} == {"node3"}
    assert "cannot reach root@198.18.255.254" in r.stdout
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    wrong_key = Path(isb["dir"], "wrong-key.toml")
    wrong_key.write_text(text.replace('identity = "ssh/id_ed25519"',
                                      f"identity = {json.dumps(str(stranger))}"))
    r = zdt("preview", "-d", str(wrong_key), "restart", "--json")
    assert r.returncode == 3
    assert {(n, "reachable") for n in ("node1", "node2", "node3")} <= failed_checks(r)
    assert "refused every key" in r.stdout


def test_sandbox_down_leaves_nothing(short_dir: Path) -> None:
    """Every process in the nodes' namespaces goes (a session's setsid child too), then
    the namespaces and links; a same-named link that is not the sandbox's own stays."""
    info = json.loads(subprocess.run(
        [*ZDT, "sandbox", "up", "--dir", str(short_dir / "sb"), "--nodes", "2",
         "--isolated", "--json"], capture_output=True, text=True, check=True).stdout)
    try:
        check_down_leaves_nothing(info, short_dir)
    finally:
        sandbox.down(short_dir / "sb")


def check_down_leaves_nothing(info: dict[str, Any], short_dir: Path) -> None:
    record = Path(info["dir"], "network.json").read_text()
    net = json.loads(record)
    asyncio.run(on_nodes(info, ["sh", "-c",             # a daemon that left its session
                                "setsid -f sleep 300.25 </dev/null >/dev/null 2>&1"]))
    inside = [int(p) for ns in net["namespaces"] for p in subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]
    assert len(inside) >= 2 + 2 + 2 + 2              # supervisords, sshds, servers, sleeps
    r = zdt("sandbox", "down", "--dir", str(short_dir / "sb"))
    assert r.returncode == 0, r.stderr
    assert [p for p in inside if procfs.stat(p) is not None and procfs.stat(p).state != "Z"] == []
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in spaces for ns in net["namespaces"])
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert all(f" {name}" not in links for name in [net["bridge"], *net["links"]])
    assert not Path(info["dir"], "network.json").exists()
    # someone else's bridge under the recorded name: a stale record must not remove it
    subprocess.run(["ip", "link", "add", net["bridge"], "type", "bridge"], check=True)
    try:
        Path(info["dir"], "network.json").write_text(record)
        r = zdt("sandbox", "down", "--dir", str(short_dir / "sb"))
        assert r.returncode == 0, r.stderr
        assert subprocess.run(["ip", "link", "show", net["bridge"]],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "link", "delete", net["bridge"]], check=False)


@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="needs nginx")
async def test_home_rollout_revert_and_broken_over_ssh_behind_nginx(short_dir: Path) -> None:
    with running_sandbox(short_dir, 3, 1, admin=False, isolated=True, lb="nginx") as info:
        upstream = Path(info["nginx_upstream"]).read_text()
        assert "198.18." in upstream               # nginx reaches the nodes' own addresses
        result = await zdt_under_load(info["lb_url"], *home(info))
        assert result.returncode == 0, result.stderr
        assert await homes(info) == {"v2"}
        assert await served(info) == {"v2"}
        assert Path(info["nginx_upstream"]).read_text() == upstream
        wid = json.loads(result.stdout)["id"]
        back = await zdt_under_load(info["lb_url"], "revert", wid, "-d", info["domain"],
                                    "--json")
        assert json.loads(back.stdout)["state"] == "reverted", back.stderr
        argv = home(info)
        argv[argv.index(info["archives"]["v2"])] = info["archives"]["broken"]
        broken = await zdt_under_load(info["lb_url"], *argv, "--health-timeout", "2",
                                      "--retries", "0")
        assert json.loads(broken.stdout)["state"] == "reverted"
        assert await homes(info) == {"v1"}
        assert await served(info) == {"v1"}
        assert Path(info["nginx_upstream"]).read_text() == upstream


def test_ssh_config_aliases_users_ports_and_keys(isb: dict[str, Any]) -> None:
    """Nodes named by ~/.ssh/config-style aliases: host name, user, port (the nodes' sshd
    listens on 22 and 2222) and identity file all come from the config file."""
    d = Path(isb["dir"])
    config = d / "ssh" / "config"
    config.write_text("".join(
        f"Host web{i}\n    HostName {n['address']}\n    User root\n    Port 2222\n"
        f"    IdentityFile {isb['ssh']['identity']}\n" for i, n in enumerate(isb["nodes"], 1)))
    text = Path(isb["domain"]).read_text().replace(
        'identity = "ssh/id_ed25519"', 'config = "ssh/config"')
    for i, n in enumerate(isb["nodes"], 1):
        text = text.replace(f"ssh://root@{n['address']}", f"ssh://web{i}")
    aliased = d / "aliased.toml"
    aliased.write_text(text)
    r = zdt("preview", "-d", str(aliased), "restart", "--json")
    assert r.returncode == 0, r.stdout
    r = zdt("rollout", "restart", "-d", str(aliased), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"

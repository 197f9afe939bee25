"""A real local domain for demos and tests, built without root (DESIGN.md, "The sandbox").

Layout of a sandbox directory D:

  D/domain.toml                   the domain, with paths relative to D
  D/sandbox.json                  URLs, paths and pids, for tests and the demo
  D/state/                        the domain's state_dir
  D/haproxy/                      haproxy.cfg, haproxy.pid, admin.sock, haproxy.out
  D/inputs/                       ready-made inputs (see zdt.lab.sandbox.inputs): the homes
      v2/, broken/, degraded/…    ... v2, broken and degraded homes, their archives with sidecars,
      v2.tar.gz, broken.tar.gz    ... v2.tar.gz.json and broken.tar.gz.json
  D/nodes/<node>/                 the node's "/": every node path lives below it
      srv/app/home/               the v1 home (same node path on every node); with
                                  home_link, a symlink to releases/v1 beside it
      etc/supervisord.conf        the node's service manager ...
      run/supervisor.sock         ... its socket and pidfile
      var/log/                    supervisord's and the servers' logs

Every process started here is stopped by `down` through its pid (read from the pidfiles)
after checking that the pid still belongs to that process; nothing is matched by name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zdt import atomic
from zdt import domain as domain_model
from zdt.adapters.lb.haproxy import parse_stat
from zdt.adapters.services.supervisor import call as supervisor_call
from zdt.errors import ConfigError, PreconditionError, ZdtError
from zdt.lab.sandbox import inputs
from zdt.lab.sandbox import isolated as isolation
from zdt.lab.sandbox import layout as layout_module
from zdt.lab.sandbox.layout import (
    BACKEND,
    CLUSTER,
    HOME,
    NGINX_MODULES,
    SUPERVISOR_SOCKET,
    Layout,
    SandboxServer,
    write_files,
)
from zdt.lab.sandbox.processes import (
    SPAWN_TIMEOUT,
    Proc,
    live_processes,
    spawn_daemon,
    started_processes,
    tail,
    wait_gone,
    wait_pidfile,
)
from zdt.waiting import polls

READY_TIMEOUT = 15.0   # s; the sample service answers ~0.2 s after spawn, HAProxy in ~0.1 s
STOP_TIMEOUT = 10.0    # s; the sample service stops in milliseconds when idle
KILL_TIMEOUT = 5.0     # s; after SIGKILL only the kernel is left to wait for
# sun_path holds 108 bytes with the NUL; supervisord binds "<path>.<pid>" and HAProxy
# "<path>.<pid>.tmp" before renaming, so 12 bytes are kept for those suffixes.
MAX_SOCKET_PATH = 107 - 12


def domain_path(dir: str | Path) -> Path:
    return Path(dir).resolve() / "domain.toml"


def info(dir: str | Path) -> dict:
    """What `up` reported for the sandbox in `dir` (D/sandbox.json)."""
    path = Path(dir).resolve() / "sandbox.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no sandbox here; run `zdt sandbox up --dir {dir}`") from None


def up(dir: str | Path, nodes: int = 3, servers_per_node: int = 2, *,
       admin: bool = True, home_link: bool = False, partitions: tuple[str, ...] = (),
       isolated: bool = False, lb: str = "haproxy", lbs: int = 1) -> dict:
    """Build and start a sandbox in `dir`; return (and write to D/sandbox.json) its info.

    Every node gets a fresh v1 home at /srv/app/home; with `home_link` that path is a
    relative symlink to /srv/app/releases/v1 (the servers are started through the link).
    D/inputs gets the v2, broken and degraded homes and their archives ("archives" in the
    info).

    With `isolated` (root), every node is a network namespace of its own with an sshd,
    reached over SSH (see zdt.lab.sandbox.isolated); the domain has ssh:// addresses.
    With `lbs` > 1, as many HAProxies stand in front of the same servers (an HA pair:
    `[[lb]]` in the domain; the second's Runtime API on loopback TCP).

    Returns once every server answers /health and HAProxy reports every LB server UP.
    On any failure, whatever was started is stopped again before the error is raised.
    """
    if nodes < 1 or servers_per_node < 1:
        raise ConfigError(f"a sandbox needs at least 1 node and 1 server per node "
                          f"(got nodes={nodes}, servers_per_node={servers_per_node})")
    if not isolated:
        return _up(dir, nodes, servers_per_node, admin, home_link, partitions, None, lb, lbs)
    isolation.require()
    isolation.check_hidden([sys.executable, layout_module.IMPORT_ROOT])
    _refuse_running(Path(dir).resolve())
    down(dir)   # what a sandbox that crashed here left: its network and stragglers
    with isolation.reserving():
        net = isolation.plan(nodes + (lbs if lbs > 1 else 0))
        return _up(dir, nodes, servers_per_node, admin, home_link, partitions, net, lb, lbs)


def _up(dir: str | Path, nodes: int, servers_per_node: int, admin: bool, home_link: bool,
        partitions: tuple[str, ...], net: isolation.Network | None, lb: str,
        lbs: int = 1) -> dict:
    layout = Layout.plan(Path(dir).resolve(), nodes, servers_per_node, admin=admin,
                         home_link=home_link, partitions=tuple(partitions),
                         addresses=net.addresses if net else (), lb=lb, lbs=lbs)
    _check_paths(layout)
    _refuse_running(layout.dir)
    lb_binary = _lb_binary(lb)
    # A report left by an earlier sandbox here would describe processes that are gone.
    (layout.dir / "sandbox.json").unlink(missing_ok=True)
    write_files(layout)
    if net is not None:
        isolation.write_ssh(layout)
    domain_model.load(layout.domain)  # the file is zdt's input: it must load as written
    try:
        if net is not None:
            isolation.create(layout.dir, net)
        # The inputs are built while the processes start: that is mostly waiting.
        with ThreadPoolExecutor(max_workers=1) as pool:
            building = pool.submit(inputs.build, layout.dir)
            pids = _start(layout, lb_binary, net)  # if this fails, the pool still waits for
            archives = building.result()    # the build before `down` below
    except BaseException:
        down(layout.dir)
        raise
    report = _report(layout, pids, archives, net)
    atomic.write_text(layout.dir / "sandbox.json", json.dumps(report, indent=2) + "\n", 0o644)
    return report


def down(dir: str | Path) -> dict:
    """Stop every process of the sandbox in `dir` by pid; safe to call any number of times."""
    d = Path(dir).resolve()
    procs = started_processes(d)
    net = isolation.recorded(d)
    if net is not None:   # and whatever else lives in its namespaces
        known = {p.pid for p in procs}
        procs += live_processes([p for p in isolation.pids_in(net) if p not in known],
                                "process")
    # The servers get SIGTERM directly too, as supervisord would send them: supervisord
    # only notices its own SIGTERM on its next 1 s tick, but wakes at once when its
    # children's pipes close, so this makes `down` take milliseconds instead of ~2 s.
    for p in procs:
        p.signal(signal.SIGTERM)
    left = wait_gone(procs, STOP_TIMEOUT, each_poll=lambda: _wake_supervisords(d))
    for p in left:
        p.signal(signal.SIGKILL)
    stuck = wait_gone(left, KILL_TIMEOUT)
    # The network goes in any case: a namespace outlives its name while a process is in it.
    isolation.destroy(d)
    if stuck:
        raise ZdtError(f"{d}: still running after SIGKILL: {_describe(stuck)}; check them "
                       f"with `ps -o pid,stat,cmd -p PID`")
    for pidfile in (*d.glob("haproxy*/haproxy.pid"), d / "nginx" / "nginx.pid",
                    *d.glob("nodes/*/run/supervisord.pid")):
        pidfile.unlink(missing_ok=True)  # every process named in them is gone now
    return {"dir": str(d),
            "stopped": [p.summary() for p in procs if p not in left],
            "killed": [p.summary() for p in left]}


def _wake_supervisords(d: Path) -> None:
    """Connect to each supervisord's socket and hang up at once.

    supervisord reaps its children only when its main loop wakes, which a signal does not
    do: a stop would often wait for its next 1 s tick. Activity on its socket wakes it.
    """
    for path in d.glob(f"nodes/*/{SUPERVISOR_SOCKET.lstrip('/')}"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, \
                contextlib.suppress(OSError):
            s.connect(str(path))


def _check_paths(layout: Layout) -> None:
    for path in (*(layout.supervisor_socket(n) for n in layout.hosts), layout.haproxy_socket,
                 *(Path(layout.admin_address(n)) for n in range(1, layout.haproxies + 1)
                   if not layout.admin_address(n).startswith("tcp://"))):
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"{layout.dir}: too long for a sandbox: the Unix socket {path} would be "
                f"{len(os.fsencode(path))} bytes, the limit is {MAX_SOCKET_PATH}; use a "
                f"shorter --dir (e.g. under /tmp)")
    if layout.isolated and any(str(layout.dir).startswith(f"/{m}/") or
                               str(layout.dir) == f"/{m}" for m in isolation.MOUNTS):
        raise ConfigError(f"{layout.dir}: an isolated sandbox cannot live under "
                          f"{', '.join('/' + m for m in isolation.MOUNTS)}: the nodes have "
                          f"their own dirs there; choose e.g. a dir under /tmp")
    bad = set(str(layout.dir)) & set(" \t\n\"'%#;$\\")
    if bad:
        raise ConfigError(f"{layout.dir}: the sandbox directory may not contain any of "
                          f"{''.join(sorted(bad))!r} (they would need quoting in the "
                          f"supervisord and HAProxy configs); choose a plain path")


def _refuse_running(d: Path) -> None:
    running = [p for p in started_processes(d) if p.alive()]
    if running:
        raise ConfigError(f"{d}: a sandbox is already running there ({_describe(running)}); "
                          f"run `zdt sandbox down --dir {d}` first, or choose another --dir")


def _lb_binary(lb: str) -> str:
    """The LB's executable (haproxy or nginx, which are also their Debian packages)."""
    # /usr/sbin is not on a normal user's PATH on Debian, but both run fine from there.
    name = "nginx" if lb.startswith("nginx") else lb
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise PreconditionError(f"{name} is not installed (Debian/Ubuntu: `apt-get install "
                                f"{name}`); the sandbox needs it as its LB")
    if lb == "nginx" and not (NGINX_MODULES / "ngx_http_lua_module.so").exists():
        raise PreconditionError("--lb nginx drains through zdt's Lua peer list and needs "
                                "nginx's Lua module (Debian/Ubuntu: `apt-get install "
                                "libnginx-mod-http-lua`); --lb nginx-reload needs none")
    return found


def _start(layout: Layout, lb_binary: str, net: isolation.Network | None) -> dict:
    # Nodes are independent: starting their supervisords side by side saves ~0.1 s each.
    with ThreadPoolExecutor(max_workers=len(layout.hosts)) as pool:
        pids = list(pool.map(lambda node: _start_supervisord(layout, node, net),
                             layout.hosts))
    _wait_healthy(layout)
    for address in layout.addresses:
        isolation.wait_sshd(address, READY_TIMEOUT)
    supervisords = dict(zip(layout.hosts, pids, strict=True))
    if layout.nginx and layout.lb_nodes:       # their supervisords started them
        for url in layout.lb_urls():
            _wait_answers(f"{url}health", "nginx")
        return {"supervisord": supervisords}
    if layout.nginx:
        conf = layout.dir / "nginx" / "nginx.conf"
        spawn_daemon([lb_binary, "-e", str(layout.dir / "nginx" / "error.log"), "-c", str(conf)],
                      layout.dir / "nginx" / "nginx.out", "nginx")
        nginx = wait_pidfile(layout.dir / "nginx" / "nginx.pid")
        _wait_answers(f"http://127.0.0.1:{layout.lb_port}/health", "nginx")
        return {"supervisord": supervisords, "nginx": nginx}
    haproxy_pids: list[int] = []
    for number in range(1, layout.haproxies + 1):
        if layout.lb_nodes:
            break         # on LB hosts of their own: their supervisords started them
        d = layout.haproxy_dir(number)
        spawn_daemon([lb_binary, "-D", "-p", str(d / "haproxy.pid"), "-f",
                      str(d / "haproxy.cfg")], d / "haproxy.out", f"haproxy {number}")
        haproxy_pids += wait_pidfile(d / "haproxy.pid")
    for number in range(1, layout.haproxies + 1):
        _wait_lb_up(layout, number)
    return {"supervisord": supervisords, "haproxy": haproxy_pids}


def _wait_answers(url: str, what: str) -> None:
    for _ in polls(READY_TIMEOUT):
        if _answers(url):
            return
    raise ZdtError(f"{what} does not answer {url} after {READY_TIMEOUT:.0f} s")


def _start_supervisord(layout: Layout, node: str, net: isolation.Network | None) -> int:
    root = layout.root(node)
    conf = root / "etc" / "supervisord.conf"
    argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    if net is not None:
        argv = isolation.node_argv(layout, net, node, argv)
    spawn_daemon(argv, root / "var" / "log" / "supervisord.out", f"supervisord of {node}")
    pid = wait_pidfile(root / "run" / "supervisord.pid")[0]
    # Ask it something: this proves the socket works, and the request wakes its main
    # loop, which otherwise spawns the autostart programs only after its first 1 s poll.
    sock = str(layout.supervisor_socket(node))
    for _ in polls(SPAWN_TIMEOUT):
        try:
            supervisor_call(sock, "getState")
            return pid
        except (OSError, http.client.HTTPException, xmlrpc.client.Error):
            continue
    raise ZdtError(f"supervisord of {node} (pid {pid}) does not answer on {sock}; "
                   f"see {root / 'var' / 'log' / 'supervisord.log'}")


def _wait_healthy(layout: Layout) -> None:
    waiting = list(layout.servers)
    for _ in polls(READY_TIMEOUT):
        waiting = [s for s in waiting
                   if not _answers(f"http://{layout.host(s.node)}:{s.port}/health")]
        if not waiting:
            return
    logs = {s.name: layout.root(s.node) / "var" / "log" / f"{s.name}.err.log" for s in waiting}
    details = "; ".join(f"{s.name} (port {s.port}): {tail(logs[s.name])}" for s in waiting)
    raise ZdtError(f"{layout.dir}: servers not answering /health after "
                   f"{READY_TIMEOUT:.0f} s: {details}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


def _wait_lb_up(layout: Layout, number: int = 1) -> None:
    wanted = {s.name for s in layout.servers if s.lb}
    status: dict[str, str] = {}
    for _ in polls(READY_TIMEOUT):
        try:
            rows = parse_stat(_haproxy_command(layout.admin_address(number),
                                               f"show stat {BACKEND} 4 -1"))
        except (OSError, ValueError):
            continue  # the socket appears a moment after the pidfile
        status = {name: row["status"] for name, row in rows.items()}
        if all(status.get(name) == "UP" for name in wanted):
            return
    down = {name: status.get(name, "unknown") for name in sorted(wanted)
            if status.get(name) != "UP"}
    raise ZdtError(f"{layout.dir}: HAProxy {number} does not report these servers UP after "
                   f"{READY_TIMEOUT:.0f} s: {down}; see {layout.haproxy_dir(number)}")


def _haproxy_command(address: str, line: str, timeout: float = 2.0) -> str:
    """One blocking Runtime API command (for code without an event loop), on a Unix
    socket's path or a tcp://127.0.0.1:PORT address."""
    tcp = address.startswith("tcp://")
    with socket.socket(socket.AF_INET if tcp else socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if tcp:
            host, port = address.removeprefix("tcp://").rsplit(":", 1)
            s.connect((host, int(port)))
        else:
            s.connect(address)
        s.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _report(layout: Layout, pids: dict, archives: dict[str, Path],
            net: isolation.Network | None) -> dict:
    def server(s: SandboxServer) -> dict:
        return {"name": s.name, "port": s.port,
                "url": f"http://{layout.host(s.node)}:{s.port}/",
                "lb": s.lb, "partition": s.partition}

    return {
        "dir": str(layout.dir),
        "domain": str(layout.domain),
        "lb_url": f"http://127.0.0.1:{layout.lb_port}/",
        "lb": layout.lb,
        "haproxy_socket": str(layout.haproxy_socket) if layout.lb == "haproxy" else None,
        "lb_urls": layout.lb_urls(),
        # each HAProxy's Prometheus exporter (none for nginx)
        "metrics_urls": [u + "metrics" for u in layout.lb_urls()] if layout.haproxies else [],
        "lb_nodes": list(layout.lb_nodes),
        "haproxy_sockets": [layout.admin_address(n) for n in range(1, layout.haproxies + 1)],
        "nginx_upstream": str(layout.dir / "nginx" / "upstream.conf")
        if layout.nginx and not layout.lb_nodes else None,
        "backend": BACKEND,
        "admin": layout.admin,
        "clusters": {CLUSTER: [s.name for s in layout.servers if s.lb]},
        "nodes": [{"name": node,
                   "root": str(layout.root(node)),
                   "home": str(layout.on_node(node, HOME)),
                   "supervisor_socket": str(layout.on_node(node, SUPERVISOR_SOCKET)),
                   "address": layout.host(node),
                   "namespace": net.namespaces[layout.nodes.index(node)] if net else None,
                   "servers": [server(s) for s in layout.servers if s.node == node]}
                  for node in layout.nodes],
        "home_link": layout.home_link,
        "runtime_home": inputs.RUNTIMES[1],
        "apps": str(layout.dir / "inputs" / "apps.json"),
        "archives": {name: str(path) for name, path in archives.items()},
        "pids": pids,
        "isolated": net is not None,
        "ssh": {"known_hosts": str(layout.dir / "ssh" / "known_hosts"),
                "identity": str(layout.dir / "ssh" / "id_ed25519")} if net else None,
    }


def _describe(procs: list[Proc]) -> str:
    return ", ".join(f"{p.what} pid {p.pid}" for p in procs)

"""What a sandbox is made of: names, ports, paths, and the files that describe them.

Everything here is decided before anything starts, so that a sandbox that cannot work
(a path too long for a socket, no free port) fails before a single process is spawned.
"""

from __future__ import annotations

import shlex
import shutil
import site
import socket
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import zdt
from zdt.errors import ConfigError
from zdt.lab.sandbox.inputs import APP, RUNTIMES, write_app, write_home

HOME = "/srv/app/home"                   # the home, as a node path (same on every node)
RELEASES = "/srv/app/releases"           # with home_link: HOME -> releases/<version>
SUPERVISOR_SOCKET = "/run/supervisor.sock"
BACKEND = "app"
CLUSTER = "cluster1"
ADMIN = "admin"
VERSION = "v1"
NGINX = "/usr/sbin/nginx"
NGINX_MODULES = Path("/usr/lib/nginx/modules")   # Debian's libnginx-mod-* packages
LB_NODE_SOCKET = "/run/haproxy/admin.sock"      # an LB host's Runtime API (a node path)
LB_NODE_PORT = 80
LB_NODE_UPSTREAM = "/srv/nginx/upstream.conf"   # an LB host's nginx: zdt's upstream file
LB_NODE_NGINX_SOCKET = "/run/nginx/admin.sock"  # and its Lua peer list's admin socket


@dataclass(frozen=True)
class SandboxServer:
    name: str
    node: str
    port: int
    lb: bool
    partition_of: str | None = None      # a partition: a process of its own, in a
    partition: str | None = None         # supervisord group named after the partition


@dataclass(frozen=True)
class Layout:
    dir: Path
    nodes: tuple[str, ...]
    servers: tuple[SandboxServer, ...]
    lb_port: int
    admin: str | None
    home_link: bool = False   # HOME is a relative symlink to RELEASES/<version>
    # Isolated: every node is a network namespace with this address (its servers listen
    # there, its sshd too) and sees its own root's srv/, opt/ and run/ at /srv, /opt, /run.
    addresses: tuple[str, ...] = ()
    lb: str = "haproxy"       # or "nginx" (zdt's Lua peer list), "nginx-reload"
    # More HAProxies in front of the same servers (an HA pair): (frontend port, admin
    # port) of each, its Runtime API on loopback TCP (`[[lb]] socket = "tcp://…"`)
    more_lbs: tuple[tuple[int, int], ...] = ()
    # Isolated, with several LBs: each HAProxy on a host of its own (lb1, lb2…: a
    # namespace with sshd, no servers), reached over SSH (`[[lb]] node = "lb1"`)
    lb_nodes: tuple[str, ...] = ()

    @property
    def nginx(self) -> bool:
        return self.lb.startswith("nginx")

    @classmethod
    def plan(cls, d: Path, nodes: int, per_node: int, *, admin: bool,
             home_link: bool = False, partitions: tuple[str, ...] = (),
             addresses: tuple[str, ...] = (), lb: str = "haproxy", lbs: int = 1) -> Layout:
        names = tuple(f"node{i}" for i in range(1, nodes + 1))
        specs: list[tuple[str, str, bool, str | None, str | None]] = \
            [(ADMIN, names[0], False, None, None)] if admin else []
        mains = [(f"{n}-s{j}", n) for n in names for j in range(1, per_node + 1)]
        specs += [(name, n, True, None, None) for name, n in mains]
        specs += [(f"{name}-{p}", n, True, name, p) for name, n in mains for p in partitions]
        if addresses:   # hosts of their own: the same ports on every node
            lb_port = free_ports(1)[0]
            taken: dict[str, int] = {}
            ports = []
            for _, node, *_rest in specs:
                taken[node] = taken.get(node, 0) + 1
                ports.append(8000 + taken[node])
        else:
            lb_port, *ports = free_ports(1 + len(specs))
        servers = tuple(SandboxServer(name, node, port, lb, of, part)
                        for (name, node, lb, of, part), port in zip(specs, ports, strict=True))
        if lbs > 1 and lb != "haproxy" and not (addresses and lb == "nginx"):
            raise ConfigError(f"--lbs {lbs}: several load balancers are HAProxies, or "
                              f"nginx with the Lua peer list on hosts of their own "
                              f"(--isolated --lb nginx); leave --lb {lb} out")
        if addresses and lbs > 1:
            return cls(d, names, servers, lb_port, ADMIN if admin else None, home_link,
                       tuple(addresses), lb, (), tuple(f"lb{i}" for i in range(1, lbs + 1)))
        extra = free_ports(2 * (lbs - 1))
        more = tuple((extra[2 * i], extra[2 * i + 1]) for i in range(lbs - 1))
        return cls(d, names, servers, lb_port, ADMIN if admin else None, home_link,
                   tuple(addresses), lb, more)

    @property
    def isolated(self) -> bool:
        return bool(self.addresses)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host of the sandbox: the nodes, then the LB hosts (isolated, --lbs)."""
        return self.nodes + self.lb_nodes

    def host(self, node: str) -> str:
        """The address the node's servers listen on, as the LB and health checks see it."""
        return self.addresses[self.hosts.index(node)] if self.isolated else "127.0.0.1"

    def node_path(self, node: str, path: str) -> str:
        """A node path as the node's own processes see it: the path itself on an isolated
        node (its private mounts put it there), else where it lives on this machine."""
        return path if self.isolated else str(self.on_node(node, path))

    @property
    def domain(self) -> Path:
        return self.dir / "domain.toml"

    @property
    def haproxy_socket(self) -> Path:
        return self.dir / "haproxy" / "admin.sock"

    def haproxy_dir(self, number: int) -> Path:
        """HAProxy number 1, 2…: its config, pid file and output."""
        if self.lb_nodes:
            return self.root(self.lb_nodes[number - 1]) / "etc"
        return self.dir / ("haproxy" if number == 1 else f"haproxy{number}")

    @property
    def haproxies(self) -> int:
        if self.nginx:
            return 0
        return len(self.lb_nodes) if self.lb_nodes else 1 + len(self.more_lbs)

    def lb_urls(self) -> list[str]:
        if self.lb_nodes:
            return [f"http://{self.host(n)}:{LB_NODE_PORT}/" for n in self.lb_nodes]
        return [f"http://127.0.0.1:{port}/"
                for port in [self.lb_port, *(port for port, _ in self.more_lbs)]]

    def admin_address(self, number: int) -> str:
        """Where this machine reaches HAProxy number N's Runtime API: its Unix socket
        (an LB host's own /run, seen from here), or tcp://127.0.0.1:PORT."""
        if self.lb_nodes:
            return str(self.on_node(self.lb_nodes[number - 1], LB_NODE_SOCKET))
        if number == 1:
            return str(self.haproxy_socket)
        return f"tcp://127.0.0.1:{self.more_lbs[number - 2][1]}"

    def root(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def on_node(self, node: str, path: str) -> Path:
        """Where a node path (`/srv/app/home`) is on this machine."""
        return self.root(node) / path.lstrip("/")

    def supervisor_socket(self, node: str) -> Path:
        return self.on_node(node, SUPERVISOR_SOCKET)


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out the
    same port twice; they are closed before anything uses the ports.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def home_link_target() -> str:
    """What the HOME symlink holds with home_link: relative, so it stays in the node."""
    home = PurePosixPath(HOME)
    return str((PurePosixPath(RELEASES) / VERSION).relative_to(home.parent))


def write_files(layout: Layout) -> None:
    for node in layout.nodes:
        for sub in (layout.root(node) / "etc", layout.root(node) / "run",
                    layout.root(node) / "var" / "log"):
            sub.mkdir(parents=True, exist_ok=True)
        write_installation(layout, node)
        conf = layout.root(node) / "etc" / "supervisord.conf"
        conf.write_text(supervisord_conf(layout, node))
    from zdt.lab.sandbox.lb_config import haproxy_cfg, nginx_conf, nginx_upstream

    for node in layout.lb_nodes if layout.nginx else ():
        for part in ("etc", "srv/nginx", "run/nginx", "var/nginx/tmp"):
            (layout.root(node) / part).mkdir(mode=0o700, parents=True, exist_ok=True)
        (layout.root(node) / "etc" / "nginx.conf").write_text(nginx_conf(layout, node))
        layout.on_node(node, LB_NODE_UPSTREAM).write_text(nginx_upstream(layout))
    if layout.nginx and not layout.lb_nodes:
        # 0700: nginx makes its unix sockets (the Lua peer list's admin) world-writable
        (layout.dir / "nginx").mkdir(mode=0o700, parents=True, exist_ok=True)
        (layout.dir / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
        (layout.dir / "nginx" / "nginx.conf").write_text(nginx_conf(layout))
        (layout.dir / "nginx" / "upstream.conf").write_text(nginx_upstream(layout))
    for node in layout.lb_nodes:
        for part in ("etc", "run/haproxy", "var/log"):
            (layout.root(node) / part).mkdir(parents=True, exist_ok=True)
        (layout.root(node) / "etc" / "supervisord.conf").write_text(
            supervisord_conf(layout, node))
    for number in range(1, layout.haproxies + 1):
        layout.haproxy_dir(number).mkdir(parents=True, exist_ok=True)
        (layout.haproxy_dir(number) / "haproxy.cfg").write_text(haproxy_cfg(layout, number))
    (layout.dir / "state").mkdir(exist_ok=True)
    from zdt.lab.sandbox.domain_file import domain_toml

    layout.domain.write_text(domain_toml(layout))


def write_installation(layout: Layout, node: str) -> None:
    """A fresh v1 home on `node`, as a directory or (home_link) a link to a release.

    The directory holding the home is rebuilt from nothing: homes, releases, staged
    archives or backups left there by an earlier sandbox (or a marker such as
    FAIL_STARTS) would make the new one differ from a fresh installation.
    """
    home = layout.on_node(node, HOME)
    app = home.parent
    if app.is_symlink() or app.is_file():
        app.unlink()
    elif app.exists():
        shutil.rmtree(app)
    if layout.home_link:
        write_home(layout.on_node(node, RELEASES) / VERSION, VERSION)
        home.symlink_to(home_link_target())
    else:
        write_home(home, VERSION)
    write_app(layout.on_node(node, APP), "1")
    for number, runtime in enumerate(RUNTIMES, 1):
        path = layout.on_node(node, runtime)
        if path.exists():
            shutil.rmtree(path)
        (path / "bin").mkdir(parents=True)
        (path / "release").write_text(f"runtime {number}\n")


def supervisord_conf(layout: Layout, node: str) -> str:
    root = layout.root(node)
    log = root / "var" / "log"
    out = [
        f"; supervisord of sandbox node {node}, written by `zdt sandbox up`",
        "[unix_http_server]", f"file = {_ini(layout.supervisor_socket(node))}",
        "chmod = 0700", "",
        "[supervisord]", f"logfile = {_ini(log / 'supervisord.log')}",
        f"pidfile = {_ini(root / 'run' / 'supervisord.pid')}",
        f"childlogdir = {_ini(log)}", f"directory = {_ini(root)}",
        f"identifier = zdt-sandbox-{node}",
        # The defaults (1024 fds, 200 processes) can exceed an unprivileged user's hard
        # limits, and supervisord refuses to start then; a sandbox node needs far less.
        "minfds = 256", "minprocs = 32", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "", "[supervisorctl]", f"serverurl = unix://{_ini(layout.supervisor_socket(node))}",
    ]
    if layout.isolated:
        out += ["", *_sshd_program(layout, node)]
    if node in layout.lb_nodes:
        out += ["", *(_nginx_program if layout.nginx else _haproxy_program)(layout, node)]
    groups: dict[str, list[str]] = {}
    for s in layout.servers:
        if s.node == node:
            out += ["", *_program(layout, s)]
            if s.partition:
                groups.setdefault(s.partition, []).append(s.name)
    for group, members in groups.items():
        out += ["", f"[group:{group}]", f"programs = {','.join(members)}"]
    return "\n".join(out) + "\n"


def _program(layout: Layout, s: SandboxServer) -> list[str]:
    argv = [sys.executable, "-m", "zdt.lab.sample_service",
            "--home", layout.node_path(s.node, HOME), "--port", str(s.port),
            "--server", s.name, "--node", s.node, "--host", layout.host(s.node),
            "--app", layout.node_path(s.node, APP)]
    log = layout.root(s.node) / "var" / "log"
    return [
        f"[program:{s.name}]", f"command = {_ini(shlex.join(argv))}",
        f"directory = {_ini(layout.root(s.node))}", f"environment = {_environment()}",
        # Start at once and report RUNNING on spawn: zdt judges a start by the health
        # check, and never lets supervisord restart a server behind its back.
        "autostart = true", "autorestart = false", "startsecs = 0", "startretries = 0",
        # zdt kills after its own --shutdown-timeout; supervisord must not do it first.
        "stopsignal = TERM", "stopwaitsecs = 3600", "stopasgroup = true",
        "killasgroup = true",
        f"stdout_logfile = {_ini(log / f'{s.name}.out.log')}",
        f"stderr_logfile = {_ini(log / f'{s.name}.err.log')}",
    ]


def _sshd_program(layout: Layout, node: str) -> list[str]:
    """The node's sshd, run by its supervisord: so it lives in the node's namespaces."""
    conf = layout.root(node) / "etc" / "ssh" / "sshd_config"
    return _daemon(layout, node, "sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)])


def _nginx_program(layout: Layout, node: str) -> list[str]:
    """An LB host's nginx (with zdt's Lua peer list), in the foreground."""
    conf = layout.root(node) / "etc" / "nginx.conf"
    errors = layout.root(node) / "var" / "log" / "nginx-error.log"
    return _daemon(layout, node, "nginx",
                   [NGINX, "-g", "daemon off;", "-e", str(errors), "-c", str(conf)], "QUIT")


def _haproxy_program(layout: Layout, node: str) -> list[str]:
    """An LB host's HAProxy, in the foreground under its supervisord."""
    conf = layout.root(node) / "etc" / "haproxy.cfg"
    return _daemon(layout, node, "haproxy", ["/usr/sbin/haproxy", "-db", "-f", str(conf)])


def _daemon(layout: Layout, node: str, name: str, argv: list[str],
            stop: str = "TERM") -> list[str]:
    """A host's own daemon under its supervisord (so it lives in the host's namespaces),
    its output in var/log/NAME.log."""
    log = layout.root(node) / "var" / "log" / f"{name}.log"
    return [f"[program:{name}]", f"command = {_ini(shlex.join(argv))}",
            "autostart = true", "autorestart = false", "startsecs = 0", "startretries = 0",
            f"stopsignal = {stop}", "stopwaitsecs = 5", f"stdout_logfile = {_ini(log)}",
            "redirect_stderr = true"]


def sshd_config(layout: Layout, node: str) -> str:
    root = layout.root(node)
    return "\n".join([
        f"# sshd of isolated sandbox node {node}, written by `zdt sandbox up --isolated`",
        # 2222 too: a port other than 22 for tests of ssh_config's Port
        f"ListenAddress {layout.host(node)}", "Port 22", "Port 2222",
        f"HostKey {root / 'etc' / 'ssh' / 'ssh_host_ed25519_key'}",
        f"PidFile {root / 'run' / 'sshd.pid'}",
        f"AuthorizedKeysFile {layout.dir / 'ssh' / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no",
        # the sandbox dir is wherever the operator put it: its modes are not sshd's business
        "StrictModes no",
        "AllowStreamLocalForwarding yes", "MaxSessions 64", "MaxStartups 64",
        "Subsystem sftp internal-sftp", ""])


IMPORT_ROOT = str(Path(zdt.__file__).resolve().parents[1])   # the dir holding zdt/


def _environment() -> str:
    env = {"PYTHONUNBUFFERED": "1"}
    # Run the sample service from this very zdt, installed or not: add its import root
    # unless it is already a site directory (where it would be found anyway).
    import_root = IMPORT_ROOT
    if import_root not in site.getsitepackages():
        env["PYTHONPATH"] = import_root
    return ",".join(f'{k}="{_ini(v)}"' for k, v in env.items())


def _ini(value: object) -> str:
    """Escape a value for supervisord's config, which expands %(name)s expressions."""
    return str(value).replace("%", "%%")

"""domain.toml → a validated, immutable model of a domain.

Every problem found is reported at once, each with the file, the line where it can be
located, and the field path (`servers[2].node`), as a ConfigError (exit 2). Loading a
domain reads one file and touches nothing else.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from zdt import nodepath, template
from zdt.errors import ConfigError

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Named = TypeVar("_Named", "Node", "Server", "Cluster")


def _node_path(v: str) -> str:
    return nodepath.normalise(v)


class DomainSection(_Model):
    name: Name
    home: str
    state_dir: str
    admin: Name | None = None
    staging_dir: str | None = None     # node path for archives; default: beside the home

    @field_validator("home", "staging_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        return None if v is None else _node_path(v)

    @property
    def staging(self) -> str:
        """Where archives are staged on every node (default: HOME's parent/staging)."""
        return self.staging_dir or str(Path(self.home).parent / "staging")


PHASES = ("before-update", "each-node", "offline-before-update", "offline-after-update",
          "after-server-start", "after-update", "success", "error")


class Hooks(_Model):
    """Executables run at each phase of a workflow (DESIGN.md point 9), as node paths."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              alias_generator=lambda f: f.replace("_", "-"))

    before_update: tuple[str, ...] = ()
    each_node: tuple[str, ...] = ()
    offline_before_update: tuple[str, ...] = ()
    offline_after_update: tuple[str, ...] = ()
    after_server_start: tuple[str, ...] = ()
    after_update: tuple[str, ...] = ()
    success: tuple[str, ...] = ()
    error: tuple[str, ...] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    @field_validator("*")
    @classmethod
    def _absolute(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if "=" in p:      # `env NAME=VALUE… HOOK` would take it for a variable
                raise ValueError(f"{p!r}: a hook path may not contain '='")
        return tuple(_node_path(p) for p in v)

    def at(self, phase: str) -> tuple[str, ...]:
        return tuple(getattr(self, phase.replace("-", "_")))


@dataclass(frozen=True)
class SSHAddress:
    """`ssh://[user@]host[:port]`; host may be an alias of ~/.ssh/config, and user and
    port left out are taken from there (or the login name and 22)."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, address: str) -> SSHAddress:
        parts = urlsplit(address)
        if parts.scheme != "ssh" or not parts.hostname:
            raise ValueError(f"{address!r}: not 'local' nor ssh://[user@]host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
            raise ValueError(f"{address!r}: no path, query or password in an ssh:// address "
                             "(keys and users go in ~/.ssh/config or [ssh])")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{address!r}: bad port") from None
        user = parts.username
        if user is not None and not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", user):
            raise ValueError(f"{address!r}: bad user name {user!r}")
        host = parts.hostname
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", host) or host.startswith("-"):
            raise ValueError(f"{address!r}: bad host name {host!r}")
        return cls(host, user, port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


class Node(_Model):
    name: Name
    address: str = "local"
    root: str | None = None             # local nodes: the dir that is the node's "/"

    @field_validator("address")
    @classmethod
    def _known_address(cls, v: str) -> str:
        if v != "local":
            SSHAddress.parse(v)
        return v

    @field_validator("root")
    @classmethod
    def _root_is_local(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("address", "local") != "local":
            raise ValueError("root is for local nodes only (an ssh:// node has its own '/')")
        return v

    @property
    def ssh(self) -> SSHAddress | None:
        return None if self.address == "local" else SSHAddress.parse(self.address)


class SSH(_Model):
    """How ssh:// nodes are reached. Paths are on this machine, relative to the domain
    file; left out, OpenSSH's own files are used (~/.ssh/known_hosts, ~/.ssh/config)."""

    known_hosts: str | None = None
    identity: str | None = None          # a private key file (else ~/.ssh/config's, agent)
    config: str | None = None            # an ssh_config file
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0


class Server(_Model):
    name: Name
    node: Name
    port: Port
    # where zdt reaches the server from this machine (health, "is it listening"); left out:
    # the node's ssh:// host, or 127.0.0.1 on a local node (filled in at load)
    host: str = "127.0.0.1"
    lb: bool = True
    lb_name: Name | None = None
    health_url: str | None = None
    partitions: tuple[Name, ...] = ()
    # A partition (an independently restartable unit of a server, e.g. a supervisord
    # group) is declared as a server of its own: its process, port and LB entry.
    partition_of: Name | None = None
    partition: Name | None = None
    program: str | None = None           # the manager's name for it (default: [services])

    @field_validator("health_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {v!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in URL {v!r}") from exc
        return v

    @property
    def backend_name(self) -> str:
        """The server's name in the load balancer."""
        return self.lb_name or self.name

    @property
    def health(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.health_url or f"http://{host}:{self.port}/health"


class Cluster(_Model):
    name: Name
    servers: tuple[Name, ...] = Field(min_length=1)


PLACEHOLDERS = ("server", "node", "home")


def _argv_template(v: tuple[str, ...]) -> tuple[str, ...]:
    """A command as argv items, each with {server}/{node}/{home} placeholders at most."""
    for item in v:
        template.check(item, PLACEHOLDERS)
    return v


class Services(_Model):
    """How servers are started and stopped: supervisord's XML-RPC, systemd units, or the
    operator's own commands (argv templates, each item filled in on its own)."""

    kind: Literal["supervisor", "systemd", "command"] = "supervisor"
    socket: str = "/run/supervisor.sock"   # supervisor
    program: str = "{server}"              # supervisor
    unit: str = "{server}.service"         # systemd
    sudo: bool = False                     # systemd, command: prefix commands with sudo -n
    start: tuple[str, ...] = ()            # command
    stop: tuple[str, ...] = ()             # command
    status: tuple[str, ...] = ()           # command: exit 0 = running (a pid on stdout)

    @field_validator("start", "stop", "status")
    @classmethod
    def _templates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _argv_template(v)

    @field_validator("program", "unit")
    @classmethod
    def _name_template(cls, v: str) -> str:
        template.check(v, ("server", "node"))
        return v

    @model_validator(mode="after")
    def _commands_given(self) -> Services:
        if self.kind == "command" and not (self.start and self.stop and self.status):
            raise ValueError("kind = \"command\" needs start, stop and status commands")
        return self


class LoadBalancerConfig(_Model):
    """HAProxy's Runtime API; nginx on this machine, through an upstream file zdt owns and
    a graceful reload; or the operator's commands (a cloud LB CLI, an F5 script): drain,
    ready and state argv templates; state prints JSON {"admin", "status", "sessions",
    "queued"}."""

    kind: Literal["haproxy", "nginx", "command"] = "haproxy"
    socket: str = ""
    backend: Name = "app"
    upstream_file: str = ""              # nginx: the `upstream` block zdt rewrites
    pid_file: str = ""                   # nginx: its master's pid (the reload is a SIGHUP)
    config: str = ""                     # nginx: nginx.conf, tested (`nginx -t`) first
    binary: str = "nginx"                # nginx
    # nginx with zdt's Lua peer list (libnginx-mod-http-lua): its admin location's unix
    # socket; drains then change a shared dict, with no reload
    admin_socket: str = ""
    drain: tuple[str, ...] = ()
    ready: tuple[str, ...] = ()
    state: tuple[str, ...] = ()

    @field_validator("drain", "ready", "state")
    @classmethod
    def _templates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _argv_template(v)

    @model_validator(mode="after")
    def _kind_complete(self) -> LoadBalancerConfig:
        if self.kind == "haproxy" and not self.socket:
            raise ValueError("kind = \"haproxy\" needs socket (the Runtime API socket)")
        if self.kind == "command" and not (self.drain and self.ready and self.state):
            raise ValueError("kind = \"command\" needs drain, ready and state commands")
        if self.kind == "nginx" and not (self.upstream_file and (self.pid_file
                                                                   or self.admin_socket)):
            raise ValueError("kind = \"nginx\" needs upstream_file (the file with the "
                             "upstream block zdt rewrites) and pid_file (nginx's pid, for "
                             "reloads) or admin_socket (zdt's Lua peer list, no reloads)")
        return self


class Runtime(_Model):
    """The runtime (WebLogic's Java home) the home's scripts point at: a runtime rollout
    rewrites every reference to it in the scripts these globs select."""

    home: str                            # the runtime in use, the same path on every node
    variable: Name = "JAVA_HOME"
    scripts: tuple[str, ...] = ("bin/*.sh",)   # globs relative to the domain's home
    domain_dir: str | None = None        # a node dir with more scripts (WebLogic's domain)
    domain_scripts: tuple[str, ...] = ()  # globs relative to domain_dir

    @field_validator("home", "domain_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        return None if v is None else _node_path(v)

    @field_validator("scripts", "domain_scripts")
    @classmethod
    def _relative(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for glob in v:
            if not glob or glob.startswith("/") or ".." in glob.split("/"):
                raise ValueError(f"{glob!r}: a glob relative to its dir, without '..'")
        return v


class Application(_Model):
    """An application deployed on the domain (WebLogic's stage / nostage / external_stage):
    one directory at `location` on every node of the servers it is deployed to."""

    name: Name
    location: str
    mode: Literal["stage", "nostage", "external_stage"] = "stage"
    servers: tuple[Name, ...] = ()      # empty: every server of the domain

    @field_validator("location")
    @classmethod
    def _absolute(cls, v: str) -> str:
        return _node_path(v)


class Capacity(_Model):
    """[capacity]: what the servers left in rotation must hold while a node is out."""

    # A listen backlog below this is named by preview and at a rollout's start: when a
    # node leaves rotation the LB opens connections to the others in a burst, and SYNs
    # beyond the backlog are dropped (a backlog of 5 lost 0.2 % of 2,000 requests/s).
    min_backlog: Annotated[int, Field(ge=0, le=1_000_000)] = 128


class Domain(_Model):
    """A whole domain. Paths in it are absolute (resolved against the file's directory)."""

    domain: DomainSection
    nodes: tuple[Node, ...] = Field(min_length=1)
    servers: tuple[Server, ...] = Field(min_length=1)
    clusters: tuple[Cluster, ...] = ()
    services: Services = Services()
    lb: LoadBalancerConfig
    hooks: Hooks = Hooks()
    runtime: Runtime | None = None
    applications: tuple[Application, ...] = ()
    ssh: SSH = SSH()
    capacity: Capacity = Capacity()
    source: str = Field(default="", exclude=True)

    def node(self, name: str) -> Node:
        return self._find(self.nodes, "node", name)

    def server(self, name: str) -> Server:
        return self._find(self.servers, "server", name)

    def cluster(self, name: str) -> Cluster:
        return self._find(self.clusters, "cluster", name)

    def _find(self, items: tuple[_Named, ...], what: str, name: str) -> _Named:
        for item in items:
            if item.name == name:
                return item
        raise ConfigError(f"{self.source}: no {what} named {name!r}")

    def servers_on(self, node: str) -> list[Server]:
        return [s for s in self.servers if s.node == node]

    @property
    def state_dir(self) -> Path:
        return Path(self.domain.state_dir)


def load(path: str | Path) -> Domain:
    """Read and validate a domain file; raise ConfigError naming every problem found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the domain file: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x} at offset "
                          f"{exc.start}); a domain file is TOML, which is UTF-8") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Domain:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    locate = _Locator(text)
    _resolve_paths(raw, path.parent.resolve())
    _default_hosts(raw)
    raw["source"] = str(path.resolve())
    try:
        model = Domain.model_validate(raw)
    except ValidationError as exc:
        problems = [(_field_path(e["loc"]), _explain(e)) for e in exc.errors()]
        raise ConfigError(_message(path, locate, problems)) from None
    from zdt import domain_checks  # it reads the model this module defines

    problems = list(domain_checks.cross_references(model))
    if problems:
        raise ConfigError(_message(path, locate, problems))
    return model


def _resolve_paths(raw: dict, base: Path) -> None:
    """Make the zdt-side paths absolute, relative to the domain file."""
    section = raw.get("domain")
    if isinstance(section, dict) and isinstance(section.get("state_dir"), str):
        section["state_dir"] = str(base / section["state_dir"])
    lb = raw.get("lb")
    if isinstance(lb, dict):
        for key in ("socket", "upstream_file", "pid_file", "config", "admin_socket"):
            if isinstance(lb.get(key), str) and lb[key]:
                lb[key] = str(base / lb[key])
    for node in raw.get("nodes") or ():
        if isinstance(node, dict) and isinstance(node.get("root"), str):
            node["root"] = str(base / node["root"])
    ssh = raw.get("ssh")
    if isinstance(ssh, dict):
        for key in ("known_hosts", "identity", "config"):
            if isinstance(ssh.get(key), str) and ssh[key]:
                ssh[key] = str(base / Path(ssh[key]).expanduser())


def _default_hosts(raw: dict) -> None:
    """A server without `host` is reached at its node's address: the ssh:// host, or
    127.0.0.1 for a local node (a remote server probed at 127.0.0.1 would be whatever
    listens on this machine: a false "healthy")."""
    hosts = {}
    for node in raw.get("nodes") or ():
        if isinstance(node, dict) and isinstance(node.get("address"), str) and \
                node["address"].startswith("ssh://"):
            with contextlib.suppress(ValueError):     # a bad address is reported by its field
                hosts[node.get("name")] = SSHAddress.parse(node["address"]).host
    for server in raw.get("servers") or ():
        if isinstance(server, dict) and "host" not in server and server.get("node") in hosts:
            server["host"] = hosts[server["node"]]


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _explain(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _message(path: Path, locate: _Locator, problems: list[tuple[str, str]]) -> str:
    lines = [f"{path}: {len(problems)} problem(s) in the domain file:"]
    for field, why in problems:
        line = locate(field)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"  {where}: {field}: {why}")
    lines.append("Fix the file and run the command again; nothing was changed.")
    return "\n".join(lines)


class _Locator:
    """Finds the line of a field path in TOML text (tables and arrays of tables, by count).

    tomllib keeps no positions, so this scans headers: `servers[2].node` is the `node =`
    line after the third `[[servers]]` header. Returns None when it cannot tell.
    """

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def __call__(self, field: str) -> int | None:
        m = re.match(r"^([A-Za-z_]+)(?:\[(\d+)\])?(?:\.([A-Za-z_-]+))?", field)
        if not m:
            return None
        table, index, key = m.group(1), m.group(2), m.group(3)
        start = self._table_start(table, int(index) if index is not None else None)
        if start is None:
            return None
        if key is None:
            return start + 1
        for n in range(start + 1, len(self.lines)):
            if self._header.match(self.lines[n]):
                break
            k = self._key.match(self.lines[n])
            if k and k.group(1) == key:
                return n + 1
        return start + 1

    def _table_start(self, table: str, index: int | None) -> int | None:
        count = -1
        for n, line in enumerate(self.lines):
            h = self._header.match(line)
            if h and h.group(2) == table:
                count += 1
                if index is None or count == index:
                    return n
        return None

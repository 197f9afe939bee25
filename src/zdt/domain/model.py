"""The domain's own schema: a validated, immutable model of domain.toml (`loader.py`
reads the file; `[lb]` and `[services]` are the adapters' own models, see
adapter_config.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from zdt import nodepath
from zdt.domain.adapter_config import C, LbConfig, ServicesConfig
from zdt.domain.analysis_config import Analysis
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


class Live(_Model):
    """[live]: how this machine runs `zdt live` on a node (`zdt live … -d --node`): the
    node's zdt command, an argv (default `zdt` on the node's PATH)."""

    zdt: tuple[Annotated[str, Field(min_length=1)], ...] = Field(default=("zdt",), min_length=1)
    timeout: Annotated[float, Field(gt=0, le=86400)] = 3600.0   # one command on the node


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
        _port_of(parts, v)
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


def _port_of(parts: SplitResult, url: str) -> int | None:
    """The URL's port; ValueError naming the URL when it is not one."""
    try:
        return parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}") from exc


class State(_Model):
    """[state]: where the journal and the domain's lock live. Without `url`, in the domain's
    state_dir on this machine (SQLite); with `url = "postgresql://…"`, in a PostgreSQL
    database that several control hosts and the console share. A password belongs in
    ~/.pgpass or PGPASSWORD, not in the file."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.password or "password" in parts.query.lower():
            raise ValueError("a password in the URL would be printed and kept in the file: "
                             "put it in ~/.pgpass or PGPASSWORD")
        if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or
                                                                   parts.path.strip("/")):
            raise ValueError("not a postgresql://[user@]host[:port]/database URL")
        _port_of(parts, v)
        return v


class Domain(_Model):
    """A whole domain. Paths in it are absolute (resolved against the file's directory)."""

    domain: DomainSection
    nodes: tuple[Node, ...] = Field(min_length=1)
    servers: tuple[Server, ...] = Field(min_length=1)
    clusters: tuple[Cluster, ...] = ()
    services: ServicesConfig
    lb: LbConfig | tuple[LbConfig, ...]   # [lb], or [[lb]]: every one of them (an HA pair)
    hooks: Hooks = Hooks()
    runtime: Runtime | None = None
    applications: tuple[Application, ...] = ()
    ssh: SSH = SSH()
    live: Live = Live()
    capacity: Capacity = Capacity()
    state: State | None = None
    analysis: Analysis | None = None     # the metric gate after each visit's ready
    source: str = Field(default="", exclude=True)
    _by_name: dict[str, tuple[Any, dict[str, Any]]] = PrivateAttr(default_factory=dict)

    def node(self, name: str) -> Node:
        return self._find(self.nodes, "node", name)

    def server(self, name: str) -> Server:
        return self._find(self.servers, "server", name)

    def cluster(self, name: str) -> Cluster:
        return self._find(self.clusters, "cluster", name)

    def _find(self, items: tuple[_Named, ...], what: str, name: str) -> _Named:
        cached = self._by_name.get(what)  # built once per kind: a fleet asks thousands of
        if cached is None or cached[0] is not items:    # times (a copy with other items
            cached = self._by_name[what] = (items, {item.name: item for item in items})
        found = cached[1].get(name)                     # builds its own)
        if found is None:
            raise ConfigError(f"{self.source}: no {what} named {name!r}")
        return found

    @property
    def lbs(self) -> tuple[LbConfig, ...]:
        """Every load balancer of the domain, in the file's order."""
        return self.lb if isinstance(self.lb, tuple) else (self.lb,)

    def config_of(self, section: Literal["lb", "services"], model: type[C]) -> C:
        """`[lb]` or `[services]` as the model of its kind (an adapter reads its own)."""
        config = getattr(self, section)
        if isinstance(config, tuple):
            raise ConfigError(f"{self.source}: the domain has {len(config)} [[lb]]: each "
                              "adapter is given its own")
        if not isinstance(config, model):
            raise ConfigError(f"{self.source}: [{section}] is of kind {config.kind!r}, not "
                              f"the one {model.__name__} describes")
        return config

    def servers_on(self, node: str) -> list[Server]:
        return [s for s in self.servers if s.node == node]

    @property
    def state_dir(self) -> Path:
        return Path(self.domain.state_dir)



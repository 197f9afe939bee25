"""What an operator asked for: a kind, targets, the options every kind shares, and the
kind's own fields (`params`). Journaled as is (flat: common and kind fields side by side),
so resume and revert rebuild it exactly.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from zdt.errors import ConfigError
from zdt.steps import Options
from zdt.workflow import batches

DEFAULT_SHUTDOWN_TIMEOUT = Options.shutdown_timeout   # the one default, the steps' own
DEFAULT_HEALTH_TIMEOUT = Options.health_timeout
SECONDS = ("shutdown_timeout", "retry_delay", "delay_between_nodes", "health_timeout",
           "start_timeout")


@dataclass(frozen=True)
class RolloutRequest:
    kind: str
    targets: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)   # the kind's own fields
    shutdown_timeout: float | None = None   # None: the default, and "not given" for checks
    retries: int = 2
    retry_delay: float = 1.0
    delay_between_nodes: float = 0.0
    auto_revert: bool = True
    allow_downtime: bool = False
    pause_after: int | None = None
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    start_timeout: float = Options.start_timeout
    fail_on_lb_errors: bool = False      # errors the LB saw during a visit fail its ready
    batch: str = "1"                     # N | P% | a ramp 1,2,25% (workflow/batches.py)
    min_in_service: str = "50%"          # P% | N servers of each cluster kept in rotation
    analysis: bool | None = None         # the metric gate; None: as the domain's [analysis]

    def __post_init__(self) -> None:
        targets = self.targets.split(",") if isinstance(self.targets, str) else self.targets
        object.__setattr__(self, "targets", tuple(targets))
        object.__setattr__(self, "params", dict(self.params))

    @classmethod
    def of(cls, kind: str, targets: tuple[str, ...] | list[str], **values: Any
           ) -> RolloutRequest:
        """Common options and the kind's fields given side by side, as the CLI and the
        journal spell them: `RolloutRequest.of("home", ("domain",), archive=A, retries=1)`."""
        common = {k: v for k, v in values.items() if k in COMMON}
        params = {k: v for k, v in values.items() if k not in COMMON}
        return cls(kind, tuple(targets), params, **common)

    def get(self, name: str, default: Any = None) -> Any:
        """One of the kind's fields (None or the default when not given)."""
        value = self.params.get(name)
        return default if value is None else value

    def with_params(self, **changes: Any) -> RolloutRequest:
        return replace(self, params={**self.params, **changes})

    @property
    def timeout(self) -> float:
        return DEFAULT_SHUTDOWN_TIMEOUT if self.shutdown_timeout is None else self.shutdown_timeout

    def options(self) -> Options:
        return Options(shutdown_timeout=self.timeout, start_timeout=self.start_timeout,
                       health_timeout=self.health_timeout)

    def flat(self) -> dict[str, Any]:
        """The journal's and the reports' spelling: common and kind fields side by side."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "params"}
        return {**out, "targets": list(self.targets), **self.params}

    def validate_common(self) -> None:
        """The options every kind shares (exit 2 naming the option)."""
        for option in OPTIONS[1:]:
            check_type(option.name, getattr(self, option.name), option.type, option.optional)
        check_type("start_timeout", self.start_timeout, "float")   # no front end offers it
        if not self.targets or not all(isinstance(t, str) for t in self.targets):
            raise ConfigError("--targets: give 'domain', 'admin', or cluster and server names")
        for name in SECONDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 86400:
                raise ConfigError(f"--{name.replace('_', '-')}: {value:g} is not between 0 "
                                  "and 86400 seconds")
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"--retries: {self.retries} is not between 0 and 100")
        if self.pause_after is not None and self.pause_after < 1:
            raise ConfigError(f"--pause-after: {self.pause_after} is not a number of nodes ≥ 1")
        batches.parse_batch(self.batch)
        batches.parse_minimum(self.min_in_service)


COMMON = frozenset(f.name for f in fields(RolloutRequest)) - {"params"}


@dataclass(frozen=True)
class Option:
    """An option every kind shares, as front ends offer it (the CLI's `--name-with-dashes`,
    the console's form field)."""

    name: str
    type: str                  # int | float | bool | str
    default: Any
    help: str
    optional: bool = False     # None (not given) is a value
    flag: bool = False         # a bool that is off unless given (no --no-… form)


OPTIONS = (
    Option("targets", "str", "domain", "domain | admin | cluster and server names, "
           "comma-separated"),
    Option("shutdown_timeout", "float", None, "Seconds to wait for a drain and for a "
           f"graceful stop [default: {DEFAULT_SHUTDOWN_TIMEOUT:g}].", optional=True),
    Option("retries", "int", 2, "Retries of a failing step."),
    Option("retry_delay", "float", 1.0, "Seconds between retries."),
    Option("delay_between_nodes", "float", 0.0, "Seconds between nodes (session "
           "replication)."),
    Option("auto_revert", "bool", True, "Revert completed steps on failure."),
    Option("allow_downtime", "bool", False, "Allow a cluster on a single node."),
    Option("pause_after", "int", None, "Stop after the first N nodes (a canary) until "
           "`zdt resume`.", optional=True),
    Option("health_timeout", "float", DEFAULT_HEALTH_TIMEOUT, "Seconds for a started server "
           "to answer its health URL with 200."),
    Option("batch", "str", "1", "Node visits run side by side: N, P% (of each cluster's "
           "nodes) or a ramp like 1,2,25% (one entry per batch, the last repeated)."),
    Option("min_in_service", "str", "50%", "Servers of each cluster that stay in rotation "
           "while a batch is out: P% or a count (at least 1); a plan that would break it is "
           "refused."),
    Option("fail_on_lb_errors", "bool", False, "Errors the load balancer counted while a "
           "node was out (connection, response, 5xx, server aborts) fail that node's ready "
           "step.", flag=True),
    Option("analysis", "bool", None, "Judge each node visit's servers after its ready by "
           "their metrics (5xx, errors, response time) and fail the visit when they are "
           "worse [default: on when the domain has an [analysis] table].", optional=True),
)
_PYTHON = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
          "str": "a text"}


def check_type(option: str, value: Any, kind: str, optional: bool = False) -> None:
    """A value of the type an option takes (a JSON body can hold anything): ConfigError
    (exit 2) naming the option otherwise."""
    if value is None and optional:
        return
    types = _PYTHON[kind]
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ConfigError(f"--{option.replace('_', '-')}: {value!r} is not {_WORDS[kind]}")


def from_journal(data: Mapping[str, Any], kind_fields: frozenset[str]) -> RolloutRequest:
    """A journaled request back; keys the kind does not (or no longer) declare are left out
    (earlier versions journaled every kind's fields, most of them None)."""
    common = {k: v for k, v in data.items() if k in COMMON}
    params = {k: v for k, v in data.items() if k in kind_fields}
    common["targets"] = tuple(data["targets"])
    return RolloutRequest(params=params, **common)


def new_id(clock: Callable[[], float] = time.time) -> str:
    """Sortable and short: 20261121-224500-3f9a."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock())) + "-" + secrets.token_hex(2)

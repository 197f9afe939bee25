"""[analysis]: the metric gate that judges each node visit after its ready (analysis.py).

    [analysis]
    window = 10            # s: how long the updated servers are watched after their ready
    interval = 2           # s: one check per interval (its own requests, its own verdict)
    min_requests = 20      # a check with fewer requests on the updated servers: no verdict
    max_5xx_ratio = 0.01   # 5xx of the updated servers, above the baseline's ratio
    max_error_ratio = 0.01 # connection and response errors, above the baseline's ratio
    max_rtime_ratio = 2.0  # mean time to the answer's head, against the baseline's
    min_rtime_ms = 10      # a mean under this is never judged slow
    failure_limit = 2      # failed checks that fail the visit (auto-revert follows)
    on_inconclusive = "pass"   # or "fail": no check of the window had enough data

    [[analysis.prometheus]]   # a PromQL query that gives one number per check
    name = "5xx per second"
    url = "http://127.0.0.1:9090"
    query = '''sum(rate(haproxy_server_http_responses_total{
               server=~"$servers", code="5xx"}[$interval]))'''
    max = 1.0

    [[analysis.command]]      # a program on this machine that prints one number
    name = "queue"
    argv = ["/usr/local/bin/queue-depth", "$node"]
    max = 100

In a query and in argv, `$node`, `$servers` (a regular expression matching the visit's
servers by their LB names), `$baseline` (the same for the servers compared with), and
`$interval` (a PromQL duration, "2s") are replaced; nothing goes through a shell.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0, le=3600.0)]
PLACEHOLDERS = ("$node", "$servers", "$baseline", "$interval")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Metric(_Model):
    """A number measured once per check; the check fails when it is above `max` or below
    `min`. No number (an empty answer, NaN): that check has no verdict."""

    name: Annotated[str, Field(min_length=1, max_length=80)]
    max: Annotated[float, Field(allow_inf_nan=False)] | None = None
    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    timeout: Seconds = 10.0

    @model_validator(mode="after")
    def _bounded(self) -> _Metric:
        if self.max is None and self.min is None:
            raise ValueError(f"metric {self.name!r}: give `max`, `min` or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"metric {self.name!r}: min {self.min:g} is above max "
                             f"{self.max:g}: no number could pass")
        return self


def _known_placeholders(text: str) -> str:
    unknown = sorted(set(re.findall(r"\$[A-Za-z_]+", text)) - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join(unknown)} (known: "
                         f"{', '.join(PLACEHOLDERS)})")
    return text


class PrometheusMetric(_Metric):
    url: str
    query: Annotated[str, Field(min_length=1, max_length=4000)]

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError(f"not an http(s)://HOST[:PORT][/PATH] URL of a Prometheus "
                             f"server: {v!r}")
        return v.rstrip("/")

    @field_validator("query")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return _known_placeholders(v)


class CommandMetric(_Metric):
    argv: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)

    @field_validator("argv")
    @classmethod
    def _absolute(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v[0].startswith("/") or "=" in v[0]:
            raise ValueError(f"argv[0] must be an absolute path (with no `=`), not {v[0]!r}")
        for item in v:
            _known_placeholders(item)
        return v


class Analysis(_Model):
    """The gate's thresholds and its metrics beside the LB's own counters."""

    enabled: bool = True            # --analysis / --no-analysis override it per rollout
    window: Seconds = 10.0
    interval: Seconds = 2.0
    min_requests: Annotated[int, Field(ge=1, le=10_000_000)] = 20
    max_5xx_ratio: Ratio = 0.01
    max_error_ratio: Ratio = 0.01
    max_rtime_ratio: Annotated[float, Field(ge=1.0, le=1000.0)] = 2.0
    min_rtime_ms: Annotated[float, Field(ge=0.0, le=600_000.0)] = 10.0
    failure_limit: Annotated[int, Field(ge=1, le=1000)] = 2
    on_inconclusive: Literal["pass", "fail"] = "pass"   # no check had enough data
    lb_counters: bool = True        # judge the LB's own counters (5xx, errors, rtime)
    prometheus: tuple[PrometheusMetric, ...] = ()
    command: tuple[CommandMetric, ...] = ()

    @model_validator(mode="after")
    def _coherent(self) -> Analysis:
        if self.interval > self.window:
            raise ValueError(f"interval ({self.interval:g} s) is longer than window "
                             f"({self.window:g} s)")
        if self.failure_limit > self.checks:
            raise ValueError(f"failure_limit {self.failure_limit} can never be reached: the "
                             f"window holds {self.checks} check(s) of {self.interval:g} s; "
                             "lower it or widen the window")
        if not (self.lb_counters or self.prometheus or self.command):
            raise ValueError("nothing to judge: lb_counters = false and no "
                             "[[analysis.prometheus]] or [[analysis.command]]")
        names = [m.name for m in (*self.prometheus, *self.command)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric name(s) given twice: {', '.join(twice)}")
        return self

    @property
    def checks(self) -> int:
        """How many checks fit in the window."""
        return max(1, int(self.window / self.interval + 1e-9))

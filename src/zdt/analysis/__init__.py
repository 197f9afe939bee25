"""Metric gates: after a node visit's ready, judge the updated servers before going on.

A release can pass its health check and still be bad: more 5xx, errors, slower answers.
The gate watches the visit's servers for `window` seconds, one check per `interval`:

    ready(node2) ─ check 1 ─ check 2 ─ check 3 ─ check 4 ─ check 5 ─▶ verdict
                   (2 s)     (2 s)     …

Each check asks every provider for its measurements over that interval (the LB's own
counters compared with the servers not yet updated — or, when none is left, with the
servers' own figures before the visit; a Prometheus query; a command) and fails when one
of them is out of bounds. `failure_limit` failed checks fail the visit at once (the usual
auto-revert follows); a check whose measurements all lack data (too few requests) has no
verdict, and a window with no verdict at all is `inconclusive` (passes, or fails when
`on_inconclusive = "fail"`). A provider that cannot answer fails its check: a gate that
cannot see must not wave a release through.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from zdt.domain.analysis_config import Analysis


@dataclass(frozen=True)
class Subject:
    """What one gate judges: a node visit's servers, and what they are compared with."""

    node: str
    servers: tuple[str, ...]         # the visit's servers, by their LB names
    baseline: tuple[str, ...]        # the servers not yet updated (LB names); may be ()
    interval: float                  # seconds of one check
    workflow: str = ""

    def values(self) -> dict[str, str]:
        """The placeholders of a query or an argv (see analysis_config)."""
        return {"$node": self.node, "$servers": alternation(self.servers),
                "$baseline": alternation(self.baseline),
                "$interval": f"{max(1, round(self.interval))}s"}


def alternation(names: Sequence[str]) -> str:
    """A regular expression matching exactly these names (PromQL's =~ anchors it)."""
    specials = set("\\.^$|?*+()[]{}")
    return "|".join("".join("\\" + ch if ch in specials else ch for ch in n) for n in names)


def substitute(text: str, values: dict[str, str]) -> str:
    for key in sorted(values, key=len, reverse=True):   # $baseline before a shorter name
        text = text.replace(key, values[key])
    return text


@dataclass(frozen=True)
class Measurement:
    """One number of one check against its bound. ok None: no verdict (no data)."""

    name: str
    value: float | None
    bound: str                       # "≤ 0.01 above the baseline's 0.002"
    ok: bool | None
    detail: str = ""
    baseline: float | None = None    # what it was compared with, when anything

    def line(self) -> str:
        shown = "–" if self.value is None else f"{self.value:.4g}"
        mark = {True: "ok", False: "FAILED", None: "no verdict"}[self.ok]
        return f"{self.name} {shown} ({self.bound}): {mark}" + \
            (f", {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Check:
    number: int
    measurements: tuple[Measurement, ...]

    @property
    def ok(self) -> bool | None:
        if any(m.ok is False for m in self.measurements):
            return False
        return True if any(m.ok for m in self.measurements) else None


@dataclass
class Verdict:
    node: str
    verdict: str = "inconclusive"    # passed | failed | inconclusive
    checks: list[Check] = field(default_factory=list)
    served: dict[str, int] | None = None   # the visit's servers, drain to verdict

    @property
    def failed_checks(self) -> int:
        return sum(1 for c in self.checks if c.ok is False)

    def sentence(self) -> str:
        failed = [c for c in self.checks if c.ok is False]
        text = f"{self.node}: analysis {self.verdict} after {len(self.checks)} check(s)"
        if failed:
            reasons = "; ".join(m.line() for m in failed[-1].measurements if m.ok is False)
            text += f", {len(failed)} failed ({reasons})"
        elif self.verdict != "passed":
            text += (": no check had enough data to judge (min_requests, or metrics with no "
                     "number)" + ("; on_inconclusive = \"fail\"" if self.verdict == "failed"
                                  else ""))
        if self.served is not None:
            text += (f"; its servers answered {self.served['requests']:,} requests, "
                     f"{self.served['http_5xx']:,} with a 5xx")
        return text

    def data(self) -> dict[str, Any]:
        return {"node": self.node, "verdict": self.verdict, "served": self.served,
                "failed_checks": self.failed_checks,
                "checks": [{"number": c.number, "ok": c.ok,
                            "measurements": [asdict(m) for m in c.measurements]}
                           for c in self.checks]}


class Provider(Protocol):
    """A source of measurements: asked once before the first check, then once per check."""

    async def begin(self, subject: Subject) -> None:
        ...

    async def measure(self, subject: Subject) -> list[Measurement]:
        ...


async def judge(providers: Sequence[Provider], subject: Subject, settings: Analysis,
                sleep: Callable[[float], Awaitable[None]],
                on_check: Callable[[Check], None] = lambda c: None) -> Verdict:
    """Check every interval over the window; stop at the `failure_limit`th failed check."""
    verdict = Verdict(subject.node)
    for p in providers:
        await p.begin(subject)
    for number in range(1, settings.checks + 1):
        await sleep(settings.interval)
        answers = await asyncio.gather(*(p.measure(subject) for p in providers))
        check = Check(number, tuple(m for found in answers for m in found))
        verdict.checks.append(check)
        on_check(check)
        if verdict.failed_checks >= settings.failure_limit:
            verdict.verdict = "failed"
            return verdict
    if any(c.ok for c in verdict.checks):
        verdict.verdict = "passed"
    elif settings.on_inconclusive == "fail":
        verdict.verdict = "failed"
    return verdict


def bounded(name: str, value: float | None, low: float | None, high: float | None,
            detail: str = "") -> Measurement:
    """A metric's number against its `min` / `max` (a Prometheus query, a command)."""
    bound = " and ".join(b for b in (None if low is None else f"≥ {low:g}",
                                     None if high is None else f"≤ {high:g}") if b)
    if value is None:
        return Measurement(name, None, bound, None, detail or "no data")
    if not math.isfinite(value):
        return Measurement(name, None, bound, False, f"{value}: not a finite number")
    ok = (low is None or value >= low) and (high is None or value <= high)
    return Measurement(name, value, bound, ok, detail)


def failure(name: str, error: str) -> Measurement:
    """A provider that could not answer: its check fails (the gate cannot see)."""
    return Measurement(name, None, "an answer", False, error)

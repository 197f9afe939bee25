"""The load balancer's own counters as a metric provider: 5xx, errors, response time.

Per check, the visit's servers' counts over the interval (two readings of `show stat`, or
of zdt's nginx module) are compared with the baseline's over the same interval: the
servers in rotation not yet updated. When none is left (the last batch), or they took too
few requests, the baseline is the visit's servers' own figures before the visit (from the
run's first witness reading to the one before their drain).

    5xx ratio     5xx / requests            fails above the baseline's + max_5xx_ratio
    error ratio   (econ + eresp) / requests fails above the baseline's + max_error_ratio
    response time mean ms to the answer's head (HAProxy's rtime, weighted by requests;
                  nginx: its module's sum over the requests) fails above
                  max_rtime_ratio × the baseline's, unless under min_rtime_ms
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zdt.adapters.lb import Counters, Counts, LoadBalancer
from zdt.analysis import Measurement, Subject, failure
from zdt.domain.analysis_config import Analysis
from zdt.errors import ZdtError

NAME = "load balancer"


@dataclass(frozen=True)
class Figures:
    """Some servers' counts over an interval."""

    requests: int
    http_5xx: int
    errors: int                  # connection and response errors
    rtime_ms: float | None       # mean time to the answer's head; None: no answer timed

    def ratio(self, count: int) -> float:
        return count / self.requests if self.requests else 0.0


def figures(before: Mapping[str, Counts], after: Mapping[str, Counts],
            names: Sequence[str]) -> Figures:
    """The named servers' counts from one reading to the next (a server missing from
    either reading is left out)."""
    requests = http_5xx = errors = response_ms = 0
    weighted = 0.0
    for name in names:
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            continue
        n = max(0, b.requests - a.requests)
        requests += n
        http_5xx += max(0, b.http_5xx - a.http_5xx)
        errors += max(0, b.connection_errors - a.connection_errors) + \
            max(0, b.response_errors - a.response_errors)
        response_ms += max(0, b.response_ms - a.response_ms)
        weighted += b.rtime_ms * n
    if not requests:
        rtime = None
    elif response_ms:                 # summed by the LB (nginx): the interval's own mean
        rtime = response_ms / requests
    else:                             # HAProxy's mean of its last 1,024 answers
        rtime = weighted / requests
    return Figures(requests, http_5xx, errors, rtime)


def judge(updated: Figures, baseline: Figures | None, settings: Analysis, basis: str
          ) -> list[Measurement]:
    """The three measurements of one check (see the module's docstring)."""
    if updated.requests < settings.min_requests:
        why = f"{updated.requests} request(s), fewer than min_requests {settings.min_requests}"
        return [Measurement(n, None, "", None, why)
                for n in ("5xx ratio", "error ratio", "response time ms")]
    base = baseline if baseline is not None and baseline.requests else None
    out = []
    for name, count, base_count, limit in (
            ("5xx ratio", updated.http_5xx, base and base.http_5xx, settings.max_5xx_ratio),
            ("error ratio", updated.errors, base and base.errors, settings.max_error_ratio)):
        value = updated.ratio(count)
        floor = base.ratio(base_count or 0) if base else 0.0
        where = f"{basis} {floor:.4g}" if base else "no baseline: 0"
        out.append(Measurement(name, value, f"≤ {limit:g} above {where}",
                               value - floor <= limit,
                               f"{count} of {updated.requests} requests",
                               floor if base else None))
    rtime, base_rtime = updated.rtime_ms, base.rtime_ms if base else None
    if rtime is None or base_rtime is None:
        out.append(Measurement("response time ms", rtime, "", None, "no baseline to compare"))
    else:
        slow = rtime > settings.max_rtime_ratio * base_rtime and rtime >= settings.min_rtime_ms
        out.append(Measurement(
            "response time ms", rtime, f"≤ {settings.max_rtime_ratio:g} × {basis} "
            f"{base_rtime:.4g}, or under {settings.min_rtime_ms:g}", not slow,
            baseline=base_rtime))
    return out


class LbProvider:
    """Reads the LB's counters at each check's end (the previous reading is its start)."""

    def __init__(self, lb: LoadBalancer, settings: Analysis,
                 before: tuple[Mapping[str, Counts], Mapping[str, Counts]] | None) -> None:
        self.lb = lb
        self.settings = settings
        self.before = before          # the servers' counts at the run's start, at the drain
        self.last: Counters | None = None

    async def _read(self) -> Counters | str:
        try:
            return await self.lb.counters()
        except ZdtError as exc:
            return str(exc)

    async def begin(self, subject: Subject) -> None:
        reading = await self._read()
        self.last = reading if isinstance(reading, Counters) else None

    async def measure(self, subject: Subject) -> list[Measurement]:
        now = await self._read()
        if isinstance(now, str):
            return [failure(NAME, f"cannot read its counters: {now}")]
        previous, self.last = self.last, now
        gone = [n for n in subject.servers if n not in now.in_rotation]
        if gone:            # crashed or taken out under the gate: never a pass by silence
            return [Measurement("in rotation", None, "every judged server", False,
                                f"{', '.join(gone)} left rotation during the window")]
        if previous is None or previous.epoch != now.epoch:
            return [Measurement(NAME, None, "", None, "no earlier reading of this LB process")]
        updated = figures(previous.servers, now.servers, subject.servers)
        others = [n for n in subject.baseline if n in now.in_rotation]
        baseline = figures(previous.servers, now.servers, others) if others else None
        basis = "the other servers'"
        if baseline is None or baseline.requests < self.settings.min_requests:
            baseline, basis = self._own_before(subject), "their own before the visit"
        return judge(updated, baseline, self.settings, basis)

    def _own_before(self, subject: Subject) -> Figures | None:
        if self.before is None:
            return None
        start, drain = self.before
        found = figures(start, drain, subject.servers)
        return found if found.requests >= self.settings.min_requests else None

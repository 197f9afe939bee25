"""A PromQL query as a metric provider: one number per check from Prometheus's HTTP API.

`GET URL/api/v1/query?query=Q` (Prometheus's instant query) must give one number: a
scalar, or a vector of one series (aggregate with sum(…) otherwise). An empty vector or
NaN (a rate of nothing: 0/0) is no data, so that check has no verdict from this query;
an error (unreachable, a bad query, several series) fails the check.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from zdt.analysis import Measurement, Subject, bounded, failure, substitute
from zdt.domain.analysis_config import PrometheusMetric


class PrometheusProvider:
    def __init__(self, metric: PrometheusMetric) -> None:
        self.metric = metric

    def query(self, subject: Subject) -> str:
        """The query for this subject; each value escaped for a quoted PromQL string (a
        regular expression's `\\.` is written `\\\\.` there)."""
        values = {k: v.replace("\\", "\\\\") for k, v in subject.values().items()}
        return substitute(self.metric.query, values)

    async def begin(self, subject: Subject) -> None:
        return None

    async def measure(self, subject: Subject) -> list[Measurement]:
        m = self.metric
        try:
            value = await ask(m, self.query(subject))
        except ValueError as exc:
            return [failure(m.name, str(exc))]
        if value is not None and math.isnan(value):
            return [bounded(m.name, None, m.min, m.max, "NaN: nothing to judge")]
        return [bounded(m.name, value, m.min, m.max)]


async def ask(m: PrometheusMetric, query: str) -> float | None:
    """One instant query, given at most the metric's timeout in all (ValueError)."""
    try:
        async with asyncio.timeout(m.timeout):
            return await asyncio.to_thread(instant, m.url, query, m.timeout)
    except TimeoutError:
        raise ValueError(f"{m.url}: no answer after {m.timeout:g} s") from None


def instant(url: str, query: str, timeout: float) -> float | None:
    """One instant query's number; ValueError saying what went wrong."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(address, timeout=timeout) as answer:
            body = answer.read(1_000_000)
    except urllib.error.HTTPError as exc:     # 400: a bad query, with Prometheus's reason
        raise ValueError(f"{url}: {exc.code} {_reason(exc.read(10_000))}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise ValueError(f"{url}: cannot query Prometheus: {getattr(exc, 'reason', exc)}"
                         ) from exc
    return number(body)


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", "")).strip()[:300]
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:300]


def number(body: bytes) -> float | None:
    """The one number of an instant query's JSON answer: None when no series matched, NaN
    when one did but has no value (a ratio of no requests)."""
    try:
        data: Any = json.loads(body)
        if data.get("status") != "success":
            raise ValueError(str(data.get("error") or "the query did not succeed"))
        result, kind = data["data"]["result"], data["data"]["resultType"]
        if kind == "scalar":
            text = result[1]
        elif kind == "vector":
            if not result:
                return None
            if len(result) > 1:
                raise ValueError(f"the query gives {len(result)} series, not one number: "
                                 "aggregate it (sum(…), max(…))")
            text = result[0]["value"][1]
        else:
            raise ValueError(f"the query gives a {kind}, not one number")
        return float(text)       # NaN (a rate of nothing: 0/0) is kept: a series matched
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an answer of Prometheus's query API: {exc!r}") from exc

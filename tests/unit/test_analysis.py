"""The metric gate's arithmetic and loop, its providers' parsing, and [analysis] errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from zdt import domain as dm
from zdt.adapters.lb import Counters, Counts
from zdt.analysis import Measurement, Subject, alternation, bounded, judge, substitute
from zdt.analysis import lb as lbp
from zdt.analysis.command import CommandProvider
from zdt.analysis.lb import LbProvider
from zdt.analysis.prometheus import PrometheusProvider, number
from zdt.domain.analysis_config import Analysis, CommandMetric, PrometheusMetric
from zdt.errors import ConfigError
from zdt.steps.analysis import peers

S = Analysis()        # the defaults: 1 % above the baseline, 2 × its time, 20 requests


def fig(requests: int, http_5xx: int = 0, errors: int = 0, rtime: float | None = 1.0
        ) -> lbp.Figures:
    return lbp.Figures(requests, http_5xx, errors, rtime)


# (id, updated, baseline, {measurement: ok})
JUDGED = [
    ("healthy", fig(500), fig(1000), {"5xx ratio": True, "error ratio": True,
                                       "response time ms": True}),
    ("20 % 5xx", fig(500, 100), fig(1000), {"5xx ratio": False}),
    ("at the bound", fig(1000, 10), fig(1000), {"5xx ratio": True}),
    ("just above", fig(1000, 11), fig(1000), {"5xx ratio": False}),
    ("the baseline is as bad", fig(1000, 100), fig(1000, 95), {"5xx ratio": True}),
    ("no baseline: absolute", fig(1000, 11), None, {"5xx ratio": False}),
    ("connection errors", fig(500, 0, 50), fig(1000), {"error ratio": False}),
    ("5x slower", fig(500, rtime=50.0), fig(1000, rtime=10.0), {"response time ms": False}),
    ("slower, under the floor", fig(500, rtime=8.0), fig(1000, rtime=1.0),
     {"response time ms": True}),
    ("slower within the ratio", fig(500, rtime=19.0), fig(1000, rtime=10.0),
     {"response time ms": True}),
    ("no baseline time", fig(500, rtime=50.0), None, {"response time ms": None}),
    ("too few requests", fig(19, 19), fig(1000), {"5xx ratio": None, "error ratio": None,
                                                  "response time ms": None}),
    ("a baseline with no requests", fig(100, 5), fig(0), {"5xx ratio": False}),
]


@pytest.mark.parametrize(("updated", "baseline", "expected"), [j[1:] for j in JUDGED],
                         ids=[j[0] for j in JUDGED])
def test_judge(updated: lbp.Figures, baseline: lbp.Figures | None,
               expected: dict[str, bool | None]) -> None:
    found = {m.name: m.ok for m in lbp.judge(updated, baseline, S, "the other servers'")}
    assert {k: found[k] for k in expected} == expected


def test_figures_from_two_readings() -> None:
    before = {"a": Counts(requests=100, http_5xx=1, rtime_ms=3),
              "b": Counts(requests=50, connection_errors=2)}
    after = {"a": Counts(requests=300, http_5xx=41, response_errors=5, rtime_ms=4),
             "b": Counts(requests=250, connection_errors=3, rtime_ms=8), "c": Counts(9)}
    f = lbp.figures(before, after, ["a", "b", "c"])       # c: not in the first reading
    assert f == lbp.Figures(400, 40, 6, (4 * 200 + 8 * 200) / 400)
    # nginx's module sums the time: the window's own mean
    summed = lbp.figures({"a": Counts(requests=10, response_ms=100)},
                         {"a": Counts(requests=20, response_ms=600)}, ["a"])
    assert summed.rtime_ms == 50.0
    assert lbp.figures(before, before, ["a"]).rtime_ms is None


class Scripted:
    """A provider answering a measurement per check from a list."""

    def __init__(self, oks: list[bool | None]) -> None:
        self.oks = oks
        self.began = 0

    async def begin(self, subject: Subject) -> None:
        self.began += 1

    async def measure(self, subject: Subject) -> list[Measurement]:
        ok = self.oks.pop(0)
        return [Measurement("m", None if ok is None else 1.0, "", ok)]


async def no_sleep(seconds: float) -> None:
    return None


SUBJECT = Subject("node1", ("s1",), ("s2",), 1.0)


@pytest.mark.parametrize(("oks", "settings", "verdict", "checks"), [
    ([True] * 5, {}, "passed", 5),
    ([False, True, False, True, True], {}, "failed", 3),          # the 2nd failure ends it
    ([False, True, True, True, True], {}, "passed", 5),
    ([False], {"failure_limit": 1}, "failed", 1),
    ([None] * 5, {}, "inconclusive", 5),
    ([None] * 5, {"on_inconclusive": "fail"}, "failed", 5),
    ([None, None, True, None, None], {"on_inconclusive": "fail"}, "passed", 5),
    ([True, True], {"window": 5, "interval": 2}, "passed", 2),
])
async def test_the_gate_loop(oks: list[bool | None], settings: dict[str, object],
                             verdict: str, checks: int) -> None:
    provider = Scripted(list(oks))
    seen: list[int] = []
    result = await judge([provider], SUBJECT, Analysis.model_validate(settings), no_sleep,
                         lambda c: seen.append(c.number))
    assert (result.verdict, len(result.checks), provider.began) == (verdict, checks, 1)
    assert seen == list(range(1, checks + 1))


def test_placeholders_are_escaped() -> None:
    assert alternation(["web-1", "a.b", "x|y"]) == r"web-1|a\.b|x\|y"
    subject = Subject("n1", ("a.b",), ("c", "d"), 2.4)
    text = substitute('rate(x{server=~"$servers",other=~"$baseline"}[$interval]) $node',
                      subject.values())
    assert text == r'rate(x{server=~"a\.b",other=~"c|d"}[2s]) n1'


def test_bounds() -> None:
    assert bounded("q", 5.0, None, 4.0).ok is False
    assert bounded("q", 4.0, 1.0, 4.0).ok is True
    assert bounded("q", 0.5, 1.0, None).ok is False
    assert bounded("q", None, None, 4.0).ok is None


@pytest.mark.parametrize(("body", "value"), [
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},'
     b'"value":[1,"0.25"]}]}}', 0.25),
    (b'{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}', 3.0),
    (b'{"status":"success","data":{"resultType":"vector","result":[]}}', None),
])
def test_prometheus_answers(body: bytes, value: float | None) -> None:
    assert number(body) == value


def test_a_prometheus_nan_is_a_series_with_nothing_to_judge() -> None:
    nan = number(b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},'
                 b'"value":[1,"NaN"]}]}}')
    assert nan is not None and math.isnan(nan)


@pytest.mark.parametrize(("body", "why"), [
    (b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},'
     b'{"value":[1,"2"]}]}}', "2 series"),
    (b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "a matrix"),
    (b'{"status":"error","error":"parse error"}', "parse error"),
    (b'{"status":"success"}', "not an answer"),
    (b"<html>", "Expecting value"),
])
def test_prometheus_bad_answers(body: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        number(body)


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "metric"
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return str(path)


@pytest.mark.parametrize(("body", "ok", "value", "detail"), [
    ('echo "node $1 $ZDT_SERVERS"; echo 3.5\n', True, 3.5, ""),
    ("echo 12\n", False, 12.0, ""),
    ("true\n", None, None, "no data"),
    ("echo lots\n", False, None, "printed 'lots', not a number"),
    ("echo oops >&2; exit 4\n", False, None, "exit status 4: oops"),
    ("sleep 5\n", False, None, "metric timed out after 0.3 s (it and every process it"),
])
async def test_command_metric(tmp_path: Path, body: str, ok: bool | None, value: float | None,
                              detail: str) -> None:
    metric = CommandMetric(name="queue", argv=(script(tmp_path, body), "$node"), max=10.0,
                           timeout=0.3)
    [m] = await CommandProvider(metric).measure(SUBJECT)
    assert (m.ok, m.value) == (ok, value) and detail in m.detail, m


BAD = [
    ("unknown key", "[analysis]\nwindow = 10\nwindows = 3\n", "analysis.windows", 3,
     "unknown key"),
    ("window zero", "[analysis]\nwindow = 0\n", "analysis.window", 2, "greater than 0"),
    ("ratio above 1", "[analysis]\nmax_5xx_ratio = 5\n", "analysis.max_5xx_ratio", 2,
     "less than or equal to 1"),
    ("interval beyond the window", "[analysis]\nwindow = 2\ninterval = 5\n", "analysis", None,
     "interval (5 s) is longer than window (2 s)"),
    ("nothing to judge", "[analysis]\nlb_counters = false\n", "analysis", None,
     "nothing to judge"),
    ("a metric without bounds", '[analysis]\n[[analysis.command]]\nname = "q"\n'
     'argv = ["/bin/q"]\n', "analysis.command[0]", None, "give `max`, `min` or both"),
    ("a relative program", '[analysis]\n[[analysis.command]]\nname = "q"\nargv = ["q"]\n'
     "max = 1\n", "analysis.command[0].argv", 4, "absolute path"),
    ("not a Prometheus URL", '[analysis]\n[[analysis.prometheus]]\nname = "q"\n'
     'url = "ftp://x"\nquery = "up"\nmax = 1\n', "analysis.prometheus[0].url", 4,
     "not an http(s)://HOST[:PORT][/PATH] URL"),
    ("two metrics, one name", '[analysis]\n[[analysis.command]]\nname = "q"\n'
     'argv = ["/bin/q"]\nmax = 1\n[[analysis.command]]\nname = "q"\nargv = ["/bin/r"]\n'
     "max = 1\n", "analysis", None, "given twice: q"),
    ("inconclusive", '[analysis]\non_inconclusive = "maybe"\n', "analysis.on_inconclusive", 2,
     "'pass' or 'fail'"),
    ("a limit no window reaches", "[analysis]\nwindow = 2\ninterval = 2\n", "analysis", None,
     "failure_limit 2 can never be reached: the window holds 1 check(s)"),
    ("min above max", '[analysis]\n[[analysis.command]]\nname = "q"\nargv = ["/bin/q"]\n'
     "min = 5\nmax = 1\n", "analysis.command[0]", None, "min 5 is above max 1"),
    ("max not a number", '[analysis]\n[[analysis.command]]\nname = "q"\nargv = ["/bin/q"]\n'
     "max = nan\n", "analysis.command[0].max", 5, "finite number"),
    ("a misspelt placeholder", '[analysis]\n[[analysis.prometheus]]\nname = "q"\n'
     'url = "http://p:9090"\nquery = "up{server=~\'$server\'}"\nmax = 1\n',
     "analysis.prometheus[0].query", 5, "unknown placeholder(s) $server"),
    ("a URL with no host", '[analysis]\n[[analysis.prometheus]]\nname = "q"\n'
     'url = "http://"\nquery = "up"\nmax = 1\n', "analysis.prometheus[0].url", 4,
     "not an http(s)://HOST"),
]


@pytest.mark.parametrize(("section", "field", "line", "why"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_analysis_section(tmp_path: Path, sample_toml: str, section: str, field: str,
                              line: int | None, why: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + "\n" + section)
    offset = sample_toml.count("\n") + 1
    with pytest.raises(ConfigError) as err:
        dm.load(path)
    message = str(err.value)
    where = f"{path}:{offset + line}: " if line else str(path)
    assert err.value.exit_code == 2
    assert any(where in m and f"{field}: " in m and why in m for m in message.splitlines()), \
        message


def test_a_good_analysis_section(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + '\n[analysis]\nwindow = 6\ninterval = 2\n'
                    '[[analysis.prometheus]]\nname = "5xx"\nurl = "http://127.0.0.1:9090/"\n'
                    'query = "sum(up)"\nmin = 1\n')
    a = dm.load(path).analysis
    assert a is not None and a.checks == 3 and a.prometheus[0].url == "http://127.0.0.1:9090"



def test_a_promql_query_gets_escaped_names() -> None:
    """A dotted LB name is `a\\.b` as a regular expression, `a\\\\.b` inside a quoted
    PromQL string (Prometheus's lexer refuses an unknown escape like `\\.`)."""
    metric = PrometheusMetric(name="q", url="http://p:9090", max=1.0,
                              query='sum(x{server=~"$servers"}) / sum(x{server=~"$baseline"})')
    subject = Subject("n1", ("web.1",), ("web.2", "web-3"), 2.0)
    assert PrometheusProvider(metric).query(subject) == \
        'sum(x{server=~"web\\\\.1"}) / sum(x{server=~"web\\\\.2|web-3"})'


class Readings:
    """An LB whose counters are given, one reading per call."""

    def __init__(self, *readings: Counters) -> None:
        self.readings = list(readings)

    async def counters(self) -> Counters:
        return self.readings.pop(0)


def reading(in_rotation: tuple[str, ...], **requests: tuple[int, int]) -> Counters:
    """Per server: (requests, 5xx) so far."""
    return Counters("test", Counts(), {n: Counts(requests=r, http_5xx=e)
                                       for n, (r, e) in requests.items()}, in_rotation)


async def test_the_lb_provider_compares_with_the_others_then_with_the_servers_own_past(
        ) -> None:
    settings = Analysis()
    subject = Subject("node1", ("a",), ("b",), 2.0)
    both = ("a", "b")
    lb = Readings(reading(both, a=(0, 0), b=(0, 0)), reading(both, a=(100, 5), b=(100, 5)),
                  reading(both, a=(200, 15), b=(105, 5)))
    provider = LbProvider(lb, settings, ({"a": Counts()}, {"a": Counts(requests=1000,
                                                                        http_5xx=100)}))
    await provider.begin(subject)
    first = {m.name: m for m in await provider.measure(subject)}
    assert (first["5xx ratio"].ok, first["5xx ratio"].baseline) == (True, 0.05)   # as bad
    assert "the other servers'" in first["5xx ratio"].bound
    # the others took too few requests: the servers' own 10 % before the visit
    second = {m.name: m for m in await provider.measure(subject)}
    assert (second["5xx ratio"].ok, second["5xx ratio"].baseline) == (True, 0.1)
    assert "their own before the visit" in second["5xx ratio"].bound


async def test_a_judged_server_that_leaves_rotation_fails_the_check() -> None:
    subject = Subject("node1", ("a",), ("b",), 2.0)
    lb = Readings(reading(("a", "b"), a=(0, 0), b=(0, 0)), reading(("b",), a=(3, 0), b=(90, 0)))
    provider = LbProvider(lb, Analysis(), None)
    await provider.begin(subject)
    [m] = await provider.measure(subject)
    assert (m.name, m.ok) == ("in rotation", False) and "a left rotation" in m.detail


def test_a_gate_compares_a_visit_with_its_own_clusters(sample_toml: str, tmp_path: Path
                                                       ) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml)
    domain = dm.load(path)
    assert peers(domain, ("s1",)) == {"s1", "s2", "s3"}          # cluster web
    assert peers(domain, ("s4",)) == {"s4"}                      # cluster batch
    assert peers(domain, ("admin",)) == {"admin"}                # in no cluster

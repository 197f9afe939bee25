"""The LB's witness: HAProxy's counters parsed, differences over runs and node visits;
the listen backlogs read for the capacity checks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from zdt import capacity, witness
from zdt.adapters.lb import Counts
from zdt.adapters.lb.haproxy import parse_counters

HEADER = ("# pxname,svname,qcur,qmax,scur,stot,econ,eresp,wretr,wredis,status,hrsp_5xx,"
          "req_tot,cli_abrt,srv_abrt,")


def stat(*rows: str) -> str:
    return "\n".join([HEADER, *rows, ""])


def test_show_stat_rows_become_counts_for_the_backend_and_each_server() -> None:
    text = stat("app,s1,0,3,1,100,2,1,0,0,UP,4,98,5,1,",
                "app,s2,0,0,0,50,0,0,0,0,DOWN,0,50,0,0,",
                "app,s3,0,0,0,7,0,0,0,0,UP,0,7,0,0,",
                "app,BACKEND,0,9,1,157,2,1,0,0,UP,6,155,5,1,")
    c = parse_counters(text, {"s3": 0x08}, "HAProxy backend app")   # s3 drained
    assert c.backend == Counts(requests=155, connection_errors=2, response_errors=1,
                               http_5xx=6, client_aborts=5, server_aborts=1, queue_max=9)
    assert c.servers["s1"] == Counts(98, 2, 1, 4, 0, 0, 5, 1, 3)
    assert c.in_rotation == ("s1",)          # s2 is DOWN, s3 drained


def test_tcp_mode_counts_sessions_as_requests() -> None:
    text = stat("app,s1,0,0,0,40,0,0,0,0,UP,,,0,0,", "app,BACKEND,0,0,0,40,0,0,0,0,UP,,,0,0,")
    assert parse_counters(text, {}, "x").backend.requests == 40


@pytest.mark.parametrize("text", ["Unknown command\n", "",
                                  stat("app,s1,0,0,0,1,0,0,0,0,UP,0,1,0,0,")])
def test_an_answer_without_a_backend_row_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_counters(text, {}, "x")


def reading(requests: int, econ: int = 0, http_5xx: int = 0, *, qmax: int = 0,
            in_rotation: tuple[str, ...] = ("s1", "s2", "s3"), epoch: str = "100",
            servers: tuple[str, ...] = ("s1", "s2", "s3")) -> dict[str, Any]:
    backend = Counts(requests=requests, connection_errors=econ, http_5xx=http_5xx,
                     queue_max=qmax)
    per = Counts(requests=requests // 3, connection_errors=econ, http_5xx=http_5xx)
    return {"source": "HAProxy backend app", "epoch": epoch, "backend": asdict(backend),
            "servers": {s: asdict(per) for s in servers}, "in_rotation": list(in_rotation)}


def event(at: str, counters: dict[str, Any] | None, *, group: int | None = None,
          node: str | None = None, out: tuple[str, ...] = (), action: str = "run",
          **extra: Any) -> dict[str, Any]:
    data = {"at": at, "action": action, "group": group, "node": node, "out": list(out),
            **extra}
    if counters is not None:
        data["counters"] = counters
    return {"kind": "witness", "message": at, "data": data, "ts": 0.0, "step": None}


def test_a_run_and_its_visits_add_up_with_the_node_out_and_the_share_in_rotation() -> None:
    events = [event("start", reading(1000)),
              event("drain", reading(1100), group=0, node="node1", out=("s1",)),
              {"kind": "step", "message": "done", "data": None, "ts": 0.0, "step": 1},
              event("ready", reading(1500, econ=2, http_5xx=2, qmax=4), group=0, node="node1"),
              event("drain", reading(1600, 2, 2, qmax=4), group=1, node="node2", out=("s2",)),
              event("ready", reading(1900, 2, 2, qmax=4), group=1, node="node2"),
              event("end", reading(2000, 2, 2, qmax=4))]
    w = witness.summarize(events)
    assert w is not None
    # each failed request once: two 503s, whose cause was a connection error
    assert (w["requests"], w["connection_errors"], w["http_5xx"], w["errors"]) == (1000, 2, 2, 2)
    assert (w["complete"], w["queue_max"], w["queue_max_rose"]) == (True, 4, True)
    assert w["error_visits"] == ["node1"]
    first, second = w["visits"]
    assert (first["node"], first["requests"], first["errors"], first["in_rotation"],
            first["backend_servers"]) == ("node1", 400, 2, 2, 3)
    assert first["error_servers"] == {"s1": 2, "s2": 2, "s3": 2}
    assert (second["requests"], second["errors"], second["error_servers"]) == (300, 0, {})
    assert "1,000 requests" in witness.sentence(w)
    assert "2 connection errors" in witness.sentence(w)
    assert "errors while node1 was out" in witness.sentence(w)


def test_errors_while_zdt_was_dead_count_in_the_workflow_and_its_visit() -> None:
    events = [event("start", reading(0)),
              event("drain", reading(100), group=0, node="node1", out=("s1",)),
              # zdt killed here: no ready, no end; 7 requests fail before the resume
              event("start", reading(500, http_5xx=7), action="resume"),
              event("drain", reading(510, http_5xx=7), group=0, node="node1", out=("s1",)),
              event("ready", reading(600, http_5xx=7), group=0, node="node1"),
              event("end", reading(700, http_5xx=7), action="resume")]
    w = witness.summarize(events)
    assert w is not None
    assert [(r["action"], r["complete"], r["requests"]) for r in w["runs"]] == [
        ("run", False, 100), ("resume", True, 200)]
    assert (w["requests"], w["errors"], w["complete"]) == (700, 7, False)
    [visit] = w["visits"]       # from the first drain, across the crash and the re-drain
    assert (visit["requests"], visit["errors"]) == (500, 7)
    assert "incomplete" in witness.sentence(w)


@pytest.mark.parametrize("after", [reading(10), reading(9000, epoch="200")],
                         ids=["went back", "another LB process"])
def test_a_restarted_lb_makes_the_window_unknown_not_wrong(after: dict[str, Any]) -> None:
    events = [event("start", reading(5000)), event("end", after)]
    w = witness.summarize(events)
    assert w is not None and w["runs"][0]["reset"] is True
    assert w["unavailable"] == "the counters were reset"


def test_a_window_across_a_restart_is_left_out_of_the_total() -> None:
    events = [event("start", reading(5000)), event("drain", reading(5100), group=0),
              event("ready", reading(50, epoch="200"), group=0),
              event("end", reading(80, epoch="200"))]
    w = witness.summarize(events)
    assert w is not None
    assert (w["requests"], w["resets"], w["complete"]) == (130, 1, False)


def test_a_server_new_since_the_first_reading_is_not_credited_its_lifetime() -> None:
    d = witness.difference(reading(300, servers=("s1", "s2")),
                           reading(600, servers=("s1", "s2", "s3")))
    assert sorted(d["servers"]) == ["s1", "s2"]


@pytest.mark.parametrize(("extra", "why"), [
    ({"unsupported": "open-source nginx keeps no counters"}, "open-source nginx keeps no"),
    ({"error": "cannot reach HAProxy's admin socket"}, "cannot reach HAProxy"),
])
def test_an_lb_that_cannot_witness_says_so(extra: dict[str, Any], why: str) -> None:
    events = [event("start", None, **extra), event("end", None, **extra)]
    w = witness.summarize(events)
    assert w is not None and why in w["unavailable"]
    assert witness.sentence(w).startswith("no witness from the load balancer: ")


def test_no_reading_no_witness() -> None:
    assert witness.summarize([]) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("LISTEN 0      1024       127.0.0.1:18001      0.0.0.0:*\n", {18001: 1024}),
    ("LISTEN 0 5 0.0.0.0:8001 0.0.0.0:*\nLISTEN 0 4096 [::]:8001 [::]:*\n", {8001: 5}),
    ("LISTEN 3 128 *:22 *:*\n", {22: 128}),
    ("ESTAB 0 0 127.0.0.1:5000 127.0.0.1:40000\nLISTEN x y z\n\n", {}),
])
def test_listen_backlogs_are_read_from_ss(text: str, expected: dict[int, int]) -> None:
    assert capacity.parse_listeners(text) == expected

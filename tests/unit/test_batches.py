"""Batches of node visits and the capacity guard: the budget arithmetic, the parsing of
--batch and --min-in-service, how visits are cut into batches, and what the plan refuses."""

from __future__ import annotations

from pathlib import Path

import planning
import pytest

from zdt import domain as dm
from zdt.errors import ConfigError, PreconditionError
from zdt.workflow import plan
from zdt.workflow.batches import Size, may_be_out, parse_batch, parse_minimum, required_in_service
from zdt.workflow.request import RolloutRequest


def load(tmp_path: Path, text: str) -> dm.Domain:
    path = tmp_path / "domain.toml"
    path.write_text(text)
    return dm.load(path)


@pytest.mark.parametrize(("in_lb", "minimum", "required", "out"), [
    (1, "50%", 1, 0),        # one server: it must stay, nothing may go
    (2, "50%", 1, 1),        # two nodes of one server each: one at a time
    (3, "50%", 2, 1),        # ceil(1.5)
    (8, "50%", 4, 4),        # the docstring's worked example
    (8, "75%", 6, 2),
    (8, "100%", 8, 0),       # everything stays: no batch can go
    (8, "0%", 1, 7),         # never below one server in rotation
    (8, "3", 3, 5),          # a count
    (8, "0", 1, 7),
    (8, "10", 8, 0),         # a count above the cluster: all stay
    (0, "50%", 0, 0),        # no server behind the LB: nothing to guard
    (1000, "90%", 900, 100),
    (7, "33%", 3, 4),        # ceil(2.31)
], ids=["1 server", "2 servers", "3 servers", "8 servers", "75%", "100%", "0%", "count",
        "count 0", "count above", "no lb server", "1000 servers", "33%"])
def test_the_budget(in_lb: int, minimum: str, required: int, out: int) -> None:
    size = parse_minimum(minimum)
    assert required_in_service(in_lb, size) == required
    assert may_be_out(in_lb, size) == out


@pytest.mark.parametrize(("text", "ramp"), [
    ("1", (Size(count=1),)),
    ("25%", (Size(percent=25),)),
    ("100%", (Size(percent=100),)),
    ("1,2,25%", (Size(count=1), Size(count=2), Size(percent=25))),
    (" 1 , 3 ", (Size(count=1), Size(count=3))),
])
def test_batch_parsed(text: str, ramp: tuple[Size, ...]) -> None:
    assert parse_batch(text) == ramp


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5", "abc", "1,,2", "1,", "0%", "101%",
                                  "%", "2 nodes", "25 %", "1;2", "9999999"])
def test_bad_batch_is_refused_naming_the_option(text: str) -> None:
    request = RolloutRequest.of("restart", ("domain",), batch=text)
    with pytest.raises(ConfigError, match="--batch"):
        request.validate_common()


@pytest.mark.parametrize("text", ["", "-1", "101%", "x", "50 %", "1,2", "5.5"])
def test_bad_minimum_is_refused_naming_the_option(text: str) -> None:
    request = RolloutRequest.of("restart", ("domain",), min_in_service=text)
    with pytest.raises(ConfigError, match="--min-in-service"):
        request.validate_common()


def batches(p: plan.Plan) -> list[list[str]]:
    return [[p.nodes[g] for g in b] for b in p.batches]


@pytest.mark.parametrize(("batch", "expected"), [
    ("1", [["node1"], ["node2"], ["node3"], ["node4"], ["node5"], ["node6"], ["node7"],
           ["node8"]]),
    ("3", [["node1", "node2", "node3"], ["node4", "node5", "node6"], ["node7", "node8"]]),
    ("25%", [["node1", "node2"], ["node3", "node4"], ["node5", "node6"], ["node7", "node8"]]),
    ("30%", [["node1", "node2"], ["node3", "node4"], ["node5", "node6"], ["node7", "node8"]]),
    ("10%", [[f"node{i}"] for i in range(1, 9)]),        # rounded down, at least one
    ("1,2,50%", [["node1"], ["node2", "node3"], ["node4", "node5", "node6", "node7"],
                 ["node8"]]),
    ("1,3", [["node1"], ["node2", "node3", "node4"], ["node5", "node6", "node7"], ["node8"]]),
], ids=["one", "three", "25%", "30% rounds down", "10% at least one", "ramp", "ramp repeats"])
def test_batches_of_a_cluster_of_eight(tmp_path: Path, batch: str,
                                       expected: list[list[str]]) -> None:
    domain = load(tmp_path, planning.fleet(8))
    p = planning.build("restart", domain, ["web"], batch=batch)
    assert batches(p) == expected
    # each step carries its batch; the steps of one batch are contiguous, in batch order
    numbers = [s.batch for s in p.steps]
    assert numbers == sorted(numbers) and set(numbers) == set(range(len(expected)))


def test_the_admin_goes_first_and_alone(tmp_path: Path) -> None:
    domain = load(tmp_path, planning.fleet(6, admin=True))
    p = planning.build("restart", domain, ["domain"], batch="3")
    assert batches(p) == [["node1"], ["node1", "node2", "node3"], ["node4", "node5", "node6"]]
    p = planning.build("home", domain, ["domain"], batch="1,2")    # the admin's whole node
    assert batches(p) == [["node1"], ["node2"], ["node3", "node4"], ["node5", "node6"]]


def test_a_percentage_is_of_each_clusters_nodes(tmp_path: Path) -> None:
    """Cluster a spans nodes 1-4, cluster b nodes 5-12: 25 % is one node of a, two of b."""
    text = planning.fleet(12, clusters={"a": [f"n{i}s1" for i in range(1, 5)],
                                        "b": [f"n{i}s1" for i in range(5, 13)]})
    p = planning.build("restart", load(tmp_path, text), ["domain"], batch="25%")
    assert batches(p) == [["node1"], ["node2"], ["node3"], ["node4", "node5", "node6"],
                          ["node7", "node8"], ["node9", "node10"], ["node11", "node12"]]


def test_a_pause_point_cuts_a_batch(tmp_path: Path) -> None:
    domain = load(tmp_path, planning.fleet(8))
    p = planning.build("restart", domain, ["web"], batch="3", pause_after=4)
    assert batches(p) == [["node1", "node2", "node3"], ["node4"], ["node5", "node6", "node7"],
                          ["node8"]]


def test_hooks_are_batches_of_their_own(tmp_path: Path) -> None:
    hooks = {"before-update": "/hooks/pre", "after-update": "/hooks/post"}
    domain = load(tmp_path, planning.fleet(4, hooks=hooks))
    p = planning.build("restart", domain, ["web"], batch="2")
    by_batch: dict[int, list[tuple[str, str]]] = {}
    for s in p.steps:
        by_batch.setdefault(s.batch, []).append((s.node, s.name))
    assert by_batch[0] == [("node1", "hook:before-update")]
    assert {n for n, _ in by_batch[1]} == {"node1", "node2"}
    assert {n for n, _ in by_batch[2]} == {"node3", "node4"}
    assert by_batch[3] == [("node4", "hook:after-update")]
    assert batches(p) == [["node1", "node2"], ["node3", "node4"]]


@pytest.mark.parametrize(("per_node", "batch", "minimum", "fragment"), [
    ([1, 1, 1, 1], "3", "50%", "batch 1 (node1, node2, node3) would take 3 of the 4 "
     "server(s) of cluster web behind the load balancer out of rotation, leaving 1; "
     "--min-in-service 50% keeps at least 2, so at most 2 may be out at once"),
    ([1, 1, 1, 1], "100%", "50%", "batch 1 (node1, node2, node3, node4) would take 4"),
    ([1, 1, 1, 1], "2", "75%", "--min-in-service 75% keeps at least 3, so at most 1"),
    ([1, 1, 1, 1], "1", "100%", "keeps at least 4, so at most 0 may be out"),
    ([1, 1, 1, 1], "1", "4", "--min-in-service 4 keeps at least 4"),
    # unevenly spread: node1 holds 3 of 5, its visit alone leaves 2 < ceil(2.5)
    ([3, 1, 1], "1", "50%", "batch 1 (node1) would take 3 of the 5"),
    ([2, 2], "2", "50%", "batch 1 (node1, node2) would take 4 of the 4"),
], ids=["batch 3 of 4", "100%", "75%", "min 100%", "min as a count", "uneven", "two nodes"])
def test_the_guard_refuses_with_the_arithmetic(tmp_path: Path, per_node: list[int],
                                               batch: str, minimum: str,
                                               fragment: str) -> None:
    domain = load(tmp_path, planning.fleet(per_node))
    with pytest.raises(PreconditionError) as caught:
        planning.build("restart", domain, ["web"], batch=batch, min_in_service=minimum)
    assert fragment in str(caught.value)
    assert "--allow-downtime" in str(caught.value)


@pytest.mark.parametrize(("per_node", "batch", "minimum", "largest"), [
    ([1, 1, 1, 1], "2", "50%", 2),
    ([1, 1], "1", "50%", 1),              # two nodes: one at a time is what 50 % allows
    ([2, 2, 2, 2], "2", "50%", 4),
    ([3, 1, 1], "1", "40%", 3),           # uneven, with a lower floor
    ([1] * 10, "1,2,25%", "50%", 2),
    ([1, 1, 1, 1], "1", "0%", 1),
], ids=["batch 2 of 4", "two nodes", "two per node", "uneven at 40%", "ramp", "min 0%"])
def test_the_guard_lets_through_what_fits(tmp_path: Path, per_node: list[int], batch: str,
                                          minimum: str, largest: int) -> None:
    domain = load(tmp_path, planning.fleet(per_node))
    p = planning.build("restart", domain, ["web"], batch=batch, min_in_service=minimum)
    (budget,) = p.budgets
    assert (budget.cluster, budget.in_lb, budget.largest_out) == ("web", sum(per_node),
                                                                  largest)
    assert budget.largest_out <= budget.may_be_out


def test_allow_downtime_lifts_the_guard_but_shows_the_arithmetic(tmp_path: Path) -> None:
    domain = load(tmp_path, planning.fleet(4))
    p = planning.build("restart", domain, ["web"], batch="100%", allow_downtime=True)
    assert batches(p) == [["node1", "node2", "node3", "node4"]]
    (budget,) = p.budgets
    assert (budget.required, budget.may_be_out, budget.largest_out) == (2, 2, 4)


def test_servers_in_no_cluster_are_guarded_too(tmp_path: Path) -> None:
    domain = load(tmp_path, planning.fleet(4, clusters={"web": ["n1s1", "n2s1"]}))
    with pytest.raises(PreconditionError, match="of no cluster behind"):
        planning.build("restart", domain, ["n3s1", "n4s1"], batch="2")


def test_the_default_is_one_visit_at_a_time(tmp_path: Path) -> None:
    domain = load(tmp_path, planning.fleet(3, admin=True))
    p = planning.build("restart", domain, ["domain"])
    assert [len(b) for b in p.batches] == [1, 1, 1, 1]
    assert [s.batch for s in p.steps] == [s.group for s in p.steps]

from __future__ import annotations

from pathlib import Path

import planning
import pytest

from zdt import domain as dm
from zdt.errors import ConfigError, PreconditionError
from zdt.workflow import kinds, plan
from zdt.workflow.request import RolloutRequest


@pytest.fixture
def domain(domain_file: Path) -> dm.Domain:
    return dm.load(domain_file)


def steps(p: plan.Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(s.node, s.name, s.servers) for s in p.steps]


LB = ("drain", "stop", "start", "health", "ready")
NO_LB = ("stop", "start", "health")


@pytest.mark.parametrize(("targets", "expected"), [
    (["admin"], [("node1", NO_LB, ("admin",))]),
    (["web"], [("node1", LB, ("s1",)), ("node2", LB, ("s2",)), ("node3", LB, ("s3",))]),
    (["s2"], [("node2", LB, ("s2",))]),
    (["s3", "s2"], [("node2", LB, ("s2",)), ("node3", LB, ("s3",))]),
    (["web", "s4", "web"], [("node1", LB, ("s1",)), ("node2", LB, ("s2",)),
                            ("node3", LB, ("s3", "s4"))]),
    (["admin", "s1"], [("node1", NO_LB, ("admin",)), ("node1", LB, ("s1",))]),
    (["domain"], [("node1", NO_LB, ("admin",)), ("node1", LB, ("s1",)),
                  ("node2", LB, ("s2",)), ("node3", LB, ("s3", "s4"))]),
], ids=["admin", "cluster", "server", "servers-sorted", "dedup-and-merge-node", "admin-first",
        "domain"])
def test_restart_order(domain: dm.Domain, targets: list[str],
                       expected: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
    p = planning.build("restart", domain, targets, allow_downtime=True)
    want = [(node, name, servers) for node, names, servers in expected for name in names]
    assert steps(p) == want
    assert [s.index for s in p.steps] == list(range(len(want)))
    visits = [g for g, _ in enumerate(expected)]
    assert sorted({s.group for s in p.steps}) == visits
    assert p.nodes == tuple(node for node, _, _ in expected)


def test_one_node_at_a_time(domain: dm.Domain) -> None:
    """Each node visit is contiguous: a node is never revisited after another began."""
    p = planning.build("restart", domain, ["domain"], allow_downtime=True)
    groups = [s.group for s in p.steps]
    assert groups == sorted(groups)


@pytest.mark.parametrize(("targets", "fragment"), [
    ([], "--targets"),
    ([" ", ""], "--targets"),
    (["nope"], "unknown target 'nope'"),
    (["web", "s9"], "unknown target 's9'"),
])
def test_bad_targets(domain: dm.Domain, targets: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        planning.build("restart", domain, targets)
    assert err.value.exit_code == 2


def test_admin_target_without_admin(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(sample_toml.replace('admin = "admin"\n', "", 1))
    with pytest.raises(ConfigError, match="names no admin server"):
        planning.build("restart", dm.load(path), ["admin"])


@pytest.mark.parametrize("targets", [["batch"], ["domain"]])
def test_single_node_cluster_is_refused(domain: dm.Domain, targets: list[str]) -> None:
    with pytest.raises(PreconditionError, match="cluster 'batch' lives on the single node") as e:
        planning.build("restart", domain, targets)
    assert e.value.exit_code == 3
    assert planning.build("restart", domain, targets, allow_downtime=True).steps


def test_spread_cluster_is_allowed(domain: dm.Domain) -> None:
    assert len(planning.build("restart", domain, ["web"]).steps) == 15


@pytest.mark.parametrize("targets", [["s4"], ["s3", "s4"], ["web", "s4"]])
def test_a_single_node_cluster_member_named_directly_is_refused(
        domain: dm.Domain, targets: list[str]) -> None:
    with pytest.raises(PreconditionError, match="cluster 'batch'"):
        planning.build("restart", domain, targets)


ONE_NODE = """\
[domain]
name = "tiny"
home = "/srv/app/home"
state_dir = "state"

[lb]
socket = "lb.sock"

[[nodes]]
name = "only"

[[nodes]]
name = "spare"
root = "spare"

[[servers]]
name = "a"
node = "only"
port = 9001

[[servers]]
name = "b"
node = "only"
port = 9002

[[servers]]
name = "c"
node = "spare"
port = 9003
lb = false
"""


def test_a_visit_that_empties_the_lb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(ONE_NODE)
    domain = dm.load(path)
    with pytest.raises(PreconditionError, match="while only is out of rotation no other"):
        planning.build("restart", domain, ["domain"])
    with pytest.raises(PreconditionError):
        planning.build("restart", domain, ["a", "b"])
    steps = planning.build("restart", domain, ["c"]).steps
    assert [s.name for s in steps] == ["stop", "start", "health"]
    assert planning.build("restart", domain, ["domain"], allow_downtime=True).steps


HOME = ("extract", "drain", "stop", "backup", "switch", "start", "health", "ready")


def test_home_plan_extracts_before_the_drain(domain: dm.Domain) -> None:
    p = planning.build("home", domain, ["web"], allow_downtime=True)
    assert p.kind == "home"
    assert [s.name for s in p.for_group(0)] == list(HOME)
    assert [s.node for s in p.steps if s.name == "switch"] == ["node1", "node2", "node3"]


def test_a_home_visit_takes_every_server_of_the_node(domain: dm.Domain) -> None:
    """The home is the node's: s4 (untargeted, on s3's node) and the admin (on s1's node)
    are stopped with their neighbours, and the admin's node goes first."""
    p = planning.build("home", domain, ["s1", "s3"], allow_downtime=True)
    assert p.nodes == ("node1", "node3")
    by = {(s.node, s.name): s.servers for s in p.steps}
    assert by[("node1", "stop")] == ("admin", "s1")
    assert by[("node1", "drain")] == ("s1",)
    assert by[("node3", "stop")] == ("s3", "s4")
    with pytest.raises(PreconditionError, match="cluster 'batch'"):
        planning.build("home", domain, ["s3"])       # it would take batch's only server down


def test_hooks_become_steps_where_named(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + '\n[hooks]\nbefore-update = "/h/a"\neach-node = "/h/b"\n'
                    'offline-after-update = "/h/c"\nafter-update = "/h/d"\n')
    p = planning.build("home", dm.load(path), ["web"], allow_downtime=True)
    first, last = p.for_group(0), p.for_group(2)
    assert [s.name for s in first] == [
        "hook:before-update", "hook:each-node", "extract", "drain", "stop", "backup", "switch",
        "hook:offline-after-update", "start", "health", "ready"]
    assert [s.name for s in last][-1] == "hook:after-update"
    assert [s.name for s in p.for_group(1)].count("hook:each-node") == 1
    restart = planning.build("restart", dm.load(path), ["s2"])
    assert [s.name for s in restart.steps] == [
        "hook:before-update", "hook:each-node", "drain", "stop", "hook:offline-after-update",
        "start", "health", "ready", "hook:after-update"]


PARTS = SAMPLE_PARTS = """
[[servers]]
name = "s1-p1"
node = "node1"
port = 9101
partition_of = "s1"
partition = "p1"

[[servers]]
name = "s2-p1"
node = "node2"
port = 9102
partition_of = "s2"
partition = "p1"

[[servers]]
name = "s2-p2"
node = "node2"
port = 9103
partition_of = "s2"
partition = "p2"
"""


@pytest.mark.parametrize(("targets", "partitions", "expected"), [
    (["web"], ["p1"], [("node1", ("s1-p1",)), ("node2", ("s2-p1",))]),
    (["web"], ["p2"], [("node2", ("s2-p2",))]),
    (["s2"], ["p1", "p2"], [("node2", ("s2-p1", "s2-p2"))]),
])
def test_partition_restart_plans(tmp_path: Path, sample_toml: str, targets: list[str],
                                 partitions: list[str],
                                 expected: list[tuple[str, tuple[str, ...]]]) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + PARTS)
    p = planning.build("restart", dm.load(path), targets, partitions=partitions,
                       allow_downtime=True)
    assert [(s.node, s.servers) for s in p.steps if s.name == "stop"] == expected


def test_a_partition_the_targets_lack(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + PARTS)
    with pytest.raises(ConfigError, match="--partitions: no partition p2"):
        planning.build("restart", dm.load(path), ["s1"], partitions=["p2"])
    with pytest.raises(ConfigError, match="--partitions: `zdt rollout home` has no such option"):
        kinds.get("home").validate(RolloutRequest.of("home", ("s1",), archive="a.tar.gz",
                                                     partitions=("p1",)))


def test_a_partition_on_a_single_node_is_refused(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + PARTS)
    with pytest.raises(PreconditionError, match="partition 'p2' lives on the single node"):
        planning.build("restart", dm.load(path), ["s2"], partitions=["p2"])


def test_a_metric_gate_follows_each_ready(domain: dm.Domain) -> None:
    """--analysis: an `analysis` step after every ready, on the visit's servers behind the
    LB; the admin's visit (no ready) has none; a home rollout's visits too."""
    gated = planning.build("restart", domain, ["domain"], allow_downtime=True, analysis=True)
    assert [(s.node, s.servers) for s in gated.steps if s.name == "analysis"] == [
        ("node1", ("s1",)), ("node2", ("s2",)), ("node3", ("s3", "s4"))]
    for group in range(1, 4):
        names = [s.name for s in gated.for_group(group)]
        assert names[names.index("ready") + 1] == "analysis" and names[-1] == "analysis"
    assert "analysis" not in [s.name for s in gated.for_group(0)]
    plain = planning.build("restart", domain, ["domain"], allow_downtime=True)
    assert "analysis" not in {s.name for s in plain.steps}
    home = planning.build("home", domain, ["web"], allow_downtime=True, analysis=True)
    assert [s.name for s in home.for_group(0)][-2:] == ["ready", "analysis"]

"""Several load balancers driven as one: a server's states combined, counters added up,
every LB asked even when one fails, and `[[lb]]` in domain.toml checked like any section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from zdt import domain as dm
from zdt.adapters.lb import Counters, Counts, LbState
from zdt.adapters.lb.every import EveryLB, combined, summed
from zdt.adapters.lb.haproxy import HAProxyConfig
from zdt.domain import Server
from zdt.errors import AdapterError, ConfigError

READY = LbState("ready", "UP", 3, 0)
DRAINED = LbState("drain", "UP", 0, 0)
DRAINING = LbState("drain", "UP", 2, 1)
MAINT_DOWN = LbState("maint", "MAINT", 0, 0)
READY_DOWN = LbState("ready", "DOWN", 0, 0)


@pytest.mark.parametrize(("states", "in_rotation", "drained"), [
    ([READY, READY], True, False),
    ([READY, READY_DOWN], False, False),       # UP on one only: not in rotation
    ([DRAINED, DRAINED], False, True),
    ([DRAINED, DRAINING], False, False),       # sessions left on one: still draining
    ([READY, DRAINED], False, False),          # drained on one only: neither
    ([LbState("ready", "UP", 0, 0), DRAINED], False, False),   # even with no session
    ([DRAINED, MAINT_DOWN], False, True),
    ([MAINT_DOWN, MAINT_DOWN], False, True),
], ids=["ready both", "down on one", "drained both", "draining on one", "mixed",
        "mixed idle", "drain and maint", "maint both"])
def test_a_servers_state_on_every_lb(states: list[LbState], in_rotation: bool,
                                     drained: bool) -> None:
    state = combined(states)
    assert state.in_rotation is in_rotation
    nothing_left = state.admin != "ready" and (not state.up or
                                               (state.sessions == 0 and state.queued == 0))
    assert nothing_left is drained


def test_counters_are_added_up() -> None:
    a = Counters("HAProxy backend app", Counts(requests=10, http_5xx=1, queue_max=2),
                 {"s1": Counts(requests=6), "s2": Counts(requests=4)}, ("s1", "s2"), "100")
    b = Counters("HAProxy backend app", Counts(requests=5, retries=1, queue_max=7),
                 {"s1": Counts(requests=5)}, ("s1",), "200")
    total = summed([a, b], ["lb[0]", "lb[1]"])
    assert total.backend == Counts(requests=15, http_5xx=1, retries=1, queue_max=7)
    assert total.servers == {"s1": Counts(requests=11), "s2": Counts(requests=4)}
    assert total.in_rotation == ("s1",)
    assert total.epoch == "100+200"
    assert total.source == "lb[0]: HAProxy backend app + lb[1]: HAProxy backend app"


class FakeLB:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def drain(self, servers: Sequence[Server]) -> None:
        self.calls.append(("drain", tuple(s.name for s in servers)))
        if self.fail:
            raise self.fail

    async def ready(self, servers: Sequence[Server]) -> None:
        self.calls.append(("ready", tuple(s.name for s in servers)))

    async def state(self, server: Server) -> LbState:
        return READY

    async def counters(self) -> Counters | str:
        return "keeps no counters"

    async def close(self) -> None:
        self.calls.append(("close", ()))


SERVER = Server(name="s1", node="n1", port=8001)


async def test_one_lb_failing_is_named_and_the_others_were_asked() -> None:
    good, bad = FakeLB(), FakeLB(AdapterError("socket gone"))
    lb = EveryLB([bad, good], ["lb[0] (haproxy)", "lb[1] (haproxy on lb2)"])
    with pytest.raises(AdapterError) as caught:
        await lb.drain([SERVER])
    assert "drain: 1 of 2 load balancers failed: lb[0] (haproxy): socket gone" in \
        str(caught.value)
    assert caught.value.retryable
    assert good.calls == [("drain", ("s1",))] and bad.calls == [("drain", ("s1",))]
    permanent = FakeLB(AdapterError("no such server", retryable=False))
    with pytest.raises(AdapterError) as caught:
        await EveryLB([permanent, permanent], ["a", "b"]).drain([SERVER])
    assert not caught.value.retryable
    assert await lb.counters() == "lb[0] (haproxy): keeps no counters"
    await lb.close()
    assert ("close", ()) in good.calls and ("close", ()) in bad.calls


HEAD = """[domain]
name = "d"
home = "/srv/app/home"
state_dir = "state"
[services]
kind = "supervisor"
[[nodes]]
name = "n1"
root = "nodes/n1"
[[nodes]]
name = "lb2"
address = "ssh://root@10.0.0.9"
[[servers]]
name = "s1"
node = "n1"
port = 8001
"""


def test_several_lbs_load(tmp_path: Path) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(HEAD + '[[lb]]\nsocket = "haproxy/admin.sock"\n'
                    '[[lb]]\nsocket = "/run/haproxy/admin.sock"\nnode = "lb2"\n'
                    '[[lb]]\nsocket = "tcp://10.0.0.5:9999"\n')
    d = dm.load(path)
    assert all(isinstance(lb, HAProxyConfig) for lb in d.lbs)
    sockets = [lb.socket for lb in d.lbs if isinstance(lb, HAProxyConfig)]
    assert sockets == [str(tmp_path / "haproxy/admin.sock"), "/run/haproxy/admin.sock",
                       "tcp://10.0.0.5:9999"]


@pytest.mark.parametrize(("lbs", "line", "fragment"), [
    ('[[lb]]\nsocket = "a.sock"\n[[lb]]\nsocket = "tcp://10.0.0.5"\n', 20,
     "lb[1].socket: socket 'tcp://10.0.0.5': give tcp://HOST:PORT"),
    ('[[lb]]\nsocket = "a.sock"\n[[lb]]\nsocket = "/s"\nnode = "nope"\n', 21,
     "lb[1].node: unknown node 'nope'"),
    ('[[lb]]\nsocket = "run/a.sock"\nnode = "lb2"\n', 19,
     "an absolute path on node 'lb2'"),
    ('[[lb]]\nsocket = "tcp://h:1"\nnode = "lb2"\n', 19, "leave node out"),
    ('[[lb]]\nkind = "bogus"\n', 18, "lb[0].kind: unknown kind 'bogus'"),
    ('[[lb]]\nsocket = "a.sock"\n[[lb]]\nsocket = "a.sock"\nbogus = 1\n', 21,
     "lb[1].bogus: unknown key"),
    ('lb = []\n', None, "lb: an empty list"),
    ('[[lb]]\nsocket = "a.sock"\n[[lb]]\nsocket = "a.sock"\n', 19,
     "lb[1]: the same load balancer as lb[0]"),
    ('[lb]\nsocket = "udp://h:1"\n', 18, "lb.socket: socket 'udp://h:1': a path, or"),
], ids=["tcp without port", "unknown node", "relative path on a node", "tcp with a node",
        "unknown kind", "unknown key", "empty list", "twice", "unknown scheme"])
def test_bad_lbs_are_named(tmp_path: Path, lbs: str, line: int | None, fragment: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(lbs + HEAD if lbs.startswith("lb =") else HEAD + lbs)
    with pytest.raises(ConfigError) as caught:
        dm.load(path)
    text = str(caught.value)
    assert fragment in text, text
    if line is not None:
        assert f"domain.toml:{line}:" in text, text


@pytest.mark.parametrize(("lb", "fragment"), [
    ('[[lb]]\nkind = "nginx"\nnode = "lb2"\nupstream_file = "/etc/up.conf"\n'
     'pid_file = "/run/nginx.pid"\n', "driven through zdt's Lua peer list"),
    ('[[lb]]\nkind = "nginx"\nnode = "lb2"\nupstream_file = "up.conf"\n'
     'admin_socket = "/run/zdt/nginx.sock"\n', "'up.conf': an absolute path on node 'lb2'"),
])
def test_nginx_on_another_host_is_checked(tmp_path: Path, lb: str, fragment: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(HEAD + lb)
    with pytest.raises(ConfigError, match=fragment):
        dm.load(path)

"""`zdt.adapters.lb.haproxy.HAProxy` against the sandbox's real HAProxy."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from sandbox_helpers import get, lb_servers

from zdt import domain as dm
from zdt.adapters.lb.haproxy import HAProxy, admin_state, parse_servers_state
from zdt.errors import AdapterError

pytestmark = pytest.mark.integration


def lb_of(info: dict[str, Any]) -> tuple[HAProxy, dm.Domain]:
    domain = dm.load(info["domain"])
    return HAProxy(domain.lb.socket, domain.lb.backend), domain


async def served_by(url: str, count: int) -> Counter[str]:
    answers = [await asyncio.to_thread(get, url) for _ in range(count)]
    assert {status for status, _, _ in answers} == {200}
    return Counter(body["server"] for _, _, body in answers)


async def wait_for(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_servers_reports_every_lb_server_up(small_sandbox: dict[str, Any]) -> None:
    lb, _ = lb_of(small_sandbox)
    states = await lb.servers()
    assert sorted(states) == sorted(s["name"] for s in lb_servers(small_sandbox))
    assert {(st.admin, st.status, st.queued) for st in states.values()} == {("ready", "UP", 0)}
    assert all(st.in_rotation for st in states.values())


async def test_a_drained_server_gets_no_new_requests(small_sandbox: dict[str, Any]) -> None:
    lb, domain = lb_of(small_sandbox)
    target = domain.server("node1-s2")

    await lb.drain([target])

    state = await lb.state(target)
    assert (state.admin, state.status, state.in_rotation) == ("drain", "DRAIN", False)
    served = await served_by(small_sandbox["lb_url"], 20)
    assert sum(served.values()) == 20
    assert "node1-s2" not in served

    await lb.ready([target])

    state = await lb.state(target)
    assert (state.admin, state.status, state.in_rotation) == ("ready", "UP", True)
    assert "node1-s2" in await served_by(small_sandbox["lb_url"], 8)


async def test_sessions_count_requests_in_flight(small_sandbox: dict[str, Any]) -> None:
    lb, _ = lb_of(small_sandbox)
    slow = threading.Thread(target=get, args=(small_sandbox["lb_url"] + "slow?ms=400",))
    slow.start()

    async def busy() -> bool:
        return sum(st.sessions for st in (await lb.servers()).values()) == 1

    await wait_for(busy, "HAProxy to count the slow request as a session")
    await asyncio.to_thread(slow.join)

    async def idle() -> bool:
        return sum(st.sessions for st in (await lb.servers()).values()) == 0

    await wait_for(idle, "the session to end")


async def test_unknown_names_and_a_missing_socket_are_clear_errors(
        small_sandbox: dict[str, Any]) -> None:
    lb, domain = lb_of(small_sandbox)
    admin = domain.server("admin")  # runs, but is not behind the LB
    with pytest.raises(AdapterError, match="no server 'admin' in backend 'app'") as err:
        await lb.state(admin)
    assert not err.value.retryable
    with pytest.raises(AdapterError, match=r"refused to set app/admin to drain: No such server"):
        await lb.drain([admin])
    with pytest.raises(AdapterError, match="cannot report backend 'nope'"):
        await HAProxy(domain.lb.socket, "nope").servers()
    missing = HAProxy(small_sandbox["dir"] + "/nothing.sock", "app")
    with pytest.raises(AdapterError, match=r"nothing\.sock.*does not exist.*zdt sandbox up"):
        await missing.ready([domain.server("node1-s1")])


@pytest.mark.parametrize(("bits", "admin"), [
    (0, "ready"), (0x01, "maint"), (0x02, "maint"), (0x04, "maint"), (0x20, "maint"),
    (0x08, "drain"), (0x10, "drain"), (0x09, "maint"),
])
def test_admin_state_bits(bits: int, admin: str) -> None:
    assert admin_state(bits) == admin


def test_servers_state_columns_are_found_by_name() -> None:
    text = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"
            "3 app 1 a 127.0.0.1 2 8\n3 app 2 b 127.0.0.1 2 0\n\n")
    assert parse_servers_state(text) == {"a": 8, "b": 0}

"""`zdt.adapters.services.supervisor.SupervisorManager` against the sandbox's real supervisords."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import get

from zdt import domain as dm
from zdt.adapters.services import ProcessState
from zdt.adapters.services.supervisor import SupervisorManager
from zdt.errors import AdapterError

pytestmark = pytest.mark.integration


def sockets_of(info: dict[str, Any]) -> Any:
    sockets = {n["name"]: n["supervisor_socket"] for n in info["nodes"]}

    async def socket_for(node: str) -> str:
        return sockets[node]
    return socket_for


def manager_of(info: dict[str, Any]) -> tuple[SupervisorManager, dm.Domain]:
    domain = dm.load(info["domain"])
    return SupervisorManager(domain, sockets_of(info), domain.services.program), domain


async def until(probe: Any, done: Any, what: str, timeout: float = 5.0) -> Any:
    """Poll `probe()` (10 ms, then up to 100 ms apart) until `done(value)`; return it."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value}"
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.1)


async def health(url: str) -> int | None:
    try:
        return (await asyncio.to_thread(get, url + "health", None, 1.0))[0]
    except OSError:
        return None


async def test_stop_then_start_gives_a_new_healthy_process(
        small_sandbox: dict[str, Any]) -> None:
    services, domain = manager_of(small_sandbox)
    server = domain.server("node2-s1")
    url = f"http://127.0.0.1:{server.port}/"
    before = await services.state(server)
    assert (before.running, before.state) == (True, "RUNNING")
    assert get(url)[2]["pid"] == before.pid

    assert await services.stop(server, timeout=5) is True
    assert await services.state(server) == ProcessState(False, None, "STOPPED")
    assert await health(url) is None
    assert await services.stop(server, timeout=5) is True  # already stopped: fine

    await services.start(server)
    await services.start(server)  # already started: fine
    after = await services.state(server)
    assert after.running and after.pid not in (None, before.pid)
    assert await until(lambda: health(url), lambda s: s == 200, "health") == 200
    assert get(url)[2]["pid"] == after.pid


async def test_a_failing_start_ends_exited_with_its_stderr(
        small_sandbox: dict[str, Any]) -> None:
    services, domain = manager_of(small_sandbox)
    server = domain.server("node1-s1")
    marker = Path(small_sandbox["nodes"][0]["home"], "FAIL_STARTS")
    assert await services.stop(server, timeout=5)
    marker.write_text("1\n")

    await services.start(server)

    state = await until(lambda: services.state(server), lambda s: not s.running, "exit")
    assert (state.state, state.pid, state.exit_status) == ("EXITED", None, 1)
    assert "injected start failure" in state.detail
    assert marker.read_text().strip() == "0"
    await services.start(server)  # the marker is used up: this start works
    url = f"http://127.0.0.1:{server.port}/"
    assert await until(lambda: health(url), lambda s: s == 200, "health") == 200


async def test_stop_kills_a_server_that_outlives_the_timeout(
        small_sandbox: dict[str, Any]) -> None:
    services, domain = manager_of(small_sandbox)
    server = domain.server("node2-s2")
    url = f"http://127.0.0.1:{server.port}/"
    # The sample service finishes requests in flight before it exits on SIGTERM, so a
    # 5 s request keeps it alive well past a 0.3 s timeout.
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"GET /slow?ms=5000 HTTP/1.0\r\n\r\n")
        # Connections are accepted in order: once a later one is answered, the slow
        # request is being served.
        assert await health(url) == 200
        started = time.monotonic()

        assert await services.stop(server, timeout=0.3) is False

        assert time.monotonic() - started < 3
        state = await services.state(server)
        assert (state.running, state.state) == (False, "STOPPED")
        slow.settimeout(5)
        try:
            answer = slow.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # killed mid-request: no answer


async def test_errors_name_the_node_server_and_socket(small_sandbox: dict[str, Any]) -> None:
    domain = dm.load(small_sandbox["domain"])
    server = domain.server("node1-s1")
    wrong_program = SupervisorManager(domain, sockets_of(small_sandbox), "app-{server}")
    with pytest.raises(AdapterError, match="no program named 'app-node1-s1'") as err:
        await wrong_program.state(server)
    assert not err.value.retryable
    async def nowhere_socket(node: str) -> str:
        return f"/tmp/no-such-dir/{node}.sock"
    nowhere = SupervisorManager(domain, nowhere_socket)
    with pytest.raises(AdapterError, match=r"node 'node1'.*'node1-s1'.*/tmp/no-such-dir/"
                                           r"node1\.sock.*zdt sandbox up"):
        await nowhere.start(server)

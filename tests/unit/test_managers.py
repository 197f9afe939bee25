"""The systemd manager against a recording transport (systemd cannot run here); the
command manager and the command load balancer for real, with shell scripts."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from zdt import domain as dm
from zdt.adapters.lb.command import CommandLB
from zdt.adapters.services.command import CommandManager
from zdt.adapters.services.systemd import SystemdManager
from zdt.adapters.transport import Result
from zdt.adapters.transport.local import LocalTransport
from zdt.errors import AdapterError, ConfigError
from zdt.waiting import Timing

HOSTILE_HOME = "/srv/my app/it's $(rm -rf ~); `id`"


def domain_with(tmp_path: Path, services: str, lb: str = 'socket = "lb.sock"',
                home: str = "/srv/app/home") -> dm.Domain:
    path = tmp_path / "domain.toml"
    path.write_text(f"""
[domain]
name = "d"
home = {json.dumps(home)}
state_dir = "state"

[services]
{services}

[lb]
{lb}

[[nodes]]
name = "node1"

[[servers]]
name = "web1"
node = "node1"
port = 9001
""")
    return dm.load(path)


class Recorder:
    """A transport that records argv and answers from a script of outputs."""

    node = "node1"

    def __init__(self, answers: list[str]) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        self.calls.append(argv)
        out = self.answers.pop(0) if argv[-2:-1] != ["--no-block"] and self.answers else ""
        return Result(tuple(argv), 0, out, "")

    async def put(self, local: str, remote: str) -> None:
        raise AssertionError("not used")

    def path(self, remote: str) -> str:
        return remote


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.now += s


SHOW = "ActiveState={}\nSubState={}\nMainPID={}\nExecMainStatus={}\n"


async def test_systemd_commands(tmp_path: Path) -> None:
    d = domain_with(tmp_path, 'kind = "systemd"\nunit = "app@{server}.service"\nsudo = true')
    rec = Recorder([SHOW.format("active", "running", 42, 0)])
    clock = Clock()
    m = SystemdManager(d, {"node1": rec}, Timing(clock=clock, sleep=clock.sleep))
    server = d.server("web1")
    state = await m.state(server)
    assert (state.running, state.pid, state.state) == (True, 42, "RUNNING")
    await m.start(server)
    assert rec.calls[-1] == ["sudo", "-n", "systemctl", "start", "--no-block",
                             "app@web1.service"]
    rec.answers = [SHOW.format("deactivating", "stop-sigterm", 42, 0)] * 50 + \
        [SHOW.format("inactive", "dead", 0, 0)]
    assert await m.stop(server, timeout=0.5) is False          # killed at the timeout
    assert ["sudo", "-n", "systemctl", "kill", "--signal=SIGKILL", "app@web1.service"] in \
        rec.calls
    rec.answers = [SHOW.format("failed", "failed", 0, 3)]
    st = await m.state(server)
    assert (st.state, st.exit_status, st.down) == ("FATAL", 3, True)


SCRIPT = """#!/bin/sh
# $1: action, $2: server, $3: home (one argument, whatever it holds)
dir=$(dirname "$0")
printf '%s\\n' "$3" > "$dir/home-seen"
case "$1" in
  start) echo 4242 > "$dir/$2.pid" ;;
  stop) rm -f "$dir/$2.pid" ;;
  status) [ -f "$dir/$2.pid" ] && cat "$dir/$2.pid" ;;
esac
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "svc"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


async def test_command_manager_with_real_scripts(tmp_path: Path, script: Path) -> None:
    services = "\n".join([
        'kind = "command"',
        f'start = [{json.dumps(str(script))}, "start", "{{server}}", "{{home}}"]',
        f'stop = [{json.dumps(str(script))}, "stop", "{{server}}", "{{home}}"]',
        f'status = [{json.dumps(str(script))}, "status", "{{server}}", "{{home}}"]'])
    d = domain_with(tmp_path, services, home=HOSTILE_HOME)
    m = CommandManager(d, {"node1": LocalTransport("node1")})
    server = d.server("web1")
    assert (await m.state(server)).down
    await m.start(server)
    st = await m.state(server)
    assert (st.running, st.pid) == (True, 4242)
    assert (tmp_path / "home-seen").read_text() == HOSTILE_HOME + "\n"   # one argv item
    assert await m.stop(server, 5.0) is True
    assert not (await m.state(server)).running


LB_SCRIPT = """#!/bin/sh
dir=$(dirname "$0")
case "$1" in
  drain|ready) echo "$1" > "$dir/$2.admin" ;;
  state) admin=$(cat "$dir/$2.admin" 2>/dev/null || echo ready)
         echo "{\\"admin\\": \\"$admin\\", \\"status\\": \\"UP\\", \\"sessions\\": 0}" ;;
  broken) echo "not json" ;;
esac
"""


async def test_command_lb_with_real_scripts(tmp_path: Path) -> None:
    lb_script = tmp_path / "lb"
    lb_script.write_text(LB_SCRIPT)
    lb_script.chmod(0o755)
    q = json.dumps(str(lb_script))
    lb = "\n".join(['kind = "command"', f'drain = [{q}, "drain", "{{server}}"]',
                    f'ready = [{q}, "ready", "{{server}}"]',
                    f'state = [{q}, "state", "{{server}}"]'])
    d = domain_with(tmp_path, 'kind = "supervisor"', lb)
    balancer = CommandLB(d, d.lb, LocalTransport("lb"))
    server = d.server("web1")
    assert (await balancer.state(server)).in_rotation
    await balancer.drain([server])
    assert (await balancer.state(server)).admin == "drain"
    await balancer.ready([server])
    assert (await balancer.state(server)).in_rotation
    other = domain_with(tmp_path, 'kind = "supervisor"', lb.replace(
        '"state", "{server}"', '"broken", "{server}"'))
    broken = CommandLB(other, other.lb, LocalTransport("lb"))
    with pytest.raises(AdapterError, match="not the JSON object"):
        await broken.state(server)


@pytest.mark.parametrize(("services", "lb", "words"), [
    ('kind = "command"\nstart = ["x"]', 'socket = "s"', "needs start, stop and status"),
    ('kind = "command"\nstart = ["x {user}"]\nstop = ["y"]\nstatus = ["z"]', 'socket = "s"',
     "only {home}, {node}, {server} may be filled in"),
    ('kind = "upstart"', 'socket = "s"', "services.kind"),
    ('kind = "systemd"', 'kind = "haproxy"', "needs socket"),
    ('kind = "systemd"', 'kind = "command"\ndrain = ["d"]', "needs drain, ready and state"),
])
def test_bad_manager_and_lb_config(tmp_path: Path, services: str, lb: str,
                                   words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("{", r"\{").replace("}", r"\}")):
        domain_with(tmp_path, services, lb)


STUBBORN = """#!/bin/sh
# a service whose stop command "succeeds" and leaves it running; status by its pid
dir=$(dirname "$0")
case "$1" in
  start) sleep 60 > /dev/null 2>&1 & echo $! > "$dir/$2.pid" ;;
  stop) exit 0 ;;
  status) pid=$(cat "$dir/$2.pid" 2>/dev/null) || exit 3
          kill -0 "$pid" 2>/dev/null || exit 3
          state=$(cut -d' ' -f3 "/proc/$pid/stat"); [ "$state" = Z ] && exit 3
          echo "$pid" ;;
  broken) exit "$3" ;;
esac
"""


def command_domain(tmp_path: Path, body: str, status: list[str] | None = None) -> Any:
    path = tmp_path / "svc"
    path.write_text(body)
    path.chmod(0o755)
    q = json.dumps(str(path))
    status_argv = ", ".join(json.dumps(a) for a in (status or [str(path), "status",
                                                              "{server}"]))
    return domain_with(tmp_path, "\n".join([
        'kind = "command"', f'start = [{q}, "start", "{{server}}"]',
        f'stop = [{q}, "stop", "{{server}}"]', f'status = [{status_argv}]']))


async def test_a_stop_that_leaves_the_server_running_ends_in_a_kill(tmp_path: Path) -> None:
    """Before: the stop command's exit 0 passed as done, the server still running."""
    d = command_domain(tmp_path, STUBBORN)
    m = CommandManager(d, {"node1": LocalTransport("node1")})
    server = d.server("web1")
    await m.start(server)
    pid = (await m.state(server)).pid
    assert pid is not None
    try:
        assert await m.stop(server, 0.5) is False          # stopped, but by the kill
        assert (await m.state(server)).down
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


@pytest.mark.parametrize(("code", "words"), [
    (127, "exited 127"), (126, "exited 126"), (4, "exited 4"), (124, "exited 124")])
async def test_a_status_that_cannot_answer_is_an_error(tmp_path: Path, code: int,
                                                       words: str) -> None:
    """Before: exit 127 (no such script), a refused sudo... read as "stopped"."""
    script = tmp_path / "svc"
    d = command_domain(tmp_path, STUBBORN, [str(script), "broken", "{server}", str(code)])
    m = CommandManager(d, {"node1": LocalTransport("node1")})
    with pytest.raises(AdapterError, match=rf"status command of web1 .*{words}"):
        await m.state(d.server("web1"))
    with pytest.raises(AdapterError):
        await m.stop(d.server("web1"), 1.0)       # never "stopped" on such an answer


class SudoAnswers:
    """A node whose sudoers allow exactly the commands in `allowed` (`sudo -n -l CMD`)."""

    node = "node1"

    def __init__(self, allowed: set[tuple[str, ...]]) -> None:
        self.allowed, self.asked = allowed, []  # type: ignore[var-annotated]

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        assert argv[:4] == ["sudo", "-n", "-l", "--"], argv
        self.asked.append(tuple(argv[4:]))
        ok = tuple(argv[4:]) in self.allowed
        return Result(tuple(argv), 0 if ok else 1, "", "" if ok else "not allowed")


@pytest.mark.parametrize("allow_show", [True, False])
async def test_preview_asks_sudo_for_the_real_commands(tmp_path: Path,
                                                       allow_show: bool) -> None:
    """Before: `sudo -n true`, which sudoers allowing only the service commands refuse."""
    from zdt import preview
    from zdt.steps import Context

    d = domain_with(tmp_path, 'kind = "systemd"\nsudo = true')
    m = SystemdManager(d, {})
    every = {tuple(a) for a in m.privileged(d.server("web1"))}
    show = ("systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
            "-p", "ExecMainStatus", "web1.service")
    t = SudoAnswers(every if allow_show else every - {show})
    checks = await preview._sudo(Context(d, m, None), t, "node1")  # type: ignore[arg-type]
    assert set(t.asked) == every and len(every) == 4
    assert [c.ok for c in checks] == [allow_show]
    if not allow_show:
        assert "sudo -n refuses systemctl show -p ActiveState" in checks[0].detail


@pytest.mark.parametrize(("stdout", "pid"), [
    ("4242\n", 4242), ("MAINPID=4242\n", 4242), ("  4242  \nmore text 7\n", 4242),
    ("web1 running on port 8001 (pid 4242)\n", None), ("2024-12-01 up\n", None),
    ("1 instance\n", None), ("1\n", None), ("0\n", None), ("", None),
    ("99999999999\n", None)])
def test_only_a_pid_alone_is_taken_for_one(stdout: str, pid: int | None) -> None:
    """A port, a date or a count in a status line must never be killed as a pid."""
    from zdt.adapters.services.command import _pid
    assert _pid(stdout) == pid


CHATTY = STUBBORN.replace('          echo "$pid" ;;',
                          '          echo "running on port 8001, pid $pid" ;;')


async def test_a_status_without_a_pid_is_not_killed_by_guess(tmp_path: Path) -> None:
    d = command_domain(tmp_path, CHATTY)
    m = CommandManager(d, {"node1": LocalTransport("node1")})
    server = d.server("web1")
    await m.start(server)
    pid = int((tmp_path / "web1.pid").read_text())
    try:
        with pytest.raises(AdapterError, match="prints no pid to kill"):
            await m.stop(server, 0.3)
        assert (await m.state(server)).running          # nothing was killed by a guess
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)

"""The operator's side of a live supervisor: find it by name, talk to it over its control
socket, start one (in the background with --detach)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zdt import atomic
from zdt.errors import ConfigError, LockedError, NotFoundError, PreconditionError, ZdtError
from zdt.live import servers
from zdt.live.protocol import encode
from zdt.live.supervisor import LiveConfig, Supervisor
from zdt.lock import make_private_dir

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SOCKET_LIMIT = 100      # sun_path is 108 bytes; leave room for the notify sockets' names


def state_dir(name: str, given: str | None = None) -> Path:
    """STATE_DIR/NAME if given, else a per-user default, so a name alone finds it."""
    if not NAME.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    if given:
        return Path(given).resolve()
    return default_root() / name


def default_root() -> Path:
    """Where workloads started without --state-dir keep their state: one dir each."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zdt" / "live"


def check_config(config: LiveConfig) -> None:
    if not config.command:
        raise ConfigError("give the workload's command after `--`")
    if not config.listen:
        raise ConfigError("give at least one --listen HOST:PORT")
    for address in config.listen:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--listen {address!r}: not HOST:PORT")
    if not Path(config.home).is_dir():
        raise ConfigError(f"--home {config.home}: not a directory")
    servers.check(config.command)
    if len(str(Path(config.state_dir) / "notify-0000000-0000000000000000000.sock")) > \
            SOCKET_LIMIT:
        raise ConfigError(f"--state-dir {config.state_dir}: too long for unix sockets; "
                          "choose a shorter one")


def run(config: LiveConfig) -> None:
    """Run the supervisor in this process until `zdt live stop` or a signal."""
    check_config(config)
    directory = Path(config.state_dir)
    make_private_dir(directory)      # this user's, 0700: it holds the control socket
    if (directory / "control.sock").exists() and _answers(directory):
        raise LockedError(f"{config.name} already runs (control socket "
                          f"{directory / 'control.sock'}); `zdt live stop {config.name}`")
    atomic.write_text(directory / "config.json", json.dumps(config.__dict__), 0o600)
    asyncio.run(Supervisor(config).run())


def saved_config(directory: Path) -> LiveConfig:
    """The config the workload was started with (STATE_DIR/config.json)."""
    try:
        data = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"{directory}: no workload was run here ({exc})") from None
    return LiveConfig(**{**data, "listen": tuple(data["listen"]),
                         "command": tuple(data["command"])})


def run_adopted(directory: Path) -> None:
    """`zdt live run --adopt`: a supervisor for the workload a dead one left serving."""
    from zdt.live import adopt

    config = saved_config(directory)
    if (directory / "control.sock").exists() and _answers(directory):
        raise LockedError(f"{config.name} has a supervisor already (control socket "
                          f"{directory / 'control.sock'}): nothing to adopt")
    asyncio.run(Supervisor(config, adopted=adopt.recorded_pid(directory)).run())


def run_argv(config: LiveConfig) -> list[str]:
    """`zdt live run` arguments (without --detach) that run this very config."""
    argv = ["--name", config.name, "--home", config.home, "--state-dir", config.state_dir,
            "--ready-timeout", str(config.ready_timeout),
            "--max-state-bytes", str(config.max_state_bytes),
            "--stop-signal", config.stop_signal]
    argv += [x for a in config.listen for x in ("--listen", a)]
    argv += ["--health", config.health] if config.health else []
    return [*argv, "--", *config.command]


def detach(argv: list[str], directory: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Start `zdt live run` (argv without --detach) in its own session and wait for it."""
    make_private_dir(directory)
    with open(directory / "supervisor.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "zdt.cli", "live", "run", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (directory / "supervisor.log").read_text(errors="replace")[-600:]
            raise ZdtError(f"the supervisor exited with {proc.returncode}: {tail.strip()}")
        if _answers(directory):
            status = ask(directory, {"op": "status"})
            if status.get("ready"):
                return status
        time.sleep(0.02)
    raise ZdtError(f"the supervisor (pid {proc.pid}) did not get ready in {timeout:g} s; "
                   f"see {directory / 'supervisor.log'}")


def _answers(directory: Path) -> bool:
    try:
        ask(directory, {"op": "status"}, timeout=2.0)
        return True
    except ZdtError:
        return False


def ask(directory: Path, request: dict[str, Any], timeout: float | None = None
        ) -> dict[str, Any]:
    """Send one request to the supervisor; its result, or its error as a ZdtError. An
    update has no timeout here: the supervisor bounds each of its steps itself."""
    try:
        answer = asyncio.run(_exchange(directory / "control.sock", request, timeout))
    except TimeoutError:
        raise ZdtError(f"{directory / 'control.sock'}: no answer within {timeout:g} s; is "
                       "the supervisor stuck? see supervisor.log beside it") from None
    if "error" in answer:
        error = ZdtError(answer["error"])
        error.exit_code = int(answer.get("exit", 1))
        raise error
    result: dict[str, Any] = answer["result"]
    return result


async def _exchange(path: Path, request: dict[str, Any], timeout: float | None
                    ) -> dict[str, Any]:
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotFoundError(f"no live workload answers at {path}: start it with "
                            "`zdt live run --name NAME …`") from exc
    try:
        writer.write(encode(request))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ZdtError(f"{path}: the supervisor closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


def require_running(directory: Path) -> dict[str, Any]:
    status = ask(directory, {"op": "status"}, timeout=5.0)
    if not status.get("ready"):
        raise PreconditionError(f"{status.get('name')}: the workload is not ready")
    return status

"""What known servers need to take the sockets `zdt live` holds, and how each is known
ready. A socket-activation-aware server (gunicorn, anything on sd_listen_fds) takes
LISTEN_FDS as it is; others take an inherited descriptor only when told which:

    gunicorn zdt.lab.webapp:wsgi                 reads LISTEN_FDS; says READY=1 itself
    uvicorn --fd 3 zdt.lab.webapp:asgi           --fd 3; ready by --health URL
    hypercorn --bind fd://3 zdt.lab.webapp:asgi  --bind fd://3; ready by --health URL

`zdt live run` refuses (exit 2) such a server without its flag: it would bind a port of
its own next to zdt's socket, and no update could hand that one over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from zdt.errors import ConfigError

# program → (what in its argv says it takes an inherited socket, the advice)
NEEDS = {
    "uvicorn": (("--fd",), "uvicorn takes the socket zdt holds with `--fd 3` (one --listen)"),
    "hypercorn": (("fd://",), "hypercorn takes the socket zdt holds with `--bind fd://3`"),
}


def _says(arg: str, mark: str) -> bool:
    """`--fd` is an option of its own (`--fd 3`, `--fd=3`); `fd://` is within a value."""
    return arg == mark or arg.startswith(mark + "=") if mark.startswith("--") else mark in arg


def server_of(command: Sequence[str]) -> str | None:
    """The known server a command runs: `uvicorn …`, `/usr/bin/uvicorn …`, or
    `python -m uvicorn …`."""
    command = list(command)
    while command and (os.path.basename(command[0]) == "env" or "=" in command[0]):
        command = command[1:]          # `env VAR=… uvicorn …`
    if not command:
        return None
    first = os.path.basename(command[0])
    if first in NEEDS:
        return first
    if first.startswith("python") and "-m" in command[:-1]:
        module = command[list(command).index("-m") + 1]
        return module if module in NEEDS else None
    return None


def check(command: Sequence[str]) -> None:
    """ConfigError when a known server is not told to take zdt's socket."""
    server = server_of(command)
    if server is None:
        return
    marks, advice = NEEDS[server]
    if not any(_says(arg, m) for arg in command for m in marks):
        raise ConfigError(f"{server} would bind a socket of its own beside the one zdt "
                          f"holds, and no update could hand it over: {advice}")

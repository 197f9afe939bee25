"""`zdt console`: the web console for one domain, until Ctrl-C."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Annotated

import typer

from zdt.app import App, Connect
from zdt.cli.common import AcceptNew, DomainOpt, Parallel, err, handled, out
from zdt.errors import ConfigError, PreconditionError
from zdt.terminal import styled

DEFAULT_BIND = "127.0.0.1:8700"


@handled
def console(
    domain: DomainOpt = Path("domain.toml"),
    bind: Annotated[str, typer.Option(help="HOST:PORT to listen on; an address other than "
                                           "loopback reaches the network (and warns).")]
    = DEFAULT_BIND,
    token_file: Annotated[Path | None, typer.Option(
        help="The token's file (0600) [default: console.token, or console-ro.token with "
             "--read-only, in the domain's state dir, made the first time].")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Show; start and change "
                                            "nothing.")] = False,
    accept_new_host_keys: AcceptNew = False,
    parallel: Parallel = 8,
) -> None:
    """The web console: the domain's live state, previews, workflows started, stopped,
    resumed and reverted, live progress. Prints a one-time login link."""
    serve(domain, bind, token_file, read_only, Connect(accept_new_host_keys, parallel))


def serve(domain: Path, bind: str = DEFAULT_BIND, token_file: Path | None = None,
          read_only: bool = False, connect: Connect | None = None) -> None:
    """The console on `bind` until Ctrl-C, its login link printed first."""
    from zdt.console import auth, server  # only when it runs: the CLI starts fast

    connect = connect or Connect()
    state_dir = App(domain, connect=connect).domain().state_dir
    token = auth.token(state_dir, token_file, read_only=read_only)
    listening = _listen(bind)
    host, port = listening.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    if not server.loopback(host):
        err.print(styled(("warning:", "yellow"), f" the console listens on {host}, beyond "
                         "this machine, over plain HTTP: anyone who can reach it and holds "
                         "the token drives the domain, and the traffic is not encrypted"),
                  soft_wrap=True)
    sessions = auth.Sessions(token, port)
    out.print(f"zdt console of {domain} on {url}" + (" (read-only)" if read_only else ""),
              soft_wrap=True)
    out.print(f"  log in (once, within {auth.LINK_LIFETIME / 60:.0f} min): "
              f"{url}login?code={sessions.login_code()}", soft_wrap=True)
    asgi = server.build(domain, sessions, read_only=read_only, connect=connect)
    asyncio.run(server.serve(asgi, listening))


def _listen(bind: str) -> socket.socket:
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--bind {bind!r}: not HOST:PORT")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, int(port)))
    except OSError as exc:
        s.close()
        raise PreconditionError(f"--bind {bind}: {exc.strerror}") from exc
    s.listen(128)
    return s

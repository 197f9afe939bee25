"""`zdt live … -d domain.toml --node N`: the same commands, run on a domain's node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from zdt.app import App, Connect
from zdt.cli.common import err, out, print_json
from zdt.errors import ConfigError, ZdtError
from zdt.terminal import clean, styled

RemoteDomain = Annotated[Path | None, typer.Option(
    "--domain", "-d", help="Run it on a node of this domain, over the node's transport "
    "(with --node); the node runs `zdt live` itself ([live] zdt in the domain).")]
NodeOpt = Annotated[str | None, typer.Option("--node", help="The domain's node (with -d).")]


def on_node(domain: Path, node: str | None, args: list[str], files: dict[str, Path],
            json_out: bool, show: Callable[[Any], None], *, as_json: bool = True) -> None:
    """Run `zdt live ARGS --json` on the node; show what it answered, exit as it did (a
    report that says it failed — a preview not ok, a host update reverted — is shown)."""
    if node is None:
        raise ConfigError("-d: name the node to run it on with --node")
    answer = asyncio.run(App(domain, connect=Connect()).live_on_node(
        node, [*args, "--json"] if as_json else args, files))
    try:
        data = json.loads(answer.stdout) if as_json and answer.stdout.strip() else None
    except ValueError:
        if answer.returncode == 0:
            raise ConfigError(f"{node}: its zdt answered {answer.stdout.strip()[:120]!r}, "
                              "not JSON: is [live] zdt the node's zdt command?") from None
        data = None
    if answer.stderr.strip():
        err.print(styled((f"zdt: {node}:", "bold red"), " ",
                         clean(answer.stderr.strip().removeprefix("zdt: "))), soft_wrap=True)
    if data is None:
        if answer.returncode:
            raise typer.Exit(answer.returncode)
        return
    if json_out:
        print_json(data)
    else:
        show(data)
    if answer.returncode:
        raise typer.Exit(answer.returncode)


def every_node(domain: Path, json_out: bool, show: Callable[[Any], None]) -> None:
    """`zdt live status -d domain.toml`: every node's workloads."""
    app = App(domain, connect=Connect())
    found: dict[str, Any] = {}
    for node in (n.name for n in app.domain().nodes):
        try:
            answer = asyncio.run(app.live_on_node(node, ["status", "--json"]))
        except ZdtError as exc:             # unreachable: said, and the others asked
            found[node] = {"error": str(exc)}
            continue
        try:
            found[node] = json.loads(answer.stdout) if answer.returncode == 0 else {
                "error": answer.stderr.strip()[-300:] or f"exit status {answer.returncode}"}
        except ValueError:
            found[node] = {"error": f"not JSON: {answer.stdout.strip()[:120]!r}"}
    if json_out:
        print_json(found)
        return
    for node, rows in found.items():
        if isinstance(rows, dict):
            out.print(f"{node}: {clean(rows['error'], lines=False)}", style="red")
            continue
        out.print(f"{node}:")
        show(rows)
        if not rows:
            out.print("  no live workload")


def options(**given: Any) -> list[str]:
    """`--name value` for each option given (None and False left out)."""
    argv: list[str] = []
    for key, value in given.items():
        if value is None or value is False:
            continue
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return argv


def local_only(node: str | None) -> None:
    """--node without -d: a node of which domain? Refused rather than run here."""
    if node is not None:
        raise ConfigError(f"--node {node}: give the domain it belongs to with -d")

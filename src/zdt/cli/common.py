"""What every `zdt` command shares: consoles, options, error → exit code, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.table import Table

from zdt import witness
from zdt.errors import ZdtError
from zdt.terminal import SafeConsole, styled

out = SafeConsole()
err = SafeConsole(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

EXIT_FOR_STATE = {"succeeded": 0, "reverted": 1, "failed": 1, "stopped": 5}

DomainOpt = Annotated[Path, typer.Option("--domain", "-d", envvar="ZDT_DOMAIN",
                                         help="The domain file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")]
AcceptNew = Annotated[bool, typer.Option(
    "--accept-new-host-keys", help="Add the host key of an ssh:// node seen for the first "
    "time to known_hosts (OpenSSH's accept-new); a changed key is always refused.")]
Parallel = Annotated[int, typer.Option(min=1, max=256, help="Nodes worked on at once where "
                                       "the plan allows (checks, staging, the node visits of "
                                       "a batch).")]


def group(text: str, **options: Any) -> typer.Typer:
    """A command group. Help is printed as written: a `[default: …]` in it is text, not
    Rich markup."""
    return typer.Typer(help=text, no_args_is_help=True, rich_markup_mode=None, **options)


def handled(fn: F) -> F:
    """Turn a ZdtError into its message on stderr and its exit code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZdtError as exc:
            err.print(styled(("zdt:", "bold red"), " ", str(exc)), soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    return cast(F, wrapper)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def finish(summary: dict[str, Any], json_out: bool, *, revert: bool = False) -> None:
    """Print a workflow run's report and exit with the code its end state means."""
    if json_out:
        print_json(summary)
    else:
        print_summary(summary)
    wanted = "reverted" if revert else "succeeded"
    state = summary["state"]
    raise typer.Exit(0 if state == wanted else EXIT_FOR_STATE.get(state, 1))


def print_summary(s: dict[str, Any], *, with_witness: bool = True) -> None:
    colour = "green" if s["state"] == "succeeded" else "red"
    out.print(styled("workflow ", (s["id"], "bold"), f" ({s['kind']}): ", (s["state"], colour),
                     f" in {s['duration'] or 0:.2f} s"))
    change = (s.get("request") or {}).get("change")
    if change:
        out.print(f"  home → {change['version']} (sha256 {change['sha256'][:16]}…)"
                  + (", a rollback to an older release" if change.get("rollback") else ""))
    for note in s.get("notes", ()):
        out.print(styled("  ", note["message"]), soft_wrap=True)
    for warning in s.get("warnings", ()):
        out.print(f"  warning: {warning}", style="yellow")
    e = s.get("estimate")
    if e and s["duration"] is not None:
        out.print(f"  estimated {e['total_seconds']:.1f} s (90th percentile "
                  f"{e['total_p90_seconds']:.1f} s; {e['basis']}), took {s['duration']:.1f} s")
    if s["error"]:
        out.print(f"  {s['error']}", style="red")
    w = s.get("witness")
    if s["nodes"]:
        print_visits(s["nodes"], w)
    print_analysis(s.get("analysis", ()))
    if w is not None and with_witness:
        print_witness(w)


def print_visits(nodes: list[dict[str, Any]], w: dict[str, Any] | None) -> None:
    """Per node visit: times, and what the LB saw while the node was out."""
    seen = {v["group"]: v for v in (w or {}).get("visits", [])}
    table = Table("batch", "node", "servers", "wall s", "out s", "zdt ms", "in rotation",
                  "LB requests",
                  "LB errors", caption="out: out of rotation; in rotation: the backend's "
                  "servers left in rotation meanwhile; LB: what the load balancer counted "
                  "meanwhile", caption_justify="left")
    for v in nodes:
        oor = "-" if v["out_of_rotation"] is None else f"{v['out_of_rotation']:.3f}"
        lb = seen.get(v["visit"], {})
        share = (f"{lb['in_rotation']}/{lb['backend_servers']}" if "in_rotation" in lb
                 else "-")
        errors = lb.get("errors")
        table.add_row(str(v.get("batch", "")), v["node"], ", ".join(v["servers"]),
                      f"{v['wall']:.3f}",
                      oor, f"{v['overhead'] * 1000:.1f}", share,
                      str(lb["requests"]) if "requests" in lb else "-",
                      "-" if errors is None else
                      (styled((str(errors), "red")) if errors else "0"))
    out.print(table)


def print_analysis(verdicts: Iterable[dict[str, Any]]) -> None:
    """Each metric gate's verdict, with its numbers."""
    for a in verdicts:
        colour = {"passed": "green", "failed": "red"}.get(a.get("verdict", ""), "yellow")
        out.print(styled("  ", (a["sentence"], colour)), soft_wrap=True)


def print_witness(w: dict[str, Any]) -> None:
    bad = "unavailable" not in w and (w["errors"] or w["retries"] or w["redispatches"])
    colour = "red" if bad else ("yellow" if "unavailable" in w else "green")
    out.print(witness.sentence(w), style=colour)



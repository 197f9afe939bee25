"""What `zdt preview` prints: checks, the plan per node, estimates (or one JSON object)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from zdt.cli.common import err, out, print_json
from zdt.terminal import styled


def show_preview(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(report)
    else:
        _print_preview(report)
    if not report["ok"]:
        raise typer.Exit(3)


def _print_preview(r: dict[str, Any]) -> None:
    out.print(styled(("preview", "bold"), f" of a {r['kind']} rollout of "
                     f"{', '.join(r['targets'])} ({r['domain']}): nothing was changed"))
    if r["archive"]:
        a = r["archive"]
        out.print(f"  archive {a['path']}: version {a['version']}, sha256 {a['sha256'][:16]}…, "
                  f"{a['size'] / 2**20:.1f} MiB ({a['unpacked'] / 2**20:.1f} MiB unpacked)"
                  + (", a rollback" if a["rollback"] else ""))
    for note in r.get("notes", ()):
        out.print(styled("  ", note["message"]), soft_wrap=True)
    table = Table("node", "server", "check", "", "detail", title="preconditions",
                  title_justify="left")
    for c in r["preconditions"]:
        verdict = (("no", "red") if not c["ok"] else ("warn", "yellow") if c.get("warn")
                   else ("ok", "green"))
        table.add_row(c["node"] or "", c["server"] or "", c["name"], styled(verdict),
                      c["detail"])
    out.print(table)
    for node, lines in (r.get("runtime_changes") or {}).items():
        for c in lines:
            out.print(f"  {node}: {c['path']}:{c['line']}: {c['before'].strip()}  →  "
                      f"{c['after'].strip()}")
    plan = Table("batch", "node", "servers", "steps", title="plan", title_justify="left")
    for visit in r["plan"]:
        plan.add_row(str(visit["batch"]), visit["node"], ", ".join(visit["servers"]),
                     " → ".join(visit["steps"]))
    out.print(plan)
    c = r["capacity"]
    out.print(f"batches: {c['batches']} (--batch {c['batch']}, at most {c['largest_batch']} "
              "node visit(s) side by side)")
    for cluster in c["clusters"]:
        out.print(f"  capacity: {cluster['line']}")
    if r.get("analysis"):
        out.print(f"analysis: {r['analysis']['line']}")
    e = r["estimates"]
    out.print(f"estimate: {e['total_seconds']:.1f} s in all"
              + (f" (90th percentile {e['total_p90_seconds']:.1f} s)" if e.get("learned")
                 else "") + "; per node "
              + ", ".join(f"{v['node']} {v['seconds']:.1f} s" for v in e["per_node"])
              + f" ({e['basis']})")
    if "disk_per_node_bytes" in e:
        out.print(f"disk per node: {e['disk_per_node_bytes'] / 2**20:.1f} MiB")
    if not r["ok"]:
        err.print(styled(("preconditions not met", "red"),
                         ": the rollout would be refused (exit 3)"))



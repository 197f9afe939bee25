"""`zdt stale -d domain.toml`: the processes of the domain's servers, on every node, that
still run code from files deleted or replaced since they loaded them.

Each node is asked over its transport with no agent: the command is `python3 -c BOOT`,
with zdt's two stdlib-only modules (stale.py, procfs.py) as an argument and the pids of the
node's servers, as their service manager reports them, after it. On the node, the scan
covers each server's process and its descendants; each stale process comes back with the
pid it descends from, so it is mapped to the server that owns it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zdt import stale
from zdt.adapters import Adapters
from zdt.adapters.transport import Transport
from zdt.domain import Domain, Server
from zdt.errors import PreconditionError, ZdtError
from zdt.steps import each

PYTHON = "python3"
MODULES = ("procfs", "stale")      # stale imports procfs; both import the stdlib only
# Runs the modules given as JSON in argv[1] as the package `zdt`, then stale.main(PIDs).
BOOT = """\
import json, sys, types
if sys.version_info < (3, 10):
    print(json.dumps({"error": "python3 is %d.%d here; the scan needs 3.10 or later"
                      % sys.version_info[:2]}))
    sys.exit(1)
package = types.ModuleType("zdt"); package.__path__ = []; sys.modules["zdt"] = package
for name, text in json.loads(sys.argv[1]):
    module = types.ModuleType("zdt." + name)
    sys.modules["zdt." + name] = module; setattr(package, name, module)
    exec(compile(text, "zdt/" + name + ".py", "exec"), module.__dict__)
sys.exit(sys.modules["zdt.stale"].main(sys.argv[2:]))
"""


def _sources() -> str:
    here = Path(__file__).parent
    return json.dumps([(m, (here / f"{m}.py").read_text()) for m in MODULES])


async def scan(domain: Domain, adapters: Adapters,
               servers: list[Server] | None = None) -> dict[str, Any]:
    """Every server's stale processes (default: every server of the domain), node by
    node side by side. A node or server that cannot be read says why (`error`)."""
    chosen = list(domain.servers if servers is None else servers)
    states = await each(_pid(adapters, s) for s in chosen)
    rows = [{"server": s.name, "node": s.node, **st, "stale": []}
            for s, st in zip(chosen, states, strict=True)]
    nodes = list(dict.fromkeys(s.node for s in chosen))
    sources = _sources()
    found = await each(_node(adapters.transports[n], [r for r in rows if r["node"] == n],
                             sources) for n in nodes)
    return {"nodes": found, "servers": rows,
            "stale": [r["server"] for r in rows if r["stale"]]}


def blind(found: dict[str, Any]) -> list[str]:
    """What the scan could not see: a node not scanned, a server whose manager did not
    answer, a process it could not read or that was gone before the scan."""
    out = [n["error"] for n in found["nodes"] if "error" in n]
    out += [f"{r['server']}: {r['error']}" for r in found["servers"] if "error" in r]
    for n in found["nodes"]:
        if n["unreadable"]:
            out.append(f"{n['node']}: cannot read process(es) "
                       f"{', '.join(map(str, n['unreadable'][:10]))}")
        if n["missing"]:
            out.append(f"{n['node']}: process(es) {', '.join(map(str, n['missing'][:10]))} "
                       "ended before the scan")
    return out


async def _pid(adapters: Adapters, server: Server) -> dict[str, Any]:
    try:
        st = await adapters.services.state(server)
    except ZdtError as exc:
        return {"pid": None, "error": str(exc)}
    return {"pid": st.pid if st.running else None}


async def _node(t: Transport, rows: list[dict[str, Any]], sources: str) -> dict[str, Any]:
    """Scan the node's servers' processes; fill each row's `stale`."""
    pids = {r["pid"]: r for r in rows if r["pid"]}
    out: dict[str, Any] = {"node": t.node, "unreadable": [], "missing": []}
    if not pids:
        return out
    try:
        r = await t.run([PYTHON, "-c", BOOT, sources, *map(str, pids)], check=False,
                        timeout=120)
        data = json.loads(r.stdout) if r.stdout.strip() else {}
    except (ZdtError, ValueError) as exc:
        out["error"] = f"cannot scan {t.node}'s processes: {exc}"
        return out
    if r.returncode != 0 or "processes" not in data:
        why = data.get("error") or r.stderr.strip()[-300:] or f"exit status {r.returncode}"
        out["error"] = f"cannot scan {t.node}'s processes ({PYTHON} on the node): {why}"
        return out
    for p in data["processes"]:
        row = pids.get(p.get("root"))
        if row is not None:
            row["stale"].append({"pid": p["pid"], "command": p["command"],
                                 "files": p["files"]})
    out["unreadable"], out["missing"] = data["unreadable"], data["missing"]
    return out


def this_host() -> dict[str, Any]:
    """`zdt stale` without a domain: every process of this machine."""
    try:
        return stale.as_dict(stale.scan())
    except stale.ScanError as exc:
        raise PreconditionError(str(exc)) from exc

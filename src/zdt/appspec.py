"""apps.json: the applications an apps rollout moves into place, checked against the
domain before anything is touched (exit 2 naming the file and the entry).

    {"applications": [{"name": "shop", "patched_location": "/srv/patches/shop-2",
                       "backup_location": "/srv/app/apps/shop.bak",
                       "mode": "stage" | "nostage" | "external_stage", "partition": "p1"?}]}

`stage`: the patched directory is on this machine (the admin side) and zdt copies it to
each node first. `nostage` / `external_stage`: it is already on every node at
`patched_location` (a precondition preview checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zdt import archive as archives
from zdt import nodepath
from zdt.domain import Domain
from zdt.errors import ConfigError

MODES = ("stage", "nostage", "external_stage")
KEYS = {"name", "patched_location", "backup_location", "mode", "partition"}


@dataclass(frozen=True)
class AppChange:
    name: str
    location: str             # where it is deployed (node path)
    patched_location: str     # stage: a local dir; else a node path
    backup_location: str      # node path
    mode: str
    nodes: tuple[str, ...]    # the nodes holding it


def load(path: Path, domain: Domain) -> tuple[AppChange, ...]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the apps spec: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    problems: list[str] = []
    changes = _entries(raw, domain, problems)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s) in the apps spec:\n"
                          + "\n".join(f"  {path}: {p}" for p in problems)
                          + "\nFix the file and run the command again; nothing was changed.")
    return tuple(changes)


def _entries(raw: Any, domain: Domain, problems: list[str]) -> list[AppChange]:
    if not isinstance(raw, dict) or set(raw) != {"applications"} or \
            not isinstance(raw["applications"], list) or not raw["applications"]:
        problems.append('(top level): must be {"applications": [ ... ]} with one entry or more')
        return []
    deployed = {a.name: a for a in domain.applications}
    seen: set[str] = set()
    backups = [e.get("backup_location") for e in raw["applications"] if isinstance(e, dict)]
    for i, b in enumerate(backups):
        if b is not None and backups.index(b) != i:
            problems.append(f"applications[{i}].backup_location: {b} is also "
                            f"applications[{backups.index(b)}]'s")
    out = []
    for i, entry in enumerate(raw["applications"]):
        where = f"applications[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object")
            continue
        for key in sorted(set(entry) - KEYS):
            problems.append(f"{where}.{key}: unknown key")
        for key in sorted({"name", "patched_location", "backup_location", "mode"} - set(entry)):
            problems.append(f"{where}.{key}: required field is missing")
        if not all(isinstance(entry.get(k, ""), str) for k in KEYS - {"partition"}):
            problems.append(f"{where}: name, locations and mode must be strings")
            continue
        change = _entry(entry, where, deployed, seen, domain, problems)
        if change is not None:
            out.append(change)
    return out


def _entry(entry: dict[str, Any], where: str, deployed: dict[str, Any], seen: set[str],
           domain: Domain, problems: list[str]) -> AppChange | None:
    name, mode = entry.get("name", ""), entry.get("mode", "")
    if name in seen:
        problems.append(f"{where}.name: {name!r} is listed twice")
    seen.add(name)
    app = deployed.get(name)
    if app is None:
        known = ", ".join(sorted(deployed)) or "none"
        problems.append(f"{where}.name: no application {name!r} in {domain.source} "
                        f"(deployed: {known})")
        return None
    if mode not in MODES:
        problems.append(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    elif mode != app.mode:
        problems.append(f"{where}.mode: {name!r} was deployed {app.mode}, not {mode}")
    patched, backup = entry.get("patched_location", ""), entry.get("backup_location", "")
    paths = {}
    for key, value in (("patched_location", patched), ("backup_location", backup)):
        try:
            paths[key] = nodepath.normalise(value)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    if len(paths) < 2:
        return None
    patched, backup = paths["patched_location"], paths["backup_location"]
    if mode == "stage" and not Path(patched).is_dir():
        problems.append(f"{where}.patched_location: {patched} is not a directory here "
                        "(a staged application is copied from this machine)")
    elif mode == "stage":
        try:
            archives.check_tree(Path(patched))
        except ConfigError as exc:
            problems.append(f"{where}.patched_location: {exc}")
    for key, value in (("backup_location", backup), ("patched_location", patched)):
        if nodepath.overlap(value, app.location) and not (key == "patched_location" and
                                                  mode == "stage"):
            problems.append(f"{where}.{key}: {value} and the deployed location "
                            f"{app.location} lie inside one another")
    if nodepath.overlap(backup, domain.domain.home):
        problems.append(f"{where}.backup_location: {backup} lies in the home "
                        f"{domain.domain.home}, which a home rollout replaces")
    partition = entry.get("partition")
    partitions = {s.partition for s in domain.servers if s.partition}
    if partition is not None and (not isinstance(partition, str)
                                  or partition not in partitions):
        problems.append(f"{where}.partition: {partition!r} is not a partition of the domain "
                        f"(known: {', '.join(sorted(partitions)) or 'none'})")
    servers = app.servers or tuple(s.name for s in domain.servers)
    nodes = tuple(dict.fromkeys(domain.server(s).node for s in servers))
    return AppChange(name, app.location, patched, backup, mode, nodes)

"""domain.toml → a validated, immutable model of a domain (`model.py`).

Every problem found is reported at once, each with the file, the line where it can be
located, and the field path (`servers[2].node`), as a ConfigError (exit 2). Loading a
domain reads one file and touches nothing else. `[lb]` and `[services]` are validated
against the model their `kind` registered (adapter_config.py).
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from zdt.domain import adapter_config, checks
from zdt.domain.model import Domain, SSHAddress
from zdt.errors import ConfigError


def load(path: str | Path) -> Domain:
    """Read and validate a domain file; raise ConfigError naming every problem found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the domain file: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x} at offset "
                          f"{exc.start}); a domain file is TOML, which is UTF-8") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Domain:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    locate = _Locator(text)
    base = path.parent.resolve()
    _resolve_paths(raw, base)
    _default_hosts(raw)
    raw["source"] = str(path.resolve())
    problems: list[tuple[str, str]] = []
    for section in adapter_config.PACKAGES:
        problems += _adapter_section(raw, section, base)
    reported = {re.split(r"[.\[]", field)[0] for field, _ in problems}
    try:
        model = Domain.model_validate(raw)
    except ValidationError as exc:
        # a section whose own model failed is missing here: said once, above
        problems += [(_field_path(e["loc"]), _explain(e)) for e in exc.errors()
                     if not e["loc"] or str(e["loc"][0]) not in reported]
        raise ConfigError(_message(path, locate, problems)) from None
    if problems:
        raise ConfigError(_message(path, locate, problems))
    problems = list(checks.cross_references(model))
    if problems:
        raise ConfigError(_message(path, locate, problems))
    return model


def _adapter_section(raw: dict[str, Any], section: str, base: Path) -> list[tuple[str, str]]:
    """Validate `[lb]` / `[services]` (or each `[[lb]]`) against its kind's model, in place;
    the problems."""
    given = raw.get(section, {} if section == "services" else None)
    if section == "lb" and isinstance(given, list):
        if not given:
            raw.pop(section)
            return [("lb", "an empty list: give one [lb] table or [[lb]] tables")]
        problems, models = [], []
        for i, item in enumerate(given):
            model, found = _adapter_model(item, section, (section, i), base)
            problems += found
            models.append(model)
        raw[section] = tuple(models)
        if problems:
            raw.pop(section)
        return problems
    if not isinstance(given, dict):
        return []                          # missing or not a table: the schema says so
    model, problems = _adapter_model(given, section, (section,), base)
    if problems:
        raw.pop(section, None)
    else:
        raw[section] = model
    return problems


def _adapter_model(given: object, section: str, where: tuple[str | int, ...], base: Path
                   ) -> tuple[Any, list[tuple[str, str]]]:
    """One table validated against its kind's model; (the model, the problems)."""
    if not isinstance(given, dict):
        return None, [(_field_path(where), "not a table")]
    kind = given.get("kind", adapter_config.DEFAULT_KIND[section])
    found = adapter_config.lookup(section, kind) if isinstance(kind, str) else None
    if found is None:
        known = ", ".join(adapter_config.kinds(section))
        return None, [(_field_path((*where, "kind")), f"unknown kind {kind!r} (known: {known})")]
    model = found[0]
    fields = {**given, "kind": kind}
    for key in model.local_paths:
        value = fields.get(key)
        if isinstance(value, str) and value and "://" not in value and not fields.get("node"):
            fields[key] = str(base / value)
    try:
        return model.model_validate(fields), []
    except ValidationError as exc:
        return None, [(_field_path((*where, *e["loc"])), _explain_in(section, kind, e))
                      for e in exc.errors()]


def _explain_in(section: str, kind: str, err: ErrorDetails) -> str:
    """An unknown key of `[lb]` / `[services]` that another kind has is named as such: it
    would do nothing for this kind (a kind changed, a key left behind)."""
    why = _explain(err)
    if err["type"] != "extra_forbidden" or not err["loc"]:
        return why
    key = str(err["loc"][0])
    owners = [k for k in adapter_config.kinds(section)
              if k != kind and key in adapter_config.fields_of(section, k)]
    if owners:
        return (f"unknown key for kind {kind!r} (a key of kind {', '.join(owners)}; it would "
                "do nothing here: remove it)")
    return why


def _resolve_paths(raw: dict, base: Path) -> None:
    """Make the zdt-side paths absolute, relative to the domain file."""
    section = raw.get("domain")
    if isinstance(section, dict) and isinstance(section.get("state_dir"), str):
        section["state_dir"] = str(base / section["state_dir"])
    for node in raw.get("nodes") or ():
        if isinstance(node, dict) and isinstance(node.get("root"), str):
            node["root"] = str(base / node["root"])
    ssh = raw.get("ssh")
    if isinstance(ssh, dict):
        for key in ("known_hosts", "identity", "config"):
            if isinstance(ssh.get(key), str) and ssh[key]:
                ssh[key] = str(base / Path(ssh[key]).expanduser())


def _default_hosts(raw: dict) -> None:
    """A server without `host` is reached at its node's address: the ssh:// host, or
    127.0.0.1 for a local node (a remote server probed at 127.0.0.1 would be whatever
    listens on this machine: a false "healthy")."""
    hosts = {}
    for node in raw.get("nodes") or ():
        if isinstance(node, dict) and isinstance(node.get("address"), str) and \
                node["address"].startswith("ssh://"):
            with contextlib.suppress(ValueError):     # a bad address is reported by its field
                hosts[node.get("name")] = SSHAddress.parse(node["address"]).host
    for server in raw.get("servers") or ():
        if isinstance(server, dict) and "host" not in server and server.get("node") in hosts:
            server["host"] = hosts[server["node"]]


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _explain(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _message(path: Path, locate: _Locator, problems: list[tuple[str, str]]) -> str:
    lines = [f"{path}: {len(problems)} problem(s) in the domain file:"]
    for field, why in problems:
        line = locate(field)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"  {where}: {field}: {why}")
    lines.append("Fix the file and run the command again; nothing was changed.")
    return "\n".join(lines)


class _Locator:
    """Finds the line of a field path in TOML text (tables and arrays of tables, by count).

    tomllib keeps no positions, so this scans headers: `servers[2].node` is the `node =`
    line after the third `[[servers]]` header. Returns None when it cannot tell.
    """

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def __call__(self, field: str) -> int | None:
        parts = re.findall(r"([A-Za-z0-9_-]+)(?:\[(\d+)\])?", field)
        for k in range(len(parts), 0, -1):     # the longest prefix that is a table header
            index = parts[k - 1][1]
            start = self._table_start(".".join(name for name, _ in parts[:k]),
                                      int(index) if index else None)
            if start is not None:
                return self._key_line(start, parts[k][0] if k < len(parts) else None)
        return None

    def _key_line(self, start: int, key: str | None) -> int:
        if key is None:
            return start + 1
        for n in range(start + 1, len(self.lines)):
            if self._header.match(self.lines[n]):
                break
            k = self._key.match(self.lines[n])
            if k and k.group(1) == key:
                return n + 1
        return start + 1

    def _table_start(self, table: str, index: int | None) -> int | None:
        count = -1
        for n, line in enumerate(self.lines):
            h = self._header.match(line)
            if h and h.group(2) == table:
                count += 1
                if index is None or count == index:
                    return n
        return None

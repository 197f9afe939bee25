"""The `liveupdate.data` file: the input of `zdt live update --data FILE`.

The format is AIX Live Update's lvupdate.data: stanzas, each a `name:` header at column 0
followed by indented `key = value` attribute lines; blank lines and `#` comments (whole
lines, or after a value) are ignored. zdt knows three stanzas:

    general:
        name = web                        # the workload, as given to `zdt live run --name`
        home = /srv/app/releases/v2       # or: archive = /srv/app/v2.tar.gz (not both)
        ready_timeout = 30                # seconds; also checkpoint_timeout, stop_timeout
        blackout_budget_ms = 250
    scripts:
        check = /opt/hooks/check          # a key may repeat (order is kept) ...
        pre = /opt/hooks/drain, /opt/hooks/notify    # ... or list paths with commas
    workload:                             # several: one operation updates them all, in
        name = api                        # order, under one host lock (AIX's whole-LPAR
        home = /srv/api/releases/v2       # update); a failure reverts the ones done
    workload:
        name = worker
        archive = /srv/worker/v2.tar.gz   # without home or archive: general's
        state_dir = /var/lib/zdt/worker   # if it was run with --state-dir

A value may be double-quoted; inside the quotes `#` and `,` are literal (there are no
escapes), so a path holding either is given quoted, one per line. Scripts are not looked
up here: they are checked when they are about to run.

Every problem in the file is collected before raising, so one ConfigError lists them all,
each as `FILE:LINE: stanza.key: why`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zdt.errors import ConfigError

# A day: longer than any real wait, short enough that a slip (30000 for 30) is caught.
MAX_TIMEOUT = 86400.0


@dataclass(frozen=True)
class General:
    """The `general:` stanza: what to update, and how long each phase may take."""

    name: str | None = None
    home: str | None = None
    archive: str | None = None
    ready_timeout: float = 30.0
    checkpoint_timeout: float = 30.0
    stop_timeout: float = 10.0
    blackout_budget_ms: int | None = None


@dataclass(frozen=True)
class Scripts:
    """The `scripts:` stanza: absolute paths of executables run at each phase, in order."""

    check: tuple[str, ...] = ()
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    error: tuple[str, ...] = ()
    complete: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    """A `workload:` stanza: one of the workloads a single operation updates."""

    name: str
    home: str | None = None
    archive: str | None = None
    state_dir: str | None = None
    line: int = 0


@dataclass(frozen=True)
class LiveUpdateData:
    general: General
    scripts: Scripts
    source: str
    workloads: tuple[Workload, ...] = ()


class _Invalid(Exception):
    """A value that cannot be used; the message is the reason shown to the user."""


def _text(value: str) -> str:
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise _Invalid(f"not an absolute path: {value!r}")
    return value


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _seconds(value: str) -> float:
    # A strict pattern rather than float(): float() also takes "inf", "nan" and "1_0".
    if not _DECIMAL.fullmatch(value):
        raise _Invalid(f"not a number of seconds: {value!r}")
    seconds = float(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise _Invalid(f"{value} s is out of range: give more than 0 and at most "
                       f"{MAX_TIMEOUT:g} s (a day)")
    return seconds


def _milliseconds(value: str) -> int:
    if not _INTEGER.fullmatch(value):
        raise _Invalid(f"not a whole number of milliseconds: {value!r}")
    ms = int(value)
    if ms < 0:
        raise _Invalid(f"{value} ms is negative: give 0 or more")
    return ms


_GENERAL: dict[str, Callable[[str], Any]] = {
    "name": _text,
    "home": _absolute,
    "archive": _absolute,
    "ready_timeout": _seconds,
    "checkpoint_timeout": _seconds,
    "stop_timeout": _seconds,
    "blackout_budget_ms": _milliseconds,
}
_SCRIPTS = ("check", "pre", "post", "error", "complete")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _Invalid(f"not a workload name (letters, digits, '.', '_', '-'): {value!r}")
    return value


_WORKLOAD: dict[str, Callable[[str], Any]] = {
    "name": _name, "home": _absolute, "archive": _absolute, "state_dir": _absolute}
_STANZAS = {"general": tuple(_GENERAL), "scripts": _SCRIPTS, "workload": tuple(_WORKLOAD)}
REPEATABLE = ("workload",)

_HEADER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):[ \t]*(?:#.*)?")
_ATTRIBUTE = re.compile(r"[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*=(.*)")
_QUOTED = re.compile(r'[ \t]*"([^"]*)"[ \t]*(?:#.*)?')
# A comment starts at a `#` that begins the value or follows a blank, so that
# `/opt/app#2` keeps its `#` the way a shell word would.
_COMMENT = re.compile(r"(?:^|[ \t])#")
_LEADING_KEY = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*(=|:)")


def _value(raw: str) -> tuple[str, bool]:
    """The value of an attribute line after `=`, and whether it was quoted."""
    if raw.strip().startswith('"'):
        quoted = _QUOTED.fullmatch(raw)
        if quoted is None:
            raise _Invalid(f"unterminated quote or text after the closing quote: "
                           f"{raw.strip()!r:.60}")
        value, was_quoted = quoted[1], True
    else:
        value, was_quoted = _COMMENT.split(raw, maxsplit=1)[0].strip(), False
    if not value:
        raise _Invalid("empty value")
    return value, was_quoted


class _Parser:
    """Reads a file line by line and collects (line, where, why) for every problem."""

    def __init__(self, check_files: bool = False) -> None:
        self.check_files = check_files
        self.problems: list[tuple[int, str, str]] = []
        self.stanza: str | None = None
        # Lines of an unknown or duplicate stanza are only checked for syntax: one
        # "unknown stanza" is clearer than an "unknown key" for each of its lines.
        self.skipping = False
        self.headers: dict[str, int] = {}
        self.general_lines: dict[str, int] = {}
        self.general: dict[str, Any] = {}
        self.scripts: dict[str, list[str]] = {key: [] for key in _SCRIPTS}
        self.workloads: list[tuple[int, dict[str, Any], dict[str, int]]] = []

    def problem(self, line: int, where: str, why: str) -> None:
        self.problems.append((line, where, why))

    def feed(self, no: int, line: str) -> None:
        if not line.strip() or line.lstrip().startswith("#"):
            return
        if header := _HEADER.fullmatch(line):
            self.header(no, header[1])
        elif attribute := _ATTRIBUTE.fullmatch(line):
            self.attribute(no, attribute[1], attribute[2])
        else:
            self.unparsable(no, line)

    def header(self, no: int, name: str) -> None:
        self.stanza, self.skipping = name, True
        if name not in _STANZAS:
            self.problem(no, name, f"unknown stanza (known: {', '.join(_STANZAS)})")
        elif name in self.headers and name not in REPEATABLE:
            self.problem(no, name, f"duplicate stanza (first at line {self.headers[name]})")
        else:
            self.headers.setdefault(name, no)
            self.skipping = False
            if name == "workload":
                self.workloads.append((no, {}, {}))

    def attribute(self, no: int, key: str, raw: str) -> None:
        if self.stanza is None:
            self.problem(no, key, "attribute line before any stanza; put it under "
                                  "`general:`, `scripts:` or `workload:`")
            return
        if self.skipping:
            return
        where, known = f"{self.stanza}.{key}", _STANZAS[self.stanza]
        if key not in known:
            self.problem(no, where, f"unknown key (known in {self.stanza}: {', '.join(known)})")
        elif self.stanza == "general":
            self.general_value(no, key, where, raw)
        elif self.stanza == "workload":
            self.workload_value(no, key, raw)
        else:
            self.script_value(no, key, where, raw)

    def workload_value(self, no: int, key: str, raw: str) -> None:
        _, values, lines = self.workloads[-1]
        where = f"workload[{len(self.workloads) - 1}].{key}"
        if key in lines:
            self.problem(no, where, f"duplicate key (first at line {lines[key]})")
            return
        lines[key] = no
        try:
            values[key] = _WORKLOAD[key](_value(raw)[0])
        except _Invalid as exc:
            self.problem(no, where, str(exc))

    def check_workloads(self) -> list[Workload]:
        out: list[Workload] = []
        seen: dict[str, int] = {}
        for number, (no, values, lines) in enumerate(self.workloads):
            where = f"workload[{number}]"
            if "home" in lines and "archive" in lines:
                self.problem(max(lines["home"], lines["archive"]), where,
                             "give home or archive, not both")
            if "name" not in lines:
                self.problem(no, where, "no name: which workload (`zdt live run --name`)?")
            elif "name" in values:
                if values["name"] in seen:
                    self.problem(lines["name"], f"{where}.name", f"{values['name']!r} is "
                                 f"already updated by the workload at line {seen[values['name']]}")
                seen.setdefault(values["name"], no)
                out.append(Workload(**values, line=no))
        return out

    def general_value(self, no: int, key: str, where: str, raw: str) -> None:
        if key in self.general_lines:
            self.problem(no, where, f"duplicate key (first at line {self.general_lines[key]})")
            return
        self.general_lines[key] = no
        try:
            self.general[key] = _GENERAL[key](_value(raw)[0])
        except _Invalid as exc:
            self.problem(no, where, str(exc))

    def script_value(self, no: int, key: str, where: str, raw: str) -> None:
        try:
            value, quoted = _value(raw)
        except _Invalid as exc:
            self.problem(no, where, str(exc))
            return
        for path in [value] if quoted else [p.strip() for p in value.split(",")]:
            if not path:
                self.problem(no, where, f"empty path in the list {value!r}")
            elif not path.startswith("/"):
                self.problem(no, where, f"not an absolute path: {path!r}")
            elif "=" in path:        # `env NAME=VALUE… SCRIPT` would take it for a variable
                self.problem(no, where, f"{path!r}: a script path may not contain '='")
            elif self.check_files and not (os.path.isfile(path) and os.access(path, os.X_OK)):
                self.problem(no, where, f"{path} is missing or not an executable file")
            else:
                self.scripts[key].append(path)

    def unparsable(self, no: int, line: str) -> None:
        text = line.strip()
        lead = _LEADING_KEY.match(line)
        where = self.stanza or "(before any stanza)"
        if _HEADER.fullmatch(text):
            where, hint = text.split(":")[0], "a stanza header starts at column 0"
        elif lead and lead[2] == ":" and not line[0].isspace():
            where, hint = lead[1], "nothing may follow a stanza header's colon but a comment"
        elif lead and lead[2] == "=":
            where = f"{self.stanza}.{lead[1]}" if self.stanza else lead[1]
            hint = "an attribute line is indented under its stanza"
        elif "=" in text:
            hint = "a key is made of letters, digits and underscores"
        else:
            hint = "expected a `stanza:` header, an indented `key = value`, a comment or a blank"
        self.problem(no, where, f"cannot read {text!r:.60}: {hint}")

    def both_homes(self) -> None:
        lines = self.general_lines
        if "home" in lines and "archive" in lines:
            first, second = sorted(("home", "archive"), key=lines.__getitem__)
            self.problem(lines[second], f"general.{second}",
                         f"give home or archive, not both ({first} at line {lines[first]})")


def parse(text: str, source: str, *, check_files: bool = False) -> LiveUpdateData:
    """Read the text of a liveupdate.data file; raise ConfigError listing every problem.

    `source` names the file in messages (`source:LINE: stanza.key: why`); `check_files`:
    each script must be an executable file on this machine.
    """
    parser = _Parser(check_files)
    # split("\n") rather than splitlines(): the latter also breaks at form feeds and
    # other separators, and line numbers must match what an editor shows.
    for no, line in enumerate(text.split("\n"), start=1):
        parser.feed(no, line.removesuffix("\r"))
    parser.both_homes()
    workloads = parser.check_workloads()
    if parser.problems:
        raise ConfigError(_message(source, parser.problems))
    scripts = Scripts(**{key: tuple(paths) for key, paths in parser.scripts.items()})
    return LiveUpdateData(General(**parser.general), scripts, source, tuple(workloads))


def load(path: Path) -> LiveUpdateData:
    """Read and validate a liveupdate.data file; ConfigError (exit 2) on any problem."""
    try:
        # utf-8-sig: a byte-order mark left by an editor would otherwise turn the first
        # stanza header into an unknown stanza.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the live update data file: "
                          f"{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): "
                          f"not a live update data file") from exc
    return parse(text, str(path), check_files=True)


def _message(source: str, problems: list[tuple[int, str, str]]) -> str:
    lines = [f"{source}: {len(problems)} problem(s) in the live update data file:"]
    for no, where, why in sorted(problems, key=lambda p: p[0]):
        lines.append(f"  {source}:{no}: {where}: {why}")
    lines.append("Fix the file and run the command again; nothing was changed.")
    return "\n".join(lines)

"""The upstream file zdt owns for nginx (both modes): one line per server, named by a
trailing comment, `down` when drained:

    upstream app {
        server 198.18.1.10:8001 weight=2;  # node1-s1
        server 198.18.1.11:8001 down;  # node2-s1
    }

A line's parameters (weight=, max_fails=, backup, down) are kept in their order; zdt adds
or removes only `down`. Only the lines inside `upstream BACKEND { … }` ([lb] backend) are
zdt's: another block naming a server the same is never touched.
"""

from __future__ import annotations

import re
from pathlib import Path

from zdt import atomic

# `server ADDRESS [PARAMETER ...];  # NAME`: parameters (weight=, max_fails=, backup,
# down) are kept, in their order; zdt adds or removes only `down`.
LINE = re.compile(r"^(?P<indent>\s*)server\s+(?P<body>[^;#]+?)\s*;\s*#\s*(?P<name>\S+)\s*$")


OPEN = re.compile(r"^\s*upstream\s+(?P<name>[^\s{]+)\s*\{\s*(#.*)?$")
CLOSE = re.compile(r"^\s*\}\s*(#.*)?$")


def in_block(text: str, backend: str) -> list[bool]:
    """For each line of text: whether it is inside `upstream BACKEND { … }`."""
    inside, out = False, []
    for line in text.splitlines():
        if not inside and (m := OPEN.match(line)) and m["name"] == backend:
            inside = True
            out.append(False)
        elif inside and CLOSE.match(line):
            inside = False
            out.append(False)
        else:
            out.append(inside)
    return out


def servers(text: str, backend: str) -> dict[str, bool]:
    """The backend block's servers by name → whether marked down."""
    found = {}
    for line, mine in zip(text.splitlines(), in_block(text, backend), strict=True):
        m = LINE.match(line) if mine else None
        if m:
            found[m["name"]] = parts(m)[1]
    return found


def parts(m: re.Match[str]) -> tuple[list[str], bool]:
    """The address and parameters but `down`, and whether `down` is there."""
    words = m["body"].split()
    return [w for w in words if w != "down"], "down" in words[1:]


def mark(text: str, name: str, down: bool, backend: str) -> str:
    """The text with the backend block's line for `name` marked down (or not)."""
    out = []
    lines = text.splitlines(keepends=True)
    for line, mine in zip(lines, in_block(text, backend), strict=True):
        m = LINE.match(line.rstrip("\n")) if mine else None
        if m and m["name"] == name:
            words = parts(m)[0] + (["down"] if down else [])
            line = f"{m['indent']}server {' '.join(words)};  # {name}\n"
        out.append(line)
    return "".join(out)


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    atomic.write_text(path, text, mode if mode is not None else path.stat().st_mode & 0o777)

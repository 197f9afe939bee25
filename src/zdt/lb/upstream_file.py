"""The upstream file zdt owns for nginx (both modes): one line per server, named by a
trailing comment, `down` when drained:

    upstream app {
        server 198.18.1.10:8001 weight=2;  # node1-s1
        server 198.18.1.11:8001 down;  # node2-s1
    }

A line's parameters (weight=, max_fails=, backup, down) are kept in their order; zdt adds
or removes only `down`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# `server ADDRESS [PARAMETER ...];  # NAME`: parameters (weight=, max_fails=, backup,
# down) are kept, in their order; zdt adds or removes only `down`.
LINE = re.compile(r"^(?P<indent>\s*)server\s+(?P<body>[^;#]+?)\s*;\s*#\s*(?P<name>\S+)\s*$")


def parts(m: re.Match[str]) -> tuple[list[str], bool]:
    """The address and parameters but `down`, and whether `down` is there."""
    words = m["body"].split()
    return [w for w in words if w != "down"], "down" in words[1:]


def mark(text: str, name: str, down: bool) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        m = LINE.match(line.rstrip("\n"))
        if m and m["name"] == name:
            words = parts(m)[0] + (["down"] if down else [])
            line = f"{m['indent']}server {' '.join(words)};  # {name}\n"
        out.append(line)
    return "".join(out)


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.zdt-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode if mode is not None else path.stat().st_mode & 0o777)
    os.replace(tmp, path)

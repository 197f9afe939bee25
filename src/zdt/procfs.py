"""What /proc says of this machine's processes: state, parent, start time, command line,
children. A pid with no entry (or a zombie, for `live`) is simply not there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Stat(NamedTuple):
    state: str    # "R", "S", "Z"...
    ppid: int
    start: int    # start time, in clock ticks since boot (field 22 of /proc/PID/stat)


def stat(pid: int) -> Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = text[text.rindex(")") + 2:].split()
    return Stat(fields[0], int(fields[1]), int(fields[19]))


def cmdline(pid: int) -> str:
    """The command line, its arguments joined by spaces ("" if the process is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def live() -> dict[int, Stat]:
    """Every process that has not exited (zombies left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat(int(entry))
            if st is not None and st.state != "Z":
                found[int(entry)] = st
    return found


def children(parent: int) -> list[int]:
    return sorted(pid for pid, st in live().items() if st.ppid == parent)


def descendants(parents: set[int]) -> list[int]:
    """Children, their children, and so on, of any of `parents` (not the parents)."""
    stats = live()
    found: list[int] = []
    seen = set(parents)
    while parents:
        parents = {pid for pid, st in stats.items() if st.ppid in parents} - seen
        seen |= parents
        found += sorted(parents)
    return found

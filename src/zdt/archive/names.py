"""Member names the nodes can create as written, and symlinks that stay inside the tree."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Linux gives up with ELOOP after 40 symlinks (MAXSYMLINKS); a chain longer than that
# could never be followed on a node either.
MAX_LINK_HOPS = 40
NAME_MAX = 255             # bytes of one path component (ext4, xfs, btrfs)
PATH_MAX = 3072            # bytes of a member path: PATH_MAX 4096 less room for where the
                           # node extracts it (the staging dir and the release's name)


def node_name_problem(name: str) -> str | None:
    """Why a relative path could not be created as written on a Linux node by GNU tar
    (None if it can): not UTF-8, a control character or backslash (tar would write an
    escape), a component over NAME_MAX, the whole over PATH_MAX."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if not name.isprintable() or "\\" in name:
        return f"holds a control character or backslash ({name[:80]!r})"
    if len(raw) > PATH_MAX:
        return f"is {len(raw)} bytes long; a path may have at most {PATH_MAX}"
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return (f"has a component of {len(longest)} bytes; at most {NAME_MAX} are allowed "
                f"({longest[:40].decode('utf-8', 'replace')!r}…)")
    return None


def link_escapes(name: str, links: Mapping[str, str]) -> bool:
    """Whether the symlink member `name`, followed through the archive's own symlinks the
    way the kernel would after extraction, leaves the root (or loops).

    Following matters: with `s -> .`, the link `x -> s/..` looks inside when its text is
    normalised, yet on disk it is HOME/.. .
    """
    first = links[name]
    if not first or first.startswith("/"):
        return True
    resolved = name.split("/")[:-1]          # the link's directory, as components
    todo = list(reversed(first.split("/")))
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return True
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or target.startswith("/"):
                return True
            resolved.pop()
            todo.extend(reversed(target.split("/")))
    return False


def release_name(version: str, sha256: str) -> str:
    """The directory name of a release extracted from an archive, on a node or this host:
    its version made safe for a file name, and the start of its digest."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", version)[:40] or "release"
    return f"{tag}-{sha256[:12]}"

"""Small file-system operations on a node, as argv commands through its transport.

Every path given here is a node path; `t.path()` maps it to what the transport's commands
see (the node's root dir in the sandbox, the same path over SSH). Renames use `mv -T`, so
a directory is never moved *into* an existing one by accident.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile

from zdt.adapters.transport import Transport
from zdt.archive import ARCHIVE_MARKER
from zdt.errors import StepError

MARKER = ARCHIVE_MARKER      # written by zdt into every release it extracts

TIMEOUT = 600.0


async def kind(t: Transport, path: str) -> str:
    """'link', 'dir', 'file', 'other' or 'missing' (a link is not followed)."""
    r = await t.run(["stat", "-c", "%F", t.path(path)], check=False, timeout=30)
    if r.returncode != 0:
        return "missing"
    word = r.stdout.strip()
    return {"symbolic link": "link", "directory": "dir", "regular file": "file",
            "regular empty file": "file"}.get(word, "other")


async def readlink(t: Transport, path: str) -> str:
    return (await t.run(["readlink", t.path(path)], timeout=30)).stdout.rstrip("\n")


async def marker(t: Transport, release: str) -> str | None:
    """The sha256 a release dir was extracted from, or None (not one of zdt's)."""
    return await _marker_field(t, release, "sha256")


async def marker_version(t: Transport, release: str) -> str | None:
    """The version its release marker names, or None (not one of zdt's releases)."""
    return await _marker_field(t, release, "version")


async def _marker_field(t: Transport, release: str, field: str) -> str | None:
    r = await t.run(["cat", t.path(posixpath.join(release, MARKER))], check=False, timeout=30)
    if r.returncode != 0:
        return None
    try:
        value = json.loads(r.stdout).get(field)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def write_marker(t: Transport, release: str, sha256: str, version: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"sha256": sha256, "version": version}, f)
    try:
        await t.put(f.name, posixpath.join(release, MARKER))
    finally:
        os.unlink(f.name)


async def write_text(t: Transport, path: str, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        await t.put(f.name, path)
    finally:
        os.unlink(f.name)


async def move(t: Transport, source: str, target: str, timeout: float = TIMEOUT) -> None:
    await t.run(["mv", "-T", t.path(source), t.path(target)], timeout=timeout)


async def remove(t: Transport, path: str, timeout: float = TIMEOUT) -> None:
    if not path or path == "/" or not path.startswith("/"):
        raise StepError(f"{t.node}: refusing to remove {path!r}", retryable=False)
    await t.run(["rm", "-rf", "--one-file-system", t.path(path)], timeout=timeout)


async def mkdir(t: Transport, path: str) -> None:
    await t.run(["mkdir", "-p", t.path(path)], timeout=30)


async def point(t: Transport, link: str, target: str) -> None:
    """Make `link` a symlink to `target` atomically: a new link renamed over the old one."""
    fresh = link + ".zdt-new"
    await t.run(["ln", "-sfn", target, t.path(fresh)], timeout=30)
    await t.run(["mv", "-T", t.path(fresh), t.path(link)], timeout=30)


async def link(t: Transport, link_path: str, target: str) -> None:
    await t.run(["ln", "-sn", target, t.path(link_path)], timeout=30)


async def listdir(t: Transport, path: str) -> list[str]:
    r = await t.run(["ls", "-1A", t.path(path)], check=False, timeout=30)
    return r.stdout.splitlines() if r.returncode == 0 else []

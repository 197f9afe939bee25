"""The runtime step (WebLogic's Java home update): on a stopped node, every script the
domain selects that refers to the runtime in use is rewritten to the new one.

The runtime in use on a node is what the scripts assign to the variable (JAVA_HOME by
default): they must agree, and with no assignment the domain's `[runtime] home` is taken.
Each file is backed up beside itself (FILE.zdt-runtime-<workflow>, same bytes, mode and
times) before it is written; the revert moves every backup back. A file that is not
UTF-8 text, or holds a NUL byte, is never touched.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any

from zdt import nodepath
from zdt.adapters.transport import Transport
from zdt.errors import PreconditionError, StepError
from zdt.steps import Context, StepSpec, nodefs

BACKUP_TAG = ".zdt-runtime-"


@dataclass(frozen=True)
class Script:
    path: str            # node path
    text: str


@dataclass(frozen=True)
class LineChange:
    path: str
    line: int
    before: str
    after: str


def _matches(relative: str, glob: str) -> bool:
    """A glob per path segment: `bin/*.sh` selects bin/start.sh, not bin/sub/start.sh."""
    parts, pattern = relative.split("/"), glob.split("/")
    return len(parts) == len(pattern) and all(
        fnmatch.fnmatchcase(p, g) for p, g in zip(parts, pattern, strict=True))


def _places(ctx: Context) -> list[tuple[str, tuple[str, ...]]]:
    """(base dir, globs relative to it) of the domain's [runtime]."""
    runtime = ctx.domain.runtime
    if runtime is None:
        return []
    places = [(ctx.domain.domain.home, runtime.scripts)]
    if runtime.domain_dir:
        places.append((runtime.domain_dir, runtime.domain_scripts))
    return places


def globs(ctx: Context) -> list[str]:
    """Every glob, as a node path pattern (for messages)."""
    return [posixpath.join(base, g) for base, gs in _places(ctx) for g in gs]


def unmatched(ctx: Context, found: list[Script]) -> list[str]:
    """The globs that selected none of `found` (as node path patterns)."""
    out = []
    for base, gs in _places(ctx):
        relative = [s.path.removeprefix(base.rstrip("/") + "/") for s in found
                    if nodepath.inside(s.path, base)]
        out += [posixpath.join(base, g) for g in gs
                if not any(_matches(r, g) for r in relative)]
    return out


async def scripts(ctx: Context, t: Transport) -> list[Script]:
    """The text files the domain's globs select on this node (backups left out)."""
    found = []
    for base, patterns in _places(ctx):
        root = t.path(base).rstrip("/") + "/"
        r = await t.run(["find", root, "-type", "f"], check=False, timeout=60)
        for line in sorted(r.stdout.splitlines()):
            relative = line.removeprefix(root)
            if BACKUP_TAG in relative or relative.endswith(".zdt-new") or \
                    not any(_matches(relative, g) for g in patterns):
                continue
            text = await _text(t, posixpath.join(base, relative))
            if text is not None:
                found.append(Script(posixpath.join(base, relative), text))
    return found


def archived_scripts(ctx: Context, archive: str) -> list[Script]:
    """The scripts the globs select in a home archive (what a combined update's rewrite
    will meet after the switch), for preview."""
    runtime = ctx.domain.runtime
    assert runtime is not None
    found = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isreg() or not any(_matches(member.name, g) for g in runtime.scripts):
                continue
            data = tar.extractfile(member)
            raw = data.read() if data else b""
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if "\x00" not in text:
                found.append(Script(posixpath.join(ctx.domain.domain.home, member.name), text))
    return found


async def _text(t: Transport, path: str) -> str | None:
    r = await t.run(["cat", t.path(path)], check=False, timeout=60)
    text = r.stdout
    if r.returncode != 0 or "\x00" in text or "\ufffd" in text:
        return None           # unreadable, binary, or not UTF-8: never touched
    return text


def current(ctx: Context, found: list[Script], node: str) -> str:
    """The runtime in use on the node, from the scripts' assignments to the variable."""
    assert ctx.domain.runtime is not None
    variable = re.escape(ctx.domain.runtime.variable)
    pattern = re.compile(rf"^\s*(?:export\s+)?{variable}=[\"']?([^\"'\s;]+)", re.M)
    values = {m.group(1) for s in found for m in pattern.finditer(s.text)}
    if len(values) > 1:
        raise PreconditionError(f"{node}: the scripts set {ctx.domain.runtime.variable} to "
                                f"different runtimes ({', '.join(sorted(values))}); make them "
                                "agree first")
    return values.pop() if values else ctx.domain.runtime.home


def _path_pattern(old: str) -> re.Pattern[str]:
    """The runtime path as a whole path: /opt/runtime-1 in /opt/runtime-1/bin, not in
    /opt/runtime-10."""
    return re.compile(re.escape(old.rstrip("/")) + r"(?=[/\"'\s:;=)}]|$)", re.M)


def names(text: str, old: str) -> bool:
    return bool(_path_pattern(old).search(text))


def rewritten(text: str, old: str, new: str) -> str:
    return _path_pattern(old).sub(new.rstrip("/").replace("\\", "\\\\"), text)


def changes(found: list[Script], old: str, new: str) -> list[LineChange]:
    """Every line that would change, for preview."""
    out = []
    for s in found:
        for number, line in enumerate(s.text.splitlines(), 1):
            if old != new and names(line, old):
                out.append(LineChange(s.path, number, line, rewritten(line, old, new)))
    return out


class Rewrite:
    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        if ctx.runtime_home is None:
            raise StepError("a runtime step without a new runtime home", retryable=False)
        self.ctx, self.spec, self.new = ctx, spec, ctx.runtime_home
        self.t = ctx.transport(spec.node)

    def _backup(self, path: str) -> str:
        return path + BACKUP_TAG + self.ctx.workflow

    async def _old(self, found: list[Script]) -> str:
        """The runtime this workflow moves away from: read from its own backups when it
        began here already (a crash or a retry between two files), else from the scripts."""
        backups = []
        for s in found:
            if await nodefs.kind(self.t, self._backup(s.path)) == "file":
                text = await _text(self.t, self._backup(s.path))
                if text is not None:
                    backups.append(Script(s.path, text))
        return current(self.ctx, backups or found, self.spec.node)

    async def check(self) -> bool:
        found = await scripts(self.ctx, self.t)
        old = await self._old(found)
        return old == self.new or not any(names(s.text, old) for s in found)

    async def execute(self) -> dict[str, Any] | None:
        found = await scripts(self.ctx, self.t)
        old = await self._old(found)
        written = []
        for s in found:
            if old == self.new or not names(s.text, old):
                continue
            backup = self._backup(s.path)
            if await nodefs.kind(self.t, backup) == "missing":
                # copied under another name first: a cut-short copy is never taken for one
                partial = backup + ".partial"
                await self.t.run(["cp", "-p", self.t.path(s.path), self.t.path(partial)],
                                 timeout=60)
                await self.t.run(["mv", "-T", self.t.path(partial), self.t.path(backup)],
                                 timeout=60)
            await _write(self.t, s.path, rewritten(s.text, old, self.new))
            written.append(s.path)
        return {"from": old, "to": self.new, "files": written}

    async def revert(self) -> dict[str, Any] | None:
        runtime = self.ctx.domain.runtime
        assert runtime is not None
        restored = []
        for base in filter(None, (self.ctx.domain.domain.home, runtime.domain_dir)):
            root = self.t.path(base).rstrip("/") + "/"
            r = await self.t.run(["find", root, "-type", "f", "-name",
                                  "*" + BACKUP_TAG + self.ctx.workflow], check=False, timeout=60)
            for backup in sorted(r.stdout.splitlines()):
                original = backup.removesuffix(BACKUP_TAG + self.ctx.workflow)
                await self.t.run(["mv", "-T", backup, original], timeout=60)
                restored.append(posixpath.join(base, original.removeprefix(root)))
        return {"restored": restored} if restored else None


async def _write(t: Transport, path: str, text: str) -> None:
    """Replace a file's content atomically, mode and owner kept: the new content is put
    beside it, given the old file's mode and owner, then renamed over it."""
    fresh = path + ".zdt-new"
    with tempfile.NamedTemporaryFile("w", delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        await t.put(f.name, fresh)
    finally:
        os.unlink(f.name)
    await t.run(["chmod", "--reference", t.path(path), t.path(fresh)], timeout=30)
    await t.run(["chown", "--reference", t.path(path), t.path(fresh)], check=False, timeout=30)
    await t.run(["mv", "-T", t.path(fresh), t.path(path)], timeout=30)

"""The steps of a home rollout: extract → drain → stop → backup → switch → start → health
→ ready, and their reverts, which run last first:

    ready.revert  drain again          start.revert   stop
    switch.revert put the old home back (backup.revert too: a crash may fall between)
    stop.revert   start, health, ready extract.revert remove the unused release

so reverting a node is: drain, stop, put the backed-up home back, start, health, ready.

Node paths (HOME = /srv/app/home):
    PARENT/releases/<version>-<sha12>    a release, extracted before the node is drained
    HOME.bak-<workflow>                  the backup (or --backup-dir/home.bak-<workflow>)
A home that is a directory is switched by two renames (HOME → backup, release → HOME) while
its servers are stopped; a home that is a symlink by one atomic rename of a new link, and
its backup is a link to the old target. Each check reads the release marker (.zdt-release).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from zdt.adapters.transport import Transport
from zdt.archive import Manifest, manifest_path, release_name
from zdt.archive import tree as archive_tree
from zdt.errors import StepError
from zdt.staging import stage, staged_path
from zdt.steps import Context, HomeChange, StepSpec, nodefs

KEEP_BACKUPS = 3


class Paths:
    """The node paths of one home change in one workflow."""

    def __init__(self, ctx: Context) -> None:
        change = _change(ctx)
        self.home = ctx.domain.domain.home
        self.parent = posixpath.dirname(self.home)
        self.releases = posixpath.join(self.parent, "releases")
        self.release_name = release_name(change.version, change.sha256)
        self.release = posixpath.join(self.releases, self.release_name)
        self.scratch = posixpath.join(self.releases, f".tmp-{change.sha256[:12]}")
        self.backups = change.backup_dir or self.parent
        self.backup_prefix = posixpath.basename(self.home) + ".bak-"
        self.backup = posixpath.join(self.backups, self.backup_prefix + ctx.workflow)
        self.staged = staged_path(ctx.domain, change.sha256)

    def link_target(self) -> str:
        """The release as a symlink target relative to HOME's dir (valid under any root)."""
        return posixpath.relpath(self.release, self.parent)


def _change(ctx: Context) -> HomeChange:
    if ctx.change is None:
        raise StepError("a home step without a home change", retryable=False)
    return ctx.change


class _NodeStep:
    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.change = _change(ctx)
        self.paths = Paths(ctx)
        self.t: Transport = ctx.transport(spec.node)

    async def check(self) -> bool:
        raise NotImplementedError

    async def execute(self) -> dict[str, Any] | None:
        raise NotImplementedError

    async def revert(self) -> dict[str, Any] | None:
        raise NotImplementedError


class Extract(_NodeStep):
    async def check(self) -> bool:
        sha = self.change.sha256
        return (await nodefs.marker(self.t, self.paths.release) == sha
                or await nodefs.marker(self.t, self.paths.home) == sha)

    async def execute(self) -> dict[str, Any] | None:
        p, t = self.paths, self.t
        staged = await self._stage()
        await nodefs.remove(t, p.scratch)
        await nodefs.mkdir(t, p.scratch)
        await t.run(["tar", "-xzf", t.path(p.staged), "-C", t.path(p.scratch),
                     "--no-same-owner", "--same-permissions"],
                    timeout=self.ctx.options.command_timeout)
        await self._same_files()
        await self._same_tree()
        await nodefs.write_marker(t, p.scratch, self.change.sha256, self.change.version)
        await nodefs.remove(t, p.release)          # a partial release from a crash
        await nodefs.move(t, p.scratch, p.release)
        return {"release": p.release, "staged": staged}

    async def _same_files(self) -> None:
        """What tar wrote is what the manifest lists, file for file: the staged archive was
        checked before, but the node read it again to extract it."""
        p, t = self.paths, self.t
        manifest = Manifest.from_json(manifest_path(Path(self.change.archive)).read_text(),
                                      self.change.archive)
        root = t.path(p.scratch).rstrip("/") + "/"
        r = await t.run(["find", root, "-type", "f", "-exec", "sha256sum", "{}", "+"],
                        timeout=self.ctx.options.command_timeout)
        found = {}
        for line in r.stdout.splitlines():
            digest, _, path = line.partition("  ")
            found[path.removeprefix(root)] = digest.lstrip("\\")
        if found != manifest.files:
            odd = sorted(set(found.items()) ^ set(manifest.files.items()))[:3]
            raise StepError(f"{t.node}: the release extracted from {p.staged} differs from the "
                            f"archive's manifest (e.g. {[name for name, _ in odd]}); was the "
                            "staged file changed? it will be staged again on retry")

    async def _same_tree(self) -> None:
        """Every entry tar wrote is a member of the verified archive, of its type, with its
        permission bits and link target, and none is missing: a staged file swapped after
        its digest was checked cannot bring a link, a device or a set-uid bit along."""
        p, t = self.paths, self.t
        want = archive_tree(self.change.archive, self.change.sha256)
        r = await t.run(["find", t.path(p.scratch), "-mindepth", "1", "-printf",
                         "%y %m %P\\0%l\\0"], timeout=self.ctx.options.command_timeout)
        fields = r.stdout.split("\0")
        found = {}
        for head, target in zip(fields[0::2], fields[1::2], strict=False):
            kind, mode, name = head.split(" ", 2)
            found[name] = (kind, 0o777 if kind == "l" else int(mode, 8), target)
        if found != want:
            odd = sorted(set(found) ^ set(want)) or sorted(
                n for n in found if found[n] != want.get(n))
            raise StepError(f"{t.node}: what tar extracted from {p.staged} differs from the "
                            f"archive (types, modes or links of {odd[:3]}); was the staged "
                            "file changed? it will be staged again on retry")

    async def _stage(self) -> str:
        copied = await stage(self.t, Path(self.change.archive), self.paths.staged,
                             self.change.sha256)
        return "copied" if copied else "present"

    async def revert(self) -> dict[str, Any] | None:
        p, t = self.paths, self.t
        await nodefs.remove(t, p.scratch)
        await nodefs.remove(t, p.home + ".zdt-new")   # a link swap a crash cut short
        if p.link_target() in await self._links_in_use():
            return None                            # still in use: never pull the floor
        if await nodefs.marker(t, p.release) == self.change.sha256:
            await nodefs.remove(t, p.release)
            return {"removed": p.release}
        return None


    async def _links_in_use(self) -> set[str]:
        """Targets of the home link and of every backup link beside it."""
        p, t = self.paths, self.t
        names = [p.home] + [posixpath.join(p.backups, n) for n in await nodefs.listdir(
            t, p.backups) if n.startswith(p.backup_prefix)]
        return {await nodefs.readlink(t, n) for n in names if await nodefs.kind(t, n) == "link"}


class Backup(_NodeStep):
    async def check(self) -> bool:
        return await nodefs.kind(self.t, self.paths.backup) in ("dir", "link", "file")

    async def execute(self) -> dict[str, Any] | None:
        p, t = self.paths, self.t
        await nodefs.mkdir(t, p.backups)
        if await nodefs.marker(t, p.home) == self.change.sha256:
            # already on this release: nothing to switch, and a revert must leave it so
            await nodefs.write_text(t, p.backup, f"already on {self.change.sha256}\n")
            return {"backup": None, "already": True}
        home = await nodefs.kind(t, p.home)
        if home == "link":
            await nodefs.link(t, p.backup, await nodefs.readlink(t, p.home))
        elif home == "dir":
            await nodefs.move(t, p.home, p.backup, self.ctx.options.command_timeout)
        else:
            raise StepError(f"{t.node}: the home {p.home} is {home}; nothing to back up",
                            retryable=False)
        pruned = await self._prune()
        return {"backup": p.backup, "pruned": pruned} if pruned else {"backup": p.backup}

    async def _prune(self) -> list[str]:
        """Keep the newest KEEP_BACKUPS backups; this workflow's is never removed."""
        p, t = self.paths, self.t
        names = sorted(n for n in await nodefs.listdir(t, p.backups)
                       if n.startswith(p.backup_prefix))
        mine = posixpath.basename(p.backup)
        old = [n for n in names[:-KEEP_BACKUPS] if n != mine]
        for name in old:
            await nodefs.remove(t, posixpath.join(p.backups, name))
        return old

    async def revert(self) -> dict[str, Any] | None:
        return await restore(self.ctx, self.t, self.paths)


class Switch(_NodeStep):
    async def check(self) -> bool:
        return await nodefs.marker(self.t, self.paths.home) == self.change.sha256

    async def execute(self) -> dict[str, Any] | None:
        p, t = self.paths, self.t
        backup = await nodefs.kind(t, p.backup)
        if backup == "link":
            await nodefs.point(t, p.home, p.link_target())
        elif backup == "dir" and await nodefs.kind(t, p.home) == "missing":
            await nodefs.move(t, p.release, p.home)
        else:
            raise StepError(f"{t.node}: cannot switch {p.home}: backup {p.backup} is "
                            f"{backup}; run `zdt revert {self.ctx.workflow}`", retryable=False)
        return {"home": self.change.version}

    async def revert(self) -> dict[str, Any] | None:
        return await restore(self.ctx, self.t, self.paths)


async def restore(ctx: Context, t: Transport, p: Paths) -> dict[str, Any] | None:
    """Put the backed-up home back, from wherever a switch (or a crash in it) left it."""
    sha = _change(ctx).sha256
    backup = await nodefs.kind(t, p.backup)
    home = await nodefs.kind(t, p.home)
    if backup == "link":
        target = await nodefs.readlink(t, p.backup)
        if home == "link" and await nodefs.readlink(t, p.home) == target:
            return None
        await nodefs.point(t, p.home, target)
        return {"home": target}
    if backup == "file":
        return None            # the node was on this release already: nothing to put back
    if backup == "dir":
        if home == "dir" and await nodefs.marker(t, p.home) == sha:
            await nodefs.remove(t, p.release)
            await nodefs.move(t, p.home, p.release)
            home = "missing"
        if home == "missing":
            await nodefs.move(t, p.backup, p.home, ctx.options.command_timeout)
            return {"home": "restored from " + p.backup}
        raise StepError(f"{t.node}: {p.home} is neither this workflow's release nor missing, "
                        f"and the backup {p.backup} is still there: the home changed under the "
                        "workflow; put it right by hand, then run the revert again",
                        retryable=False)
    if home == "missing" or await nodefs.marker(t, p.home) == sha:
        state = "missing" if home == "missing" else "on this workflow's release"
        raise StepError(f"{t.node}: {p.home} is {state} and its backup {p.backup} is gone "
                        "(pruned?): nothing to go back to", retryable=False)
    return None                                    # never backed up: the home is untouched

"""The application steps: `stage` copies a staged application to the node before the
drain; `apps` (offline) moves the deployed directory to its backup location and the
patched one into place; the revert moves them back, last first.

Two renames per application, each checked before it is done, so a crash between them is
finished (resume) or undone (revert) from what the node shows: the deployed location, the
backup location and the patched source, each present or not.
"""

from __future__ import annotations

import posixpath
import tempfile
from pathlib import Path
from typing import Any

from zdt import archive as archives
from zdt.adapters.transport import Transport
from zdt.appspec import AppChange
from zdt.errors import ConfigError, StepError
from zdt.steps import Context, StepSpec, nodefs

STAGED = ".zdt-staged"


class _AppsStep:
    def __init__(self, ctx: Context, spec: StepSpec) -> None:
        self.ctx, self.spec = ctx, spec
        self.t: Transport = ctx.transport(spec.node)
        self.apps = [a for a in ctx.apps if spec.node in a.nodes]

    def source(self, app: AppChange) -> str:
        """Where the new version is on the node just before it moves into place."""
        if app.mode == "stage":
            return f"{app.location}.zdt-new-{self.ctx.workflow}"
        return app.patched_location


class Stage(_AppsStep):
    async def check(self) -> bool:
        for app in (a for a in self.apps if a.mode == "stage"):
            staged = await nodefs.kind(self.t, posixpath.join(self.source(app), STAGED))
            moved = await nodefs.kind(self.t, app.backup_location) == "dir"
            if staged == "missing" and not moved:
                return False
        return True

    async def execute(self) -> dict[str, Any] | None:
        copied = []
        for app in (a for a in self.apps if a.mode == "stage"):
            await _copy_dir(self.t, app.patched_location, self.source(app),
                            self.ctx.options.command_timeout)
            copied.append(app.name)
        return {"staged": copied}

    async def revert(self) -> dict[str, Any] | None:
        for app in (a for a in self.apps if a.mode == "stage"):
            await nodefs.remove(self.t, self.source(app))
        return None


class Swap(_AppsStep):
    async def check(self) -> bool:
        for app in self.apps:
            kinds = await self._kinds(app)
            if kinds != ("dir", "dir", "missing"):
                return False
        return True

    async def _kinds(self, app: AppChange) -> tuple[str, str, str]:
        return (await nodefs.kind(self.t, app.location),
                await nodefs.kind(self.t, app.backup_location),
                await nodefs.kind(self.t, self.source(app)))

    async def execute(self) -> dict[str, Any] | None:
        for app in self.apps:
            location, backup, source = await self._kinds(app)
            if (location, backup, source) == ("dir", "dir", "missing"):
                continue                                  # done before a crash
            if location == "dir" and backup == "missing" and source == "dir":
                await nodefs.move(self.t, app.location, app.backup_location)
                location = "missing"
            if location == "missing" and source == "dir":
                await nodefs.move(self.t, self.source(app), app.location)
                continue
            raise StepError(f"{self.t.node}: application {app.name}: deployed {app.location} "
                            f"is {location}, backup {app.backup_location} is {backup}, new "
                            f"version {self.source(app)} is {source}: cannot move it into "
                            "place", retryable=False)
        return {"applications": [a.name for a in self.apps]}

    async def revert(self) -> dict[str, Any] | None:
        restored = []
        for app in reversed(self.apps):
            location, backup, source = await self._kinds(app)
            if backup != "dir":
                continue                                  # never moved: nothing to undo
            if location == "dir":
                if source != "missing":
                    raise StepError(f"{self.t.node}: application {app.name}: both "
                                    f"{app.location} and {self.source(app)} exist; move one "
                                    "aside by hand, then revert again", retryable=False)
                await nodefs.move(self.t, app.location, self.source(app))
            await nodefs.move(self.t, app.backup_location, app.location)
            restored.append(app.name)
        return {"restored": restored} if restored else None


async def _copy_dir(t: Transport, local: str, remote: str, timeout: float) -> None:
    """A local directory to a node path, as a tar copied and unpacked there; the marker
    written last says the copy is whole."""
    with tempfile.TemporaryDirectory(prefix="zdt-stage-") as tmp:
        bundle = Path(tmp) / "app.tar.gz"
        # the same rules as a home archive: no set-uid bits, devices, fifos, hard links or
        # links that lead out travel to the nodes (a StepError stops before any is touched)
        try:
            archives.bundle(Path(local), bundle)
        except ConfigError as exc:
            raise StepError(f"application dir {local}: {exc}", retryable=False) from exc
        scratch = remote + ".tar.gz"
        await nodefs.remove(t, remote)
        await nodefs.mkdir(t, remote)
        await t.put(str(bundle), scratch)
        await t.run(["tar", "-xzf", t.path(scratch), "-C", t.path(remote), "--no-same-owner"],
                    timeout=timeout)
        await nodefs.remove(t, scratch)
        await nodefs.write_text(t, posixpath.join(remote, STAGED), "staged\n")

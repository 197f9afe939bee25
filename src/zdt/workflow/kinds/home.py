"""A home rollout: every targeted node moved onto a patched installation (WebLogic's
Oracle home), from a verified archive, one node at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from zdt import archive as archives
from zdt import nodepath
from zdt.domain import Domain
from zdt.errors import ConfigError
from zdt.steps import HomeChange, home, servers
from zdt.workflow.kinds import Field, Inputs, Kind, register
from zdt.workflow.request import RolloutRequest

ARCHIVE = Field("archive", "The archive of the patched home (`zdt archive create`).",
                type="path", metavar="PATH")
BACKUP_DIR = Field("backup_dir", "Node dir for the backups of the home [default: beside "
                   "the home].")
ROLLBACK = Field("rollback", "The archive is an older release (recorded and shown).",
                 type="bool", default=False)
STEPS = {**servers.AROUND_CHANGE, "extract": home.Extract, "backup": home.Backup,
         "switch": home.Switch}


class Home(Kind):
    name = "home"
    order = 1
    help = "Move every targeted node onto the patched home in ARCHIVE, one node at a time."
    fields = (
        replace(ARCHIVE, required=True), BACKUP_DIR, ROLLBACK,
        Field("session_compatible", "Whether the new version can serve sessions of the old "
              "one.", type="bool", default=True))
    visit_steps = ("hook:each-node", "extract", "drain", "stop", "hook:offline-before-update",
                   "backup", "switch", "hook:offline-after-update", "start", "health",
                   "hook:after-server-start", "ready")
    steps = STEPS
    node_wide = True
    changes_nodes = True

    def validate(self, request: RolloutRequest) -> None:
        super().validate(request)
        validate_backup_dir(request)
        if not request.get("session_compatible", True) and request.shutdown_timeout is None:
            raise ConfigError("--no-session-compatible: the new version cannot serve old "
                              "sessions, so give --shutdown-timeout (how long sessions may "
                              "run on before their server stops)")

    def normalised(self, request: RolloutRequest) -> RolloutRequest:
        return normalised_backup_dir(request)

    def prepare(self, request: RolloutRequest, domain: Domain) -> Inputs:
        return prepare_archive(request, domain)

    def restore(self, recorded: Mapping[str, Any]) -> Inputs:
        return restore_change(recorded)


def validate_backup_dir(request: RolloutRequest) -> None:
    if request.get("backup_dir") is not None:
        nodepath.option("--backup-dir", request.get("backup_dir"), "an absolute node path")


def normalised_backup_dir(request: RolloutRequest) -> RolloutRequest:
    given = request.get("backup_dir")
    return request if given is None else request.with_params(
        backup_dir=nodepath.normalise(given))


def prepare_archive(request: RolloutRequest, domain: Domain) -> Inputs:
    """The archive verified (exit 2 naming the member) and the backup dir checked."""
    backup_dir = request.get("backup_dir")
    if backup_dir is not None and nodepath.inside(backup_dir, domain.domain.home):
        raise ConfigError(f"--backup-dir {backup_dir}: inside the home {domain.domain.home}; "
                          "a backup must live beside it")
    archive = request.get("archive")
    if not archive:
        return Inputs()
    manifest = archives.verify(Path(archive))
    change = HomeChange(str(Path(archive).resolve()), manifest.sha256, manifest.version,
                        backup_dir, bool(request.get("rollback", False)))
    return Inputs(change=change, manifest=manifest)


def restore_change(recorded: Mapping[str, Any]) -> Inputs:
    change = recorded.get("change")
    return Inputs(change=HomeChange(**change) if change else None)


register(Home())

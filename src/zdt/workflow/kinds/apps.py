"""An apps rollout: new application versions moved into place on every targeted node
(WebLogic's stage, nostage and external_stage), one node at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from zdt import appspec
from zdt.domain import Domain
from zdt.steps import apps, servers
from zdt.workflow.kinds import Field, Inputs, Kind, register
from zdt.workflow.request import RolloutRequest

APPS = Field("apps", "The apps.json spec.", type="path", metavar="PATH")

STEPS = {**servers.AROUND_CHANGE, "stage": apps.Stage, "apps": apps.Swap}

class Apps(Kind):
    name = "apps"
    order = 3
    help = "Move new application versions into place (stage, nostage, external_stage)."
    fields = (replace(APPS, required=True),)
    visit_steps = ("hook:each-node", "stage", "drain", "stop", "hook:offline-before-update",
                   "apps", "hook:offline-after-update", "start", "health",
                   "hook:after-server-start", "ready")
    steps = STEPS
    node_wide = True
    changes_nodes = True

    def prepare(self, request: RolloutRequest, domain: Domain) -> Inputs:
        return Inputs(apps=load_apps(request, domain))

    def restore(self, recorded: Mapping[str, Any]) -> Inputs:
        return Inputs(apps=restore_apps(recorded))


def load_apps(request: RolloutRequest, domain: Domain) -> tuple[appspec.AppChange, ...]:
    given = request.get("apps")
    return appspec.load(Path(given), domain) if given else ()


def restore_apps(recorded: Mapping[str, Any]) -> tuple[appspec.AppChange, ...]:
    return tuple(appspec.AppChange(**{**a, "nodes": tuple(a["nodes"])})
                 for a in recorded.get("app_changes") or ())


register(Apps())

"""A combined update: a patched home, a new runtime and new applications in one visit per
node, so each node is out of rotation once, not three times. Each part is the one of its
own kind; a part not asked for leaves its steps out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from zdt import nodepath
from zdt.domain import Domain
from zdt.errors import ConfigError
from zdt.workflow.kinds import Inputs, Kind, apps, home, register, runtime
from zdt.workflow.plan import Shape
from zdt.workflow.request import RolloutRequest

# what each part brings to a visit, and the request field that asks for it
PARTS = {"archive": frozenset({"extract", "backup", "switch"}),
         "runtime_home": frozenset({"rewrite"}), "apps": frozenset({"stage", "apps"})}

STEPS = {**home.STEPS, **runtime.Runtime.steps, **apps.Apps.steps}

class Update(Kind):
    name = "update"
    order = 4
    help = "Home, runtime and applications in one workflow: each node is out of rotation once."
    fields = (replace(home.ARCHIVE, help="A patched home's archive."),
              replace(runtime.RUNTIME_HOME, help="A new runtime's path."),
              replace(apps.APPS, help="An apps.json spec."),
              home.BACKUP_DIR, home.ROLLBACK)
    visit_steps = ("hook:each-node", "extract", "stage", "drain", "stop",
                   "hook:offline-before-update", "backup", "switch", "rewrite", "apps",
                   "hook:offline-after-update", "start", "health", "hook:after-server-start",
                   "ready")
    steps = STEPS
    node_wide = True
    changes_nodes = True

    def validate(self, request: RolloutRequest) -> None:
        super().validate(request)
        if not any(request.get(part) for part in PARTS):
            raise ConfigError("an update needs at least one of --archive, --runtime-home and "
                              "--apps")
        if request.get("rollback", False) and request.get("apps"):
            raise ConfigError("--rollback cannot be combined with an application update: "
                              "roll the applications back with their own apps.json")
        if request.get("runtime_home") is not None:
            nodepath.option("--runtime-home", request.get("runtime_home"), runtime.WHAT,
                            in_scripts=True)
        home.validate_backup_dir(request)

    def normalised(self, request: RolloutRequest) -> RolloutRequest:
        return runtime.normalised_runtime(home.normalised_backup_dir(request))

    def shape(self, request: RolloutRequest) -> Shape:
        omit = frozenset().union(*(steps for part, steps in PARTS.items()
                                   if not request.get(part)))
        return Shape(self.name, self.visit_steps, self.node_wide, omit)

    def prepare(self, request: RolloutRequest, domain: Domain) -> Inputs:
        inputs = home.prepare_archive(request, domain)
        if request.get("runtime_home"):
            runtime.require_runtime_section(domain)
        return replace(inputs, apps=apps.load_apps(request, domain))

    def restore(self, recorded: Mapping[str, Any]) -> Inputs:
        return replace(home.restore_change(recorded), apps=apps.restore_apps(recorded))


register(Update())

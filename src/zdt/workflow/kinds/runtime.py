"""A runtime rollout: every targeted node's scripts pointed at a new runtime (WebLogic's
Java home), rewritten line by line, one node at a time."""

from __future__ import annotations

from dataclasses import replace

from zdt import nodepath
from zdt.domain import Domain
from zdt.errors import ConfigError
from zdt.steps import runtime, servers
from zdt.workflow.kinds import Field, Inputs, Kind, register
from zdt.workflow.request import RolloutRequest

RUNTIME_HOME = Field("runtime_home", "The new runtime's path, the same on every node.")
WHAT = "the new runtime's absolute path, the same on every node"

STEPS = {**servers.AROUND_CHANGE, "rewrite": runtime.Rewrite}

class Runtime(Kind):
    name = "runtime"
    order = 2
    help = "Point every targeted node's scripts at a new runtime (WebLogic's Java home)."
    fields = (replace(RUNTIME_HOME, required=True),)
    visit_steps = ("hook:each-node", "drain", "stop", "hook:offline-before-update",
                   "rewrite", "hook:offline-after-update", "start", "health",
                   "hook:after-server-start", "ready")
    steps = STEPS
    node_wide = True
    changes_nodes = True

    def validate(self, request: RolloutRequest) -> None:
        super().validate(request)
        nodepath.option("--runtime-home", request.get("runtime_home", ""), WHAT,
                        in_scripts=True)

    def normalised(self, request: RolloutRequest) -> RolloutRequest:
        return normalised_runtime(request)

    def prepare(self, request: RolloutRequest, domain: Domain) -> Inputs:
        require_runtime_section(domain)
        return Inputs()


def normalised_runtime(request: RolloutRequest) -> RolloutRequest:
    given = request.get("runtime_home")
    return request if given is None else request.with_params(
        runtime_home=nodepath.normalise(given))


def require_runtime_section(domain: Domain) -> None:
    if domain.runtime is None:
        raise ConfigError(f"{domain.source}: a runtime rollout needs a [runtime] section (the "
                          "runtime in use and the globs of the scripts that name it)")


register(Runtime())

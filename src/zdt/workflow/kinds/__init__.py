"""Workflow kinds: one module per kind, each declaring everything the kind is.

A kind says which fields its request takes (the CLI builds its command from them, the
console its form), how they are checked, what it prepares before anything runs (an archive
verified, an apps spec read: journaled with the request), the steps of one node visit and
which step object does each, and whether its change reaches every server of a node.

A module of this package makes a `Kind` and passes it to `register`; `get` imports the
package's modules the first time it is asked, so adding a kind is adding a module. A kind
defined elsewhere (a plugin, a test) registers the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from zdt.errors import ConfigError
from zdt.steps import HomeChange, StepClass
from zdt.steps.analysis import Analyse
from zdt.steps.hooks import Hook
from zdt.workflow.plan import Shape
from zdt.workflow.request import check_type

if TYPE_CHECKING:
    from zdt.adapters import Adapters
    from zdt.appspec import AppChange
    from zdt.archive import Manifest
    from zdt.domain import Domain
    from zdt.workflow.request import RolloutRequest


@dataclass(frozen=True)
class Field:
    """One field of a kind's request: `--name-with-dashes` on the command line."""

    name: str
    help: str
    type: str = "str"        # str | bool | path (a file on this machine) | list (comma list)
    required: bool = False
    default: Any = None
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Note:
    """What a kind found on the nodes while narrowing a request: shown by preview,
    journaled with the workflow (an event of kind "note")."""

    message: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Inputs:
    """What a kind prepared from its request before anything runs. `change` and `apps` are
    journaled with the request; the manifest is what was verified (for preview)."""

    change: HomeChange | None = None
    apps: tuple[AppChange, ...] = ()
    manifest: Manifest | None = None


class Kind:
    """A kind of workflow. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100           # where its command is listed
    help: ClassVar[str] = ""             # one line: the CLI command's help
    fields: ClassVar[tuple[Field, ...]] = ()
    visit_steps: ClassVar[tuple[str, ...]] = ()   # `hook:PHASE` steps: where hooks are named
    steps: ClassVar[Mapping[str, StepClass]] = {}
    node_wide: ClassVar[bool] = False    # the change reaches every server of the node
    changes_nodes: ClassVar[bool] = False   # it changes node files (a revert may strand)

    def validate(self, request: RolloutRequest) -> None:
        """The kind's own checks, after the common ones (ConfigError: exit 2)."""
        for name in sorted(set(request.params) - self.field_names()):
            known = ", ".join(f.option for f in self.fields) or "none"
            raise ConfigError(f"--{name.replace('_', '-')}: `zdt rollout {self.name}` has no "
                              f"such option (its own: {known})")
        for f in self.fields:
            value = request.params.get(f.name)
            if f.type == "list":
                if value is not None and (not isinstance(value, list | tuple) or not all(
                        isinstance(v, str) for v in value)):
                    raise ConfigError(f"{f.option}: give names, comma-separated")
            else:
                check_type(f.name, value, "bool" if f.type == "bool" else "str", True)
            if f.required and request.get(f.name) in (None, "", ()):
                raise ConfigError(f"{f.option}: required by `zdt rollout {self.name}` "
                                  f"({f.help})")

    def normalised(self, request: RolloutRequest) -> RolloutRequest:
        """One spelling of every value, journaled as such."""
        return request

    def with_defaults(self, request: RolloutRequest) -> RolloutRequest:
        """Every field the request leaves out, at its default (journaled as such)."""
        missing = {f.name: f.default for f in self.fields
                   if f.default is not None and request.params.get(f.name) is None}
        return request.with_params(**missing) if missing else request

    def shape(self, request: RolloutRequest) -> Shape:
        """What the plan needs from the kind for this request."""
        return Shape(self.name, self.visit_steps, self.node_wide)

    def narrows(self, request: RolloutRequest) -> bool:
        """Whether this request asks the nodes before it is planned (`narrow`)."""
        return False

    async def narrow(self, request: RolloutRequest, domain: Domain, adapters: Adapters
                     ) -> tuple[RolloutRequest, tuple[Note, ...]]:
        """The request as the nodes make it (its targets narrowed), with what was found;
        NothingToDo when nothing is left. Reads only."""
        return request, ()

    def prepare(self, request: RolloutRequest, domain: Domain) -> Inputs:
        """Read and verify the request's inputs against the domain; no side effect."""
        return Inputs()

    def restore(self, recorded: Mapping[str, Any]) -> Inputs:
        """The prepared inputs back from the journal (for resume and revert)."""
        return Inputs()

    def step(self, name: str) -> StepClass:
        if name.startswith("hook:"):
            return Hook
        if name == "analysis":
            return Analyse
        if name not in self.steps:
            raise ConfigError(f"no step {name!r} in a {self.name} workflow")
        return self.steps[name]

    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


_KINDS: dict[str, Kind] = {}
_loaded = False
_loading = False


def register(kind: Kind) -> Kind:
    """Add a kind; a second kind under a name taken (zdt's own included) is refused."""
    _load()
    known = _KINDS.get(kind.name)
    if not kind.name or (known is not None and type(known) is not type(kind)):
        raise ConfigError(f"workflow kind {kind.name!r}: no name, or a name taken by "
                          f"{type(known).__module__}")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind registered from outside this package (a plugin being unloaded)."""
    _KINDS.pop(name, None)


def _load() -> None:
    """zdt's own kinds, imported once (their modules register them as they load)."""
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    finally:
        _loading = False


def get(name: str) -> Kind:
    _load()
    if name not in _KINDS:
        raise ConfigError(f"unknown rollout kind {name!r} (known: {', '.join(names())})")
    return _KINDS[name]


def every() -> list[Kind]:
    _load()
    return sorted(_KINDS.values(), key=lambda k: (k.order, k.name))


def names() -> list[str]:
    return [k.name for k in every()]


def changes_nodes(name: str) -> bool:
    """Whether a journaled workflow of this kind changed node files (an unknown kind, from
    a newer zdt, is taken to have)."""
    _load()
    kind = _KINDS.get(name)
    return kind is None or kind.changes_nodes

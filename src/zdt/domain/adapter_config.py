"""`[lb]` and `[services]`: each kind's fields belong to the module that implements it.

An implementation module (`zdt/lb/haproxy.py`, `zdt/services/systemd.py`, …) declares a
pydantic model for its section, derived from `LbConfig` or `ServicesConfig`, and
registers it under its `kind` with the factory that builds the adapter from it:

    register("lb", HAProxyConfig, create)      # HAProxyConfig.kind: Literal["haproxy"]

Loading a domain reads the section's `kind` and validates the section against that
model (errors name file, line and field as for any other section). The implementations
are found by importing the modules of the packages named in `PACKAGES` the first time a
kind is looked up; a kind defined elsewhere (a plugin, a test) registers the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from zdt import template

PACKAGES = {"lb": "zdt.adapters.lb", "services": "zdt.adapters.services"}
DEFAULT_KIND = {"lb": "haproxy", "services": "supervisor"}
PLACEHOLDERS = ("server", "node", "home")


class AdapterConfig(BaseModel):
    """A section that chooses an implementation by its `kind`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    # fields naming files on this machine, resolved against the domain file's dir
    local_paths: ClassVar[tuple[str, ...]] = ()


class LbConfig(AdapterConfig):
    """`[lb]`: the load balancer in front of the servers."""


class ServicesConfig(AdapterConfig):
    """`[services]`: what starts and stops the servers on each node (the Node Manager)."""

    sudo: bool = False      # commands the manager runs on the node are prefixed `sudo -n`

    def process_name(self, server: str, node: str) -> str | None:
        """The manager's name for a server's process, which two servers of one node may not
        share; None when the manager has no such name."""
        return None


C = TypeVar("C", bound=AdapterConfig)
Factory = Callable[..., Any]      # (config, domain, transports) → the adapter

_models: dict[str, dict[str, tuple[type[AdapterConfig], Factory]]] = {s: {} for s in PACKAGES}
_discovered = False


def register(section: str, model: type[C], factory: Factory) -> type[C]:
    kind = _kind_of(model)
    known = _models[section].get(kind)
    if known is not None and known[0] is not model:
        raise ValueError(f"[{section}] kind {kind!r} is registered twice")
    _models[section][kind] = (model, factory)
    return model


def unregister(section: str, kind: str) -> None:
    """Forget a kind registered from outside zdt's packages (a plugin being unloaded)."""
    _models[section].pop(kind, None)


def _kind_of(model: type[AdapterConfig]) -> str:
    """The one value a model's `kind: Literal["…"]` allows."""
    annotation = model.model_fields["kind"].annotation
    values: tuple[object, ...] = getattr(annotation, "__args__", ())
    if len(values) != 1 or not isinstance(values[0], str):
        raise ValueError(f"{model.__name__}: `kind` must be a Literal of one name")
    return values[0]


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for package in PACKAGES.values():
        root = importlib.import_module(package)
        for module in pkgutil.iter_modules(root.__path__):
            importlib.import_module(f"{package}.{module.name}")
    _discovered = True          # only once every module is in: a failed import is retried


def lookup(section: str, kind: str) -> tuple[type[AdapterConfig], Factory] | None:
    _discover()
    return _models[section].get(kind)


def fields_of(section: str, kind: str) -> frozenset[str]:
    """The keys a kind's section takes (none for an unknown kind)."""
    found = lookup(section, kind)
    return frozenset(found[0].model_fields) if found else frozenset()


def kinds(section: str) -> list[str]:
    _discover()
    return sorted(_models[section])


def argv_template(v: tuple[str, ...]) -> tuple[str, ...]:
    """A command as argv items, each with {server}/{node}/{home} placeholders at most."""
    for item in v:
        template.check(item, PLACEHOLDERS)
    return v


def name_template(v: str) -> str:
    """A process or unit name with {server}/{node} placeholders at most."""
    template.check(v, ("server", "node"))
    return v

"""The step library. Each step: check / execute / revert, idempotent.

`check()` says whether the step's effect is already in place, so a step that a crash
interrupted is re-run safely on resume: the engine calls execute only when check is False.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from zdt.adapters.lb import LoadBalancer
from zdt.adapters.services import ServiceManager
from zdt.adapters.transport import Transport
from zdt.appspec import AppChange
from zdt.domain import Domain, Server
from zdt.errors import StepError
from zdt.waiting import Timing

if TYPE_CHECKING:
    from zdt.witness import Witness

T = TypeVar("T")


async def each(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run coroutines together; if one fails, cancel the others and raise its error.

    Unlike asyncio.gather, no sibling is left running to overlap a retry or a revert, and
    the caller sees the first StepError itself, not an ExceptionGroup.
    """
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(c)) for c in coros]
    except BaseExceptionGroup as eg:
        first = _first_leaf(eg)
        raise first from None
    return [t.result() for t in tasks]


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


def _first_leaf(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    stack: list[BaseException] = [eg]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    return next((e for e in leaves if isinstance(e, StepError)), leaves[0])


@dataclass(frozen=True)
class StepSpec:
    """One step of a plan: an action on some servers of one node."""

    index: int
    group: int       # which node visit this step belongs to (0 = the first node worked on)
    node: str
    name: str
    servers: tuple[str, ...]
    batch: int = 0   # steps of one batch run side by side, node visit by node visit


class Step(Protocol):
    async def check(self) -> bool:
        """True when the step's effect is already in place."""
        ...

    async def execute(self) -> dict[str, Any] | None:
        """Do the step; may return facts worth journaling (sessions left, pids...)."""
        ...

    async def revert(self) -> dict[str, Any] | None:
        """Undo the step's effect; safe to call when it was never (fully) executed."""
        ...


StepClass = Callable[["Context", StepSpec], Step]


@dataclass(frozen=True)
class Options:
    """What the operator set for this workflow (timeouts in seconds)."""

    shutdown_timeout: float = 30.0
    start_timeout: float = 30.0
    health_timeout: float = 30.0
    ready_timeout: float = 30.0
    command_timeout: float = 600.0     # a command on a node: tar, mv, a hook


@dataclass(frozen=True)
class HomeChange:
    """What a home rollout puts in place: a verified archive of a patched home."""

    archive: str                # local path of the .tar.gz (its sidecar manifest beside it)
    sha256: str
    version: str
    backup_dir: str | None = None   # node path; None: beside the home
    rollback: bool = False          # the archive is an older release (recorded and shown)


@dataclass(frozen=True)
class Context:
    """Everything a step may use: the domain and the adapters, chosen by the caller."""

    domain: Domain
    services: ServiceManager
    lb: LoadBalancer
    options: Options = field(default_factory=Options)
    timing: Timing = field(default_factory=Timing)
    transports: Mapping[str, Transport] = field(default_factory=dict)
    workflow: str = ""
    change: HomeChange | None = None
    runtime_home: str | None = None     # a runtime rollout's new runtime (node path)
    apps: tuple[AppChange, ...] = ()    # an apps rollout's applications
    witness: Witness | None = None      # reads the LB's counters at each drain and ready
    params: Mapping[str, Any] = field(default_factory=dict)   # the kind's request fields

    def servers(self, names: tuple[str, ...]) -> list[Server]:
        return [self.domain.server(n) for n in names]

    def transport(self, node: str) -> Transport:
        return self.transports[node]

"""Plans of a kind's plain request, for tests of the plan and the engine."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zdt.domain import Domain
from zdt.workflow import kinds, plan
from zdt.workflow.request import RolloutRequest


def build(kind: str, domain: Domain, targets: Iterable[str], **options: Any) -> plan.Plan:
    targets = tuple(targets)
    shape = kinds.get(kind).shape(RolloutRequest.of(kind, targets))
    return plan.build(shape, domain, targets, **options)

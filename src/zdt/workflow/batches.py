"""Batches of node visits, and the capacity guard that bounds them. Pure: data in, data out.

`--batch` says how many node visits run side by side:

* `N`: N node visits per batch;
* `P%`: at most P % of each cluster's nodes (rounded down, at least one node);
* a ramp, `1,2,25%`: one entry per batch, the last one repeated (a canary of one node,
  then two, then a quarter of each cluster).

The admin server's visit always goes first and alone; the ramp counts from the visit
after it. A `--pause-after N` point is never inside a batch: the batch is cut there.

`--min-in-service` (`P%` or a count `N`, default 50%) is what the guard keeps: while a
batch is out, every cluster keeps at least that many of its servers behind the load
balancer in rotation. The plan refuses (exit 3) a batch that would break it, with the
arithmetic; preview shows the same arithmetic for every cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from zdt.errors import ConfigError, PreconditionError

_ENTRY = re.compile(r"(?P<n>\d{1,6})(?P<pct>%?)")


@dataclass(frozen=True)
class Size:
    """A count of nodes or servers (`count`), or a percentage of them (`percent`)."""

    count: int | None = None
    percent: int | None = None

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


def parse_batch(text: str) -> tuple[Size, ...]:
    """`--batch`: `N`, `P%` or a comma-separated ramp of them (ConfigError: exit 2)."""
    entries = [e.strip() for e in str(text).split(",")]
    if not entries or any(not e for e in entries):
        raise ConfigError(f"--batch: {text!r} is not N, P% or a ramp like 1,2,25%")
    ramp = tuple(_size("--batch", e, low=1) for e in entries)
    if len(ramp) > 100:
        raise ConfigError(f"--batch: a ramp of {len(ramp)} entries; give at most 100")
    return ramp


def parse_minimum(text: str) -> Size:
    """`--min-in-service`: `P%` (0–100) or a count of servers."""
    return _size("--min-in-service", str(text).strip(), low=0)


def _size(option: str, entry: str, *, low: int) -> Size:
    m = _ENTRY.fullmatch(entry)
    if m is None:
        raise ConfigError(f"{option}: {entry!r} is not a whole number or a percentage "
                          "like 25%")
    n = int(m["n"])
    if m["pct"]:
        if not low <= n <= 100:
            raise ConfigError(f"{option}: {entry} is not a percentage between {low} and 100")
        return Size(percent=n)
    if n < low:
        raise ConfigError(f"{option}: {entry} is less than {low}")
    return Size(count=n)


def required_in_service(in_lb: int, minimum: Size) -> int:
    """How many of a cluster's `in_lb` servers (those behind the load balancer) must stay
    in rotation while a batch is out: at least one, and the minimum asked for.

    Worked example: a cluster of 8 servers behind the LB, 2 per node, default 50 %:
    ceil(50 % × 8) = 4 must stay in rotation, so 8 − 4 = 4 may be out at once — a batch of
    up to 2 nodes. With `--min-in-service 75%`: ceil(6) = 6 stay, 2 may be out (1 node).
    With 3 servers: ceil(1.5) = 2 stay, 1 may be out. With 1 server: max(1, ceil(0.5)) = 1
    stays, none may be out: such a cluster cannot be updated without downtime. A count
    larger than the cluster (`--min-in-service 10` for 8) keeps all 8: none may be out.
    """
    if minimum.percent is not None:
        wanted = math.ceil(minimum.percent * in_lb / 100)
    else:
        wanted = minimum.count or 0
    return min(in_lb, max(1, wanted)) if in_lb else 0


def may_be_out(in_lb: int, minimum: Size) -> int:
    """The budget: how many of the cluster's servers may be out of rotation at once."""
    return in_lb - required_in_service(in_lb, minimum)


@dataclass(frozen=True)
class Visit:
    """A node visit as the batching sees it: which clusters' servers it takes out."""

    group: int
    node: str
    clusters: frozenset[str]          # clusters with a server in this visit ("" for none)
    out: dict[str, int]               # per cluster: servers drained (behind the LB)
    admin: bool = False               # holds the admin server: goes first and alone


def form(visits: Sequence[Visit], ramp: Sequence[Size], nodes_of: dict[str, int],
         pause_after: int | None = None) -> list[list[int]]:
    """Visits (in plan order) → batches of their groups. `nodes_of`: each cluster's count
    of nodes in the domain (the base of a percentage)."""
    batches: list[list[int]] = []
    rest = list(visits)
    entry = 0
    while rest:
        if rest[0].admin:
            take = 1
        else:
            take = _take(rest, ramp[min(entry, len(ramp) - 1)], nodes_of)
            entry += 1
        if pause_after is not None:
            done = sum(len(b) for b in batches)
            if done < pause_after < done + take:
                take = pause_after - done
        batches.append([v.group for v in rest[:take]])
        rest = rest[take:]
    return batches


def _take(rest: Sequence[Visit], size: Size, nodes_of: dict[str, int]) -> int:
    """How many of the next visits one batch of `size` holds (never the admin's)."""
    limit = next((i for i, v in enumerate(rest) if v.admin), len(rest))
    if size.count is not None:
        return max(1, min(size.count, limit))
    assert size.percent is not None
    quota = {c: max(1, size.percent * n // 100) for c, n in nodes_of.items()}
    taken: dict[str, int] = {}
    count = 0
    for v in rest[:limit]:
        if count and any(taken.get(c, 0) + 1 > quota.get(c, 1) for c in v.clusters):
            break
        for c in v.clusters:
            taken[c] = taken.get(c, 0) + 1
        count += 1
    return max(1, count)


def label(cluster: str) -> str:
    """How a cluster is named in messages; "" groups the servers in no cluster."""
    return f"cluster {cluster}" if cluster else "no cluster"


@dataclass(frozen=True)
class Budget:
    """The capacity arithmetic of one cluster, as preview shows it."""

    cluster: str
    in_lb: int                 # servers behind the load balancer
    required: int              # that stay in rotation
    may_be_out: int
    largest_out: int           # servers the largest batch takes out
    largest_batch: int         # which batch (1-based)

    def line(self, minimum: Size) -> str:
        return (f"{label(self.cluster)}: {self.in_lb} server(s) behind the load balancer; "
                f"--min-in-service {minimum} keeps {self.required} in rotation, so at most "
                f"{self.may_be_out} may be out at once; the largest batch (batch "
                f"{self.largest_batch}) takes {self.largest_out} out")


def guard(batches: Sequence[Sequence[int]], visits: dict[int, Visit], in_lb: dict[str, int],
          minimum: Size, nodes: Sequence[str], *, refuse: bool = True) -> tuple[Budget, ...]:
    """Every cluster's budget against every batch; PreconditionError (exit 3) naming the
    first batch that would break one, with the arithmetic (unless `refuse` is off: the
    operator allowed downtime). `nodes`: each group's node."""
    budgets = []
    for cluster, total in sorted(in_lb.items()):
        if not total:
            continue
        outs = [sum(visits[g].out.get(cluster, 0) for g in b) for b in batches]
        largest = max(range(len(outs)), key=lambda i: outs[i]) if outs else 0
        budget = Budget(cluster, total, required_in_service(total, minimum),
                        may_be_out(total, minimum), outs[largest] if outs else 0, largest + 1)
        for number, (batch, out) in enumerate(zip(batches, outs, strict=True), start=1):
            if refuse and out > budget.may_be_out:
                where = ", ".join(nodes[g] for g in batch)
                raise PreconditionError(
                    f"batch {number} ({where}) would take {out} of the {total} server(s) "
                    f"of {label(cluster)} behind the load balancer out of rotation, leaving "
                    f"{total - out}; --min-in-service {minimum} keeps at least "
                    f"{budget.required}, so at most {budget.may_be_out} may be out at once. "
                    "Use a smaller --batch, a lower --min-in-service, or --allow-downtime")
        budgets.append(budget)
    return tuple(budgets)

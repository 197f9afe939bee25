"""The analysis step: after a visit's ready, the metric gate judges its servers
(zdt.analysis). A failed verdict takes them out of rotation at once, so that a bad release
answers no more requests than the gate needed to see it, counts what they answered, and
fails the step (not retried: the same release would be judged the same; auto-revert
follows). Every check and the verdict are journaled.
"""

from __future__ import annotations

from typing import Any

from zdt.analysis import Check, Subject, judge
from zdt.analysis.preflight import providers
from zdt.domain import Domain
from zdt.domain.analysis_config import Analysis
from zdt.errors import StepError
from zdt.steps import lb
from zdt.steps.servers import ServersStep


def settings_of(domain: Domain) -> Analysis:
    """The domain's [analysis], or the defaults (asked for with --analysis alone)."""
    return domain.analysis if domain.analysis is not None else Analysis()


class Analyse(ServersStep):
    async def check(self) -> bool:
        return False           # a verdict is never "already in place": judged each time

    async def revert(self) -> dict[str, Any] | None:
        return None            # it changed nothing; the ready's revert takes the node out

    def subject(self, settings: Analysis) -> Subject:
        """The visit's servers, against their clusters' servers behind the LB that are in
        no visit of this batch or an earlier one (not yet updated)."""
        updated = set(self.spec.servers)
        w = self.ctx.witness
        if w is not None:
            updated.update(n for r in w.journal.steps(w.wid) if r.batch <= self.spec.batch
                           for n in r.servers)
        mine = peers(self.ctx.domain, self.spec.servers)
        return Subject(self.spec.node, tuple(s.backend_name for s in self.servers),
                       tuple(s.backend_name for s in self.ctx.domain.servers
                             if s.lb and s.name in mine and s.name not in updated),
                       settings.interval, self.ctx.workflow)

    async def execute(self) -> dict[str, Any] | None:
        ctx, w = self.ctx, self.ctx.witness
        settings = settings_of(ctx.domain)
        if not await lb.in_rotation(ctx, self.servers):   # resumed after a failed verdict:
            if w is not None:                             # the operator asked for a new one
                w.journal.event(w.wid, "warning", f"{self.spec.node}: back in rotation to "
                                "be judged again (resumed after the gate failed it)",
                                step=self.spec.index)
            await lb.ready(ctx, self.servers)
        subject = self.subject(settings)
        found = providers(settings, ctx.lb, w.before(self.spec.group) if w else None)

        def journaled(check: Check) -> None:
            if w is not None:
                w.journal.event(w.wid, "analysis-check", f"{self.spec.node}: check "
                                f"{check.number}: " + "; ".join(m.line() for m in
                                                                 check.measurements),
                                step=self.spec.index)

        verdict = await judge(found, subject, settings, ctx.timing.sleep, journaled)
        if verdict.verdict == "failed":     # no more bad answers while the revert begins
            await lb.drain(ctx, self.servers)
        if w is not None:
            verdict.served = await w.served(self.spec.group, subject.servers)
            w.journal.event(w.wid, "analysis", verdict.sentence(), step=self.spec.index,
                            data=verdict.data())
        if verdict.verdict == "failed":
            raise StepError(f"{verdict.sentence()}. Its servers were taken out of rotation; "
                            f"the checks are in the journal (`zdt status {ctx.workflow}`); "
                            "the thresholds are [analysis] in the domain file, and "
                            "--no-analysis rolls out without the gate", retryable=False)
        return {"analysis": verdict.verdict, "checks": len(verdict.checks)}


def peers(domain: Domain, names: tuple[str, ...]) -> set[str]:
    """The servers of every cluster the named servers belong to (servers in no cluster
    are one group of their own): what they are compared with."""
    clustered = {n for c in domain.clusters for n in c.servers}
    groups = [set(c.servers) for c in domain.clusters if set(names) & set(c.servers)]
    if set(names) - clustered:
        groups.append({s.name for s in domain.servers} - clustered)
    return set().union(*groups)

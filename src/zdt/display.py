"""Live progress of a workflow on a terminal: one row per node visit, one column per step.

Rich's Live display when stdout is a terminal; one plain line per step change otherwise;
nothing at all with --json (the caller passes no display).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.live import Live
from rich.table import Table

from zdt.terminal import SafeConsole, styled
from zdt.workflow.journal import StepRecord
from zdt.workflow.plan import Plan, StepSpec

MARKS = {"pending": ("·", "dim"), "running": ("…", "yellow"), "done": ("✓", "green"),
         "failed": ("✗", "red"), "reverting": ("↺", "magenta"), "reverted": ("↩", "magenta")}


class Progress:
    def __init__(self, plan: Plan, console: SafeConsole | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self.console = console or SafeConsole()
        self.clock = clock
        self.states = {s.index: "pending" for s in plan.steps}
        self.began: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.live: Live | None = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=8,
                             get_renderable=self._table)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, record: StepRecord, state: str) -> None:
        self.states[record.index] = state
        now = self.clock()
        self.began.setdefault(record.group, now)
        if record.name == self.plan.for_group(record.group)[-1].name and state == "done":
            self.finished[record.group] = now
        if self.live is None and state != "running":
            self.console.print(f"{record.node:<12} {record.name:<8} {state:<9} "
                               f"{','.join(record.servers)}")

    def _table(self) -> Table:
        """Narrow enough for 80 columns: one mark per step, then the step under way."""
        table = Table("batch", "node", "servers", "steps", "now", "elapsed",
                      title=f"{self.plan.kind} of {', '.join(self.plan.targets)}",
                      title_justify="left")
        batch_of = {g: n for n, b in enumerate(self.plan.batches, start=1) for g in b}
        for group, node in enumerate(self.plan.nodes):
            steps = self.plan.for_group(group)
            servers = sorted({x for s in steps for x in s.servers})
            marks = styled(*(part for s in steps for part in (MARKS[self.states[s.index]], " ")))
            table.add_row(str(batch_of.get(group, group + 1)), node, ", ".join(servers), marks,
                          self._now(steps), self._elapsed(group))
        return table

    def _now(self, steps: list[StepSpec]) -> str:
        """The step under way, else the last one that changed (a failure stays in view)."""
        busy = [s for s in steps if self.states[s.index] in ("running", "reverting", "failed")]
        if busy:
            return f"{busy[-1].name} ({self.states[busy[-1].index]})"
        done = [s for s in steps if self.states[s.index] != "pending"]
        return done[-1].name if done and len(done) < len(steps) else ""

    def _elapsed(self, group: int) -> str:
        if group not in self.began:
            return ""
        end = self.finished.get(group, self.clock())
        return f"{end - self.began[group]:.2f} s"


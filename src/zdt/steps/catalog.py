"""Step name + workflow kind → the step object that does it."""

from __future__ import annotations

from zdt.errors import StepError
from zdt.plan import StepSpec
from zdt.steps import Context, Step, apps, home, restart, runtime
from zdt.steps.hooks import Hook


def build(kind: str, ctx: Context, spec: StepSpec) -> Step:
    if spec.name.startswith("hook:"):
        return Hook(ctx, spec)
    library = {"restart": restart.STEPS, "home": home.STEPS, "runtime": runtime.STEPS,
               "apps": apps.STEPS, "update": apps.ALL}.get(kind, {})
    if spec.name not in library:
        raise StepError(f"no step {spec.name!r} in a {kind} workflow", retryable=False)
    return library[spec.name](ctx, spec)

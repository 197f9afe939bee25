"""Templates of the domain file (`{server}.service`, argv items like `{home}/bin/start`).

Only `{name}` of the names allowed, and `{{` / `}}` for braces. Python's own `str.format`
would also take `{server.__class__}`, `{server!r}`, `{server:>20}` and `{0}`: here each is
an error at load, naming the template, so nothing is formatted that was not checked.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from zdt.errors import ConfigError

_PARSER = string.Formatter()


def check(template: str, allowed: Iterable[str]) -> None:
    """Raise ValueError (for the model's validators) when `template` is not plain."""
    names = set(allowed)
    shown = ", ".join(f"{{{n}}}" for n in sorted(names))
    try:
        parts = list(_PARSER.parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc}; write a brace as {{{{ or }}}}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in names or spec or conversion:
            raise ValueError(f"{template!r}: {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a placeholder; only "
                             f"{shown} may be filled in")


def fill(template: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders replaced by `values`, text otherwise as written."""
    out: list[str] = []
    try:
        for literal, field, spec, conversion in _PARSER.parse(template):
            out.append(literal)
            if field is None:
                continue
            if field not in values or spec or conversion:
                raise ConfigError(f"template {template!r}: {{{field}}} is not one of "
                                  f"{', '.join(sorted(values))}")
            out.append(values[field])
    except ValueError as exc:
        raise ConfigError(f"template {template!r}: {exc}") from None
    return "".join(out)

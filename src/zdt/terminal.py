"""Consoles that print what users and nodes supply as text, never as markup or control codes.

A version `v2 [/]`, a process named `[red]x`, a path with an ESC sequence or a right-to-left
override: each is shown as written, with control characters made visible (`\\x1b`), and
cannot crash the console, hide a line or restyle a terminal. Markup is off; colour comes only
from `style=` and from `styled()`, whose pieces are cleaned the same way.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


def _visible(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object, *, lines: bool = True) -> str:
    """The text of `value` with every character Python deems not printable shown as an
    escape: control codes (Cc), and format characters (Cf) such as the bidirectional
    overrides a "Trojan source" uses; newlines and tabs kept when `lines` (a message),
    shown too when not (a table cell, a name)."""
    text = str(value)
    if text.isprintable():
        return text
    keep = "\n\t" if lines else ""
    return "".join(ch if ch in keep or ch.isprintable() else _visible(ch) for ch in text)


class SafeConsole(Console):
    """A Rich console without markup, highlighting or emoji codes; every string it renders
    (print arguments, table cells, titles) goes through `clean()` first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, highlight=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(clean(text), **kwargs)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain pieces and (text, style) pairs, every piece cleaned."""
    return Text.assemble(*(clean(p) if isinstance(p, str) else (clean(p[0]), p[1])
                           for p in parts))

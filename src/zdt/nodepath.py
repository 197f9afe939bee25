"""Paths on the nodes (homes, backups, application locations), compared as paths.

`/srv/app/home/.`, `/srv//app/home/` and `/srv/app/home` are one directory: every node path
is normalised when it is read, so "is the backup inside the home?" and "do two locations
overlap?" cannot be outrun by a spelling. `..` is refused outright (what it names depends on
links on the node, which zdt cannot see from here).
"""

from __future__ import annotations

import posixpath
import re

from zdt.errors import ConfigError


def normalise(value: str, *, root_ok: bool = False) -> str:
    """The canonical spelling of an absolute node path; ValueError says what is wrong."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r}: must be an absolute path (the same on every node)")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r}: '..' is not allowed (it depends on links on the node)")
    if not value.isprintable():
        raise ValueError(f"{value!r}: control characters (newlines, tabs…) are not allowed")
    path = "/" + posixpath.normpath(value).lstrip("/")
    if path == "/" and not root_ok:
        raise ValueError(f"{value!r}: names / itself, which zdt never moves or replaces")
    return path


def inside(path: str, parent: str) -> bool:
    """`path` is `parent` or below it (both normalised)."""
    return path == parent or parent == "/" or path.startswith(parent.rstrip("/") + "/")


def overlap(a: str, b: str) -> bool:
    """One of the two is the other or contains it."""
    return inside(a, b) or inside(b, a)


SCRIPT_SAFE = re.compile(r"[A-Za-z0-9._/+@:,=~-]+")


def option(name: str, value: str, what: str, *, in_scripts: bool = False) -> str:
    """A node path given as an option: its normal spelling, or ConfigError (exit 2) naming
    the option. `in_scripts`: it will be written into the nodes' shell scripts, so only
    characters no shell reads are allowed."""
    try:
        path = normalise(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}; give {what}") from None
    if in_scripts and not SCRIPT_SAFE.fullmatch(value):
        raise ConfigError(f"{name} {value!r}: only letters, digits and . _ / + @ : , = ~ -"
                          " are allowed (quotes, '$', spaces, ';' and the like would be read "
                          "by the shell in the nodes' scripts); give " + what)
    return path

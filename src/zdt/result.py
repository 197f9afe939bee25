"""What a command run on a node returned: the bottom layer, shared by the transports and
the errors that carry it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """What a command returned, shaped like subprocess.CompletedProcess."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

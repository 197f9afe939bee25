"""How commands and files reach a node. The engine and steps see only `Transport`."""

from __future__ import annotations

from typing import Protocol

from zdt.result import Result

__all__ = ["Result", "Transport"]


class Transport(Protocol):
    """One node's way in. Commands are argv lists; nothing is ever run through a shell."""

    node: str

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        """Run argv on the node; with check, a non-zero exit raises CommandError."""
        ...

    async def put(self, local: str, remote: str) -> None:
        """Copy a local file, with its mode, to a path on the node, creating the parent
        dir; atomically (temp file + rename), so `remote` is never half a copy."""
        ...

    def path(self, remote: str) -> str:
        """A node path as it must appear in the argv of commands run through this transport
        (the sandbox's node root prepended locally; the path unchanged over SSH)."""
        ...

    async def unix_socket(self, remote: str) -> str:
        """A path on this machine that connects to the node's Unix socket `remote`
        (the socket itself locally; a forward over SSH)."""
        ...

    async def close(self) -> None:
        """Release the connection, if any."""
        ...

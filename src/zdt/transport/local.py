"""The local transport: a node on this machine, its "/" at the node's root dir.

In the sandbox every node has a root dir (`D/nodes/node1`), so the same node path
(`/srv/app/home`) names a different directory per node, as it would on separate hosts.
Without a root, node paths are this machine's paths.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from zdt.errors import CommandError, StepError
from zdt.transport import Result


class LocalTransport:
    def __init__(self, node: str, root: str | None = None) -> None:
        self.node = node
        self.root = Path(root) if root else None

    def path(self, remote: str) -> str:
        if self.root is None:
            return remote
        return str(self.root / remote.lstrip("/"))

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a non-empty list of strings")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=str(self.root) if self.root else None)
        except OSError as exc:
            raise StepError(f"{self.node}: cannot run {argv[0]!r}: {exc.strerror}") from exc
        out, err = bytearray(), bytearray()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(_collect(proc.stdout, out), _collect(proc.stderr, err),
                                     proc.wait())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            result = Result(tuple(argv), -9, out.decode(errors="replace"),
                            err.decode(errors="replace"))
            raise CommandError(f"{self.node}: {argv[0]} timed out after {timeout:g} s",
                               result) from None
        result = Result(tuple(argv), proc.returncode or 0, out.decode(errors="replace"),
                        err.decode(errors="replace"))
        if check and result.returncode != 0:
            raise CommandError(f"{self.node}: {' '.join(argv)} exited {result.returncode}: "
                               f"{result.stderr.strip()[-300:]}", result)
        return result

    async def put(self, local: str, remote: str) -> None:
        target = Path(self.path(remote))
        await asyncio.to_thread(_copy_atomically, Path(local), target)

    async def unix_socket(self, remote: str) -> str:
        return self.path(remote)

    async def close(self) -> None:
        """Nothing to release: every command is its own process."""


async def _collect(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    """Read a pipe to its end; what was read stays in sink even if this is cancelled."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink.extend(chunk)


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.zdt-{os.getpid()}")
    shutil.copyfile(source, tmp)
    shutil.copymode(source, tmp)
    os.replace(tmp, target)

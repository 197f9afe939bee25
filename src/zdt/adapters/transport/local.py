"""The local transport: a node on this machine, its "/" at the node's root dir.

In the sandbox every node has a root dir (`D/nodes/node1`), so the same node path
(`/srv/app/home`) names a different directory per node, as it would on separate hosts.
Without a root, node paths are this machine's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from zdt import atomic
from zdt.adapters.transport import Result
from zdt.errors import CommandError, StepError

PIPE_GRACE = 0.5      # s: reading what an exited command left in its pipes


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
            proc, exited, pipes = await _start(argv, cwd=str(self.root) if self.root else None)
        except OSError as exc:
            if self.root is not None and not self.root.is_dir():
                raise StepError(f"{self.node}: its root {self.root} is not a directory; "
                                "create it, or fix the node's root in the domain file") from exc
            raise StepError(f"{self.node}: cannot run {argv[0]!r}: {exc.strerror}") from exc
        out, err = bytearray(), bytearray()
        readers = [asyncio.ensure_future(_collect(proc.stdout, out)),
                   asyncio.ensure_future(_collect(proc.stderr, err))]
        try:
            async with asyncio.timeout(timeout):
                await exited           # its exit, not the pipes' end: a child it left running
        except TimeoutError:           # (`daemon &`) may hold them open for ever
            _kill_group(proc.pid)
            await proc.wait()
            await _drain(pipes, readers, 1.0)
            result = Result(tuple(argv), -9, out.decode(errors="replace"),
                            err.decode(errors="replace"))
            raise CommandError(f"{self.node}: {argv[0]} timed out after {timeout:g} s "
                               "(it and every process it started were killed)",
                               result) from None
        except BaseException:          # cancelled: leave nothing running behind
            _kill_group(proc.pid)
            await _drain(pipes, readers, 0.0)
            raise
        await _drain(pipes, readers, PIPE_GRACE)
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


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Says when the process exits: asyncio's own wait() also waits for its pipes to close."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _start(argv: list[str], cwd: str | None) -> tuple[
        asyncio.subprocess.Process, asyncio.Future[None], asyncio.SubprocessTransport]:
    """The command in a session of its own (a timeout kills it and all it started),
    stdin from /dev/null, stdout and stderr piped; its exit, and its transport (whose
    close() closes our ends of the pipes)."""
    loop = asyncio.get_running_loop()
    protocol = _ExitProtocol(loop)
    transport, _ = await loop.subprocess_exec(
        lambda: protocol, *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited, transport


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _drain(pipes: asyncio.SubprocessTransport,
                 readers: Sequence[asyncio.Future[None]], grace: float) -> None:
    """What the command wrote before it exited is in the pipes: read it for up to `grace`
    seconds, then stop reading (a process it left behind keeps its end open) and close."""
    if grace > 0:
        await asyncio.wait(readers, timeout=grace)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    pipes.close()


async def _collect(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    """Read a pipe to its end; what was read stays in sink even if this is cancelled."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink.extend(chunk)


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.copy(source, target)

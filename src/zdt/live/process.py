"""One workload process under the live supervisor: spawned with the listening sockets at
fds 3.., a private notify socket, and a control channel; watched through a pidfd.

The spawn uses posix_spawn with dup2 file actions (no code runs in the child before exec)
and a fixed /bin/sh script that only sets LISTEN_PID to its own pid, enters the home and
execs the command: user values reach it as arguments ("$@"), never as script text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from zdt.errors import PreconditionError, ZdtError

SHIM = 'cd "$ZDT_HOME" || exit 126; LISTEN_PID=$$; export LISTEN_PID; exec "$@"'
FIRST_FD = 3
MAX_LINE = 1 << 16                  # a header line longer than this closes the channel
DEFAULT_MAX_STATE = 1 << 30         # bytes of state the supervisor accepts by default


@dataclass
class Notice:
    ready: bool = False
    checkpoint: bool = False
    go: bool = False          # restores, then accepts only when told GO
    segment: bool = False     # takes a state segment on RESTORE
    by: str = ""              # what said ready: "sd_notify" or "health"
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Workload:
    """A spawned workload process and its two channels to the supervisor."""

    def __init__(self, pid: int, role: str, home: str, channel: socket.socket,
                 notify: socket.socket, notify_path: Path,
                 fds: socket.socket | None = None) -> None:
        self.pid = pid
        self.role = role
        self.home = home
        self.started = time.monotonic()
        self.notice = Notice()
        self.exited = asyncio.get_running_loop().create_future()
        self._notify, self._notify_path = notify, notify_path
        self._pidfd = os.pidfd_open(pid)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._pidfd, self._reap)
        loop.add_reader(notify.fileno(), self._on_notify)
        self.channel = channel
        self.fds = fds             # a SOCK_SEQPACKET pair end: descriptors (SCM_RIGHTS)
        self.holds_segment = False # it was sent the original's state segment
        self.channel_closed = False
        self.paused = False        # told to CHECKPOINT, not yet told to RESUME nor retired
        self.max_state = DEFAULT_MAX_STATE
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open_channel(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(sock=self.channel,
                                                                 limit=MAX_LINE)
        self.inbox: asyncio.Queue[tuple[list[str], bytes] | None] = asyncio.Queue()
        self._reading = asyncio.ensure_future(self._read_all())

    async def _read_all(self) -> None:
        """Read whole messages, always: a caller that gives up waiting never leaves a
        message half-read, and a late answer is drained (the sender never blocks on it)."""
        try:
            while True:
                self.inbox.put_nowait(await self._read_one())
        except (EOFError, asyncio.IncompleteReadError, OSError, ValueError):
            self.channel_closed = True
            self.inbox.put_nowait(None)

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(self.pid, 0)
            if not self.exited.done():
                self.exited.set_result(os.waitstatus_to_exitcode(status))
        if not self.exited.done():
            self.exited.set_result(-1)
        os.close(self._pidfd)
        self._close_notify()
        self.close_fds()

    def _on_notify(self) -> None:
        try:
            data = self._notify.recv(4096).decode(errors="replace")
        except OSError:
            return
        for line in data.splitlines():
            if line == "READY=1":
                self.notice.ready = True
                self.notice.by = self.notice.by or "sd_notify"
            elif line == "X_ZDT_CHECKPOINT=1":
                self.notice.checkpoint = True
            elif line == "X_ZDT_GO=1":
                self.notice.go = True
            elif line == "X_ZDT_SEGMENT=1":
                self.notice.segment = True
        if self.notice.ready:
            self.notice.event.set()

    def close_fds(self) -> None:
        if self.fds is not None and self.fds.fileno() >= 0:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.fds.fileno())
            self.fds.close()

    def _close_notify(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._notify.fileno())
        self._notify.close()
        with contextlib.suppress(FileNotFoundError):
            self._notify_path.unlink()

    def signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def retire(self, timeout: float, stop: str = "TERM") -> bool:
        """The stop signal (SIGTERM, or the workload's own graceful one: "INT"…), wait up
        to timeout, then SIGKILL; True if it exited by itself."""
        self.signal(getattr(signal, f"SIG{stop}"))
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), timeout)
            return True
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.exited
            return False

    async def send(self, *words: object, payload: bytes = b"") -> None:
        assert self.writer is not None
        self.writer.write(" ".join(str(w) for w in words).encode() + b"\n" + payload)
        await self.writer.drain()

    async def send_fd(self, fd: int, *words: object) -> None:
        """A descriptor (a state segment) on the descriptor channel, with a short note."""
        assert self.fds is not None      # one short datagram: the buffer never holds it up
        socket.send_fds(self.fds, [" ".join(map(str, words)).encode()], [fd])

    async def receive_fd(self) -> tuple[list[str], int]:
        """The next descriptor the workload sends, with its note; EOFError if it closes
        its channel or exits first."""
        assert self.fds is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.fds, 256, 4)
            except BlockingIOError:
                fileno = self.fds.fileno()
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fileno, _settle, ready)
                try:
                    await asyncio.wait([ready, asyncio.shield(self.exited)],
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    with contextlib.suppress(ValueError, OSError):
                        loop.remove_reader(fileno)
                if self.exited.done() and not ready.done():
                    raise EOFError(f"workload pid {self.pid} exited") from None
                continue
            if not data and not fds:
                raise EOFError(f"workload pid {self.pid} closed its descriptor channel")
            for extra in fds[1:]:
                os.close(extra)           # one descriptor per message: more are dropped
            if fds:
                os.set_inheritable(fds[0], False)   # never into a workload spawned later
                return data.decode(errors="replace").split(), fds[0]

    async def receive(self) -> tuple[list[str], bytes]:
        """The next whole message; EOFError once the channel is closed."""
        message = await self.inbox.get()
        if message is None:
            self.inbox.put_nowait(None)      # closed for every later reader too
            raise EOFError(f"workload pid {self.pid} closed its channel")
        return message

    async def _read_one(self) -> tuple[list[str], bytes]:
        """One message. A header that is not one (no size, a size past `max_state`) is
        passed on as MALFORMED and the channel goes on: a STATE's payload too large to keep
        is read and dropped in chunks, never allocated."""
        assert self.reader is not None
        line = (await self.reader.readline()).decode(errors="replace")
        if not line:
            raise EOFError(f"workload pid {self.pid} closed its channel")
        words = line.split() or ["?"]
        if words[0] != "STATE":
            return words, b""
        try:
            size = int(words[1])
        except (IndexError, ValueError):
            return ["MALFORMED", f"a STATE header without a size: {line.strip()[:80]!r}"], b""
        if size < 0:
            return ["MALFORMED", f"a STATE of {size} bytes"], b""
        if size > self.max_state:
            await _skip(self.reader, size)
            return ["MALFORMED", f"a state of {size} bytes, over the limit of "
                    f"{self.max_state} (max_state_bytes)"], b""
        return words, await self.reader.readexactly(size) if size else b""


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _skip(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        chunk = await reader.read(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the workload closed its channel inside a state")
        size -= len(chunk)


async def spawn(command: list[str], *, home: str, role: str, sockets: list[socket.socket],
                names: list[str], run_dir: Path, log: Path, extra_env: dict[str, str]
                ) -> Workload:
    """Start the command with the listening sockets as fds 3.. (LISTEN_FDS)."""
    ours, theirs = socket.socketpair()
    fds_ours, fds_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    notify_path = run_dir / f"notify-{os.getpid()}-{time.monotonic_ns()}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    # park every fd the child needs above the range it will find them in
    high = [os.dup(s.fileno()) for s in sockets]
    channel_fd = FIRST_FD + len(sockets)
    high_channel = os.dup(theirs.fileno())
    high_fds = os.dup(fds_theirs.fileno())
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    actions = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
    actions += [(os.POSIX_SPAWN_DUP2, fd, FIRST_FD + i) for i, fd in enumerate(high)]
    actions.append((os.POSIX_SPAWN_DUP2, high_channel, channel_fd))
    actions.append((os.POSIX_SPAWN_DUP2, high_fds, channel_fd + 1))
    env = {**os.environ, **extra_env, "ZDT_HOME": home, "ZDT_LIVE_ROLE": role,
           "LISTEN_FDS": str(len(sockets)), "LISTEN_FDNAMES": ":".join(names),
           "NOTIFY_SOCKET": str(notify_path), "ZDT_LIVE_FD": str(channel_fd),
           "ZDT_LIVE_FDS": str(channel_fd + 1)}
    env.pop("LISTEN_PID", None)
    try:
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", SHIM, "zdt-live", *command], env,
                             file_actions=actions)
    except OSError as exc:
        notify.close()
        fds_ours.close()
        raise ZdtError(f"cannot start {command[0]!r}: {exc.strerror}") from exc
    finally:
        for fd in (*high, high_channel, high_fds, out):
            os.close(fd)
        theirs.close()
        fds_theirs.close()
    ours.setblocking(False)
    fds_ours.setblocking(False)
    workload = Workload(pid, role, home, ours, notify, notify_path, fds_ours)
    await workload.open_channel()
    return workload


def listen(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host.strip("[]") or "0.0.0.0", int(port)))
    except OSError as exc:
        s.close()
        raise PreconditionError(f"--listen {address}: {exc.strerror}") from exc
    s.listen(1024)     # the accept queue holds what arrives during a blackout
    return s

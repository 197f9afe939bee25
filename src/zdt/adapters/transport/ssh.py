"""The SSH transport: one asyncssh connection per node, reused for the whole workflow.

A command crosses as `shlex.join(argv)`, which the node's POSIX login shell splits back
into exactly argv: no value is ever formatted into a shell string. Host keys are checked
against a known_hosts file; a key seen for the first time is added only when the operator
says so (`--accept-new-host-keys`, OpenSSH's `accept-new`), and a changed key is always
refused. A lost connection is opened again by the next command, so a step retried after
sshd comes back goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from zdt import atomic
from zdt.adapters.transport import Result
from zdt.archive import sha256_file
from zdt.domain import Domain, SSHAddress
from zdt.errors import AdapterError, CommandError, PreconditionError

UPLOAD_TIMEOUT = 600.0   # s; a put of a large archive on a slow link
KILL_AFTER = 5.0         # s; SIGKILL a command this long after its timeout's SIGTERM
# Every command runs under this constant script, its argv as the script's arguments (never
# formatted into it): the command writes to files on the node, which are sent once it has
# exited, so a child it leaves running (`daemon &`) cannot hold the channel open (sshd
# ends a session only when every writer of its pipes is gone).
# 125: the files could not be made (`true` is a regular builtin: its failed redirection
# returns, where a special builtin's would end the shell with 1 or 2, read as a status).
UNTIL_EXIT = ('d=$(mktemp -d) && true >"$d/o" && true >"$d/e" || exit 125; '
              '"$@" </dev/null >>"$d/o" 2>>"$d/e"; s=$?; '
              'cat "$d/o"; cat "$d/e" >&2; rm -rf "$d"; exit "$s"')
KEEPALIVE = 5.0          # s between keepalives once the connection is idle


class HostKeyError(PreconditionError):
    """A node's host key is unknown or changed: nothing is sent to it (not retried)."""


class AuthError(PreconditionError):
    """The node refused every key offered (not retried: a retry offers the same keys)."""


@dataclass(frozen=True)
class SSHOptions:
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    identity: Path | None = None
    config: Path | None = None
    connect_timeout: float = 10.0
    accept_new: bool = False

    @classmethod
    def of(cls, domain: Domain, accept_new: bool = False) -> SSHOptions:
        s = domain.ssh
        default = cls()
        return cls(Path(s.known_hosts) if s.known_hosts else default.known_hosts,
                   Path(s.identity) if s.identity else None,
                   Path(s.config) if s.config else None, s.connect_timeout, accept_new)


class _Client(asyncssh.SSHClient):
    """Decides on a host key that is not in known_hosts (asyncssh asks only for those)."""

    def __init__(self, options: SSHOptions, verdict: dict[str, str]) -> None:
        self._options = options
        self._verdict = verdict

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint()
        if _known_keys(self._options.known_hosts, host, addr, port):
            self._verdict["changed"] = fingerprint
            return False
        if not self._options.accept_new:
            self._verdict["unknown"] = fingerprint
            return False
        _append_known_host(self._options.known_hosts, host, port, key)
        self._verdict["added"] = fingerprint
        return True


class SSHTransport:
    """A node reached over SSH; its paths are its own (`path` changes nothing)."""

    def __init__(self, node: str, address: SSHAddress, options: SSHOptions,
                 gate: asyncio.Semaphore | None = None) -> None:
        self.node = node
        self.address = address
        self.options = options
        self.round_trips = 0          # commands and uploads sent (a bench figure)
        self._gate = gate or asyncio.Semaphore(64)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._opening: asyncio.Lock | None = None
        self._forwarding: asyncio.Lock | None = None
        self._forward_serial = 0
        self._forwards: dict[str, str] = {}
        self._sockets_dir: str | None = None

    def path(self, remote: str) -> str:
        return remote

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a non-empty list of strings")
        # Closing the channel at the timeout would leave the command running on the node
        # (no pty, no SIGHUP) beside the step's retry: coreutils' timeout ends it there.
        sent = argv if timeout is None else \
            ["timeout", "-k", f"{KILL_AFTER:g}", f"{timeout:g}", *argv]
        sent = ["sh", "-c", UNTIL_EXIT, "zdt", *sent]
        backstop = None if timeout is None else timeout + KILL_AFTER + 10
        async with self._gate:
            conn = await self.connection()
            self.round_trips += 1
            began = time.monotonic()
            try:
                done = await conn.run(shlex.join(sent), check=False, timeout=backstop,
                                      encoding="utf-8", errors="replace")
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                self._lost(force=isinstance(exc, TimeoutError))
                raise AdapterError(f"{self.node}: the connection to {self.address} broke "
                                   f"while running {argv[0]}: {_why(exc)}") from exc
        if done.exit_status is None and done.exit_signal is None:
            self._lost(force=True)     # the channel closed with no status: the link broke
            raise AdapterError(f"{self.node}: the connection to {self.address} broke while "
                               f"running {argv[0]}; its outcome is unknown")
        status = _status(done.exit_status, done.exit_signal)
        result = Result(tuple(argv), status, str(done.stdout or ""), str(done.stderr or ""))
        # `timeout` exits 124 after its TERM, and dies of its own KILL (137) after -k;
        # a command that exits so by itself, before the time is up, keeps its status.
        if timeout is not None and status in (124, 137) and \
                time.monotonic() - began >= timeout:
            raise CommandError(f"{self.node}: {argv[0]} timed out after {timeout:g} s",
                               result)
        if check and status != 0:
            raise CommandError(f"{self.node}: {shlex.join(argv)[:300]} exited {status}: "
                               f"{result.stderr.strip()[-300:]}", result)
        return result

    async def put(self, local: str, remote: str) -> None:
        """Upload to a temp file beside `remote` with its mode, check its sha256 on the
        node, then rename it over `remote`: one SFTP session and one command."""
        digest, _ = await asyncio.to_thread(sha256_file, Path(local))
        mode = Path(local).stat().st_mode & 0o777
        parent = os.path.dirname(remote)
        tmp = atomic.temp_name(remote)      # unguessable, and created exclusively below
        try:
            async with self._sftp() as sftp:
                await sftp.makedirs(parent or "/", exist_ok=True)
                await _upload(sftp, local, tmp)
                await sftp.chmod(tmp, mode)
            got = (await self.run(["sha256sum", tmp])).stdout.split()[:1]
            if got != [digest]:
                raise AdapterError(f"{self.node}: {remote}: the upload's sha256 is {got[:1]}, "
                                   f"not {digest}; the copy was removed, try again")
            async with self._sftp() as sftp:
                await sftp.posix_rename(tmp, remote)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.run(["rm", "-f", tmp], check=False, timeout=30)
            raise

    @contextlib.asynccontextmanager
    async def _sftp(self) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP session on the node's connection; its failures are AdapterErrors."""
        async with self._gate:
            conn = await self.connection()
            self.round_trips += 1
            try:
                async with asyncio.timeout(UPLOAD_TIMEOUT), conn.start_sftp_client() as sftp:
                    yield sftp
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                self._lost()
                raise AdapterError(f"{self.node}: file transfer to {self.address} failed: "
                                   f"{_why(exc)}") from exc

    async def unix_socket(self, remote: str) -> str:
        """A local socket path that reaches the node's Unix socket `remote` (forwarded)."""
        conn = await self.connection()
        if self._forwarding is None:
            self._forwarding = asyncio.Lock()
        async with self._forwarding:
            return await self._forward(conn, remote)

    async def _forward(self, conn: asyncssh.SSHClientConnection, remote: str) -> str:
        if remote not in self._forwards:
            if self._sockets_dir is None:
                self._sockets_dir = tempfile.mkdtemp(prefix="zdt-ssh-")
            self._forward_serial += 1
            local = os.path.join(self._sockets_dir, f"{self._forward_serial}.sock")
            try:
                await conn.forward_local_path(local, remote)
            except (asyncssh.Error, OSError) as exc:
                raise AdapterError(f"{self.node}: cannot forward {remote}: {_why(exc)}") from exc
            self._forwards[remote] = local
        return self._forwards[remote]

    async def connection(self) -> asyncssh.SSHClientConnection:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._conn is None or self._conn.is_closed():
                self._lost()
                self._conn = await self._connect()
            return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._lost()
        if self._sockets_dir is not None:
            shutil.rmtree(self._sockets_dir, ignore_errors=True)
            self._sockets_dir = None

    def _lost(self, force: bool = False) -> None:
        """Forget a connection that broke (or, with force, is not to be trusted any more);
        its forwards go with it."""
        if self._conn is not None and not self._conn.is_closed():
            if not force:
                return
            self._conn.abort()
        self._conn = None
        if self._sockets_dir is not None:
            for local in self._forwards.values():
                with contextlib.suppress(OSError):
                    os.unlink(local)
        self._forwards.clear()

    async def _connect(self) -> asyncssh.SSHClientConnection:
        o, a = self.options, self.address
        verdict: dict[str, str] = {}
        if o.identity is not None and not o.identity.is_file():
            raise PreconditionError(f"{self.node}: the identity file {o.identity} ([ssh] "
                                    f"identity) does not exist")
        kwargs: dict[str, Any] = {
            # A known_hosts file not there yet trusts nothing (an empty value would make
            # asyncssh fall back to ~/.ssh/known_hosts, another source of trust).
            "known_hosts": str(o.known_hosts) if o.known_hosts.is_file()
            else asyncssh.import_known_hosts(""),
            "connect_timeout": o.connect_timeout,
            # a peer gone without a word (a cut link, a frozen host) is noticed in ~15 s,
            # not at the end of each command's own timeout
            "keepalive_interval": KEEPALIVE, "keepalive_count_max": 3,
            "client_factory": lambda: _Client(o, verdict),
        }
        if a.port:
            kwargs["port"] = a.port
        if a.user:
            kwargs["username"] = a.user
        if o.identity:
            kwargs["client_keys"] = [str(o.identity)]
        if o.config:
            kwargs["config"] = [str(o.config)]
        try:
            return await asyncssh.connect(a.host, **kwargs)
        except asyncssh.HostKeyNotVerifiable:
            raise self._host_key_error(verdict) from None
        except asyncssh.PermissionDenied as exc:
            raise AuthError(f"{self.node}: {a} refused every key offered ({exc.reason}); "
                            f"check the user and the identity file ([ssh] identity, "
                            f"~/.ssh/config) and the node's authorized_keys") from None
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise PreconditionError(f"{self.node}: cannot use the SSH settings for {a} "
                                    f"(known_hosts {o.known_hosts}, identity "
                                    f"{o.identity or 'from ssh_config or the agent'}): "
                                    f"{exc}") from exc
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise AdapterError(f"{self.node}: cannot reach {a}: {_why(exc)}; check that "
                               f"the host is up and sshd listens there") from exc

    def _host_key_error(self, verdict: dict[str, str]) -> HostKeyError:
        kh, a = self.options.known_hosts, self.address
        if "changed" in verdict:
            return HostKeyError(
                f"{self.node}: the host key of {a} CHANGED (now {verdict['changed']}), "
                f"it does not match {kh}: someone may be in the middle, or the host was "
                f"reinstalled; if you know it was, remove the old key with "
                f"`ssh-keygen -R {_known_name(a.host, a.port)} -f {kh}`; nothing was sent")
        return HostKeyError(
            f"{self.node}: the host key of {a} is unknown ({verdict.get('unknown', '?')}, "
            f"not in {kh}); check it and add it to {kh}, or pass --accept-new-host-keys to "
            f"add first-seen keys; nothing was sent")


def _status(exit_status: int | None, exit_signal: tuple[str, bool, str, str] | None) -> int:
    """The exit status as a shell reports it: 128 + N for a process killed by signal N."""
    if exit_status is not None and exit_status >= 0:
        return exit_status
    if exit_signal:
        try:
            return 128 + signal.Signals[f"SIG{exit_signal[0]}"].value
        except KeyError:
            pass
    return 255


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        return os.strerror(exc.errno).lower() if exc.errno else str(exc.strerror)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _known_name(host: str, port: int | None) -> str:
    return host if port in (None, 22) else f"[{host}]:{port}"


def _known_keys(known_hosts: Path, host: str, addr: str, port: int) -> list[Any]:
    """The keys known_hosts trusts for this host (any algorithm)."""
    if not known_hosts.is_file():
        return []
    try:
        found = asyncssh.read_known_hosts(str(known_hosts)).match(host, addr, port)
    except (OSError, ValueError, asyncssh.Error):
        return []
    return list(found[0])


def _append_known_host(known_hosts: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{_known_name(host, port)} {algorithm} {data}\n")


async def _upload(sftp: asyncssh.SFTPClient, local: str, tmp: str) -> None:
    """`local` into a new file `tmp` on the node: created exclusively (an existing file or
    a link planted at that name fails the upload rather than being written through), 0600
    until the rename, fsynced where the server offers it."""
    remote = await sftp.open(tmp, "xb", attrs=asyncssh.SFTPAttrs(permissions=0o600))
    try:
        with open(local, "rb") as f:
            while chunk := f.read(1 << 20):
                await remote.write(chunk)
        with contextlib.suppress(asyncssh.SFTPError):
            await remote.fsync()
    finally:
        await remote.close()

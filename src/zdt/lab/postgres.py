"""A real PostgreSQL for the tests and the benches: Debian's package, a cluster made in a
temp dir, started on a free loopback port with a password (in a PGPASSFILE that the
caller's processes inherit), and stopped by its own pid file at the end. PostgreSQL refuses
to run as root: as root, the cluster belongs to the `postgres` user the package created."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "zdt"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin dir (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install "
                               "postgresql); `make deps` and .ci/run install it")
        self.bin = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="zdt-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"
        self.passfile = self.base / "pgpass"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else argv

    def start(self) -> None:
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self.owner:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                   "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                   "--no-sync"])
        pwfile.unlink()
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} "
                   "-c fsync=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                   "-l", str(self.base / "server.log"), "-w", "-t", "60", "start"])
        self.passfile.write_text(f"127.0.0.1:{self.port}:*:{USER}:{self.password}\n")
        self.passfile.chmod(0o600)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-w", "stop"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _run(self, argv: list[str], check: bool = True) -> None:
        done = subprocess.run(self._as_owner(argv), capture_output=True, text=True,
                              timeout=120, cwd=self.base)
        if check and done.returncode != 0:
            log = self.base / "server.log"
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}"
                               + (f"\n{log.read_text()[-2000:]}" if log.exists() else ""))

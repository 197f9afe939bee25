"""Who may use the console: whoever holds its token.

The token (32 random bytes, hex) lives in the domain's state dir — `console.token` for a
console that acts, `console-ro.token` for a read-only one, so a viewer's token never drives
a console that acts — or in the file `--token-file` names. A script sends it
(`Authorization: Bearer …`). A browser never sees it: the console prints a one-time login
link (a random code, good once, for ten minutes), or the logged-out page takes the token in
a form; either gives a session cookie — random, held in the console's memory only (a
restart ends every session), expiring, named after the console's port so two consoles do
not share it — and the page carries a CSRF token that every change must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from zdt.errors import ConfigError
from zdt.lock import make_private_dir

TOKEN_FILE = "console.token"
READ_ONLY_TOKEN_FILE = "console-ro.token"
CSRF_HEADER = "x-csrf-token"
MIN_LENGTH = 32
LINK_LIFETIME = 600.0          # s a login link is good for (once)
SESSION_LIFETIME = 12 * 3600.0


def token(state_dir: Path, given: Path | None = None, *, read_only: bool = False) -> str:
    """The console's token: read from `given`, or from the state dir (made there, 0600,
    the first time)."""
    if given is not None:
        return _read(given)
    path = state_dir / (READ_ONLY_TOKEN_FILE if read_only else TOKEN_FILE)
    if not path.exists():
        make_private_dir(state_dir)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return _read(path)                     # another console made it meanwhile
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return _read(path)


def _read(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the console's token: {exc.strerror}") from exc
    if len(text) < MIN_LENGTH or not text.isascii() or not text.isprintable() or " " in text:
        raise ConfigError(f"{path}: a console token is one line of at least {MIN_LENGTH} "
                          "printable characters (the console makes one: leave the file out)")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: readable by others (mode {path.stat().st_mode & 0o777:o});"
                          f" `chmod 600 {path}`")
    return text


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """The console's login codes and browser sessions, in memory only."""

    def __init__(self, token: str, port: int, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.token = token
        self.cookie = f"zdt_console_{port}"
        self.clock = clock
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, float] = {}

    def login_code(self) -> str:
        """A code for one login within LINK_LIFETIME."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = self.clock() + LINK_LIFETIME
        return code

    def redeem(self, code: str | None) -> str | None:
        """A new session for a code not used nor expired (it is used up), else None."""
        expires = self._codes.pop(code or "", None)
        return self.open() if expires is not None and expires > self.clock() else None

    def open(self) -> str:
        session = secrets.token_urlsafe(32)
        self._sessions[session] = self.clock() + SESSION_LIFETIME
        return session

    def valid(self, session: str | None) -> bool:
        now = self.clock()
        for key in [k for k, until in self._sessions.items() if until <= now]:
            del self._sessions[key]
        return session is not None and session in self._sessions

    def csrf(self) -> str:
        """The CSRF token the page sends back: derived from the console's token, so it
        needs no state of its own and changes with it."""
        return hmac.new(self.token.encode(), b"zdt console csrf", hashlib.sha256).hexdigest()

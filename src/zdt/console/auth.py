"""Who may use the console: whoever holds its token.

The token (32 random bytes, hex) lives in the domain's state dir (`console.token`, 0600) or
in the file `--token-file` names. A browser shows it once, in the login link; the console
answers with a cookie (HttpOnly, SameSite=Strict) and the page carries a CSRF token that
every state-changing call must send back (`X-CSRF-Token`). A script sends the token itself
(`Authorization: Bearer …`). A request from another origin never changes anything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from zdt.errors import ConfigError
from zdt.lock import make_private_dir

TOKEN_FILE = "console.token"
COOKIE = "zdt_console"
CSRF_HEADER = "x-csrf-token"
MIN_LENGTH = 32


def token(state_dir: Path, given: Path | None = None) -> str:
    """The console's token: read from `given`, or from the state dir (made there, 0600,
    the first time)."""
    if given is not None:
        return _read(given)
    path = state_dir / TOKEN_FILE
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


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def csrf(token: str) -> str:
    """The CSRF token the page sends back: derived from the console's token, so it needs no
    state of its own and changes with it."""
    return hmac.new(token.encode(), b"zdt console csrf", hashlib.sha256).hexdigest()


def cookie_value(token: str) -> str:
    """What the cookie holds: not the token itself (it would sit in the browser's store),
    a value only the token's holder can make."""
    return hmac.new(token.encode(), b"zdt console session", hashlib.sha256).hexdigest()

"""The console's token files, login codes and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdt.console import auth
from zdt.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_made_once_0600_and_a_viewer_s_is_another(tmp_path: Path) -> None:
    state = tmp_path / "state"
    acting = auth.token(state)
    assert auth.token(state) == acting and len(acting) == 64
    assert (state / auth.TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    viewing = auth.token(state, read_only=True)
    assert viewing != acting and (state / auth.READ_ONLY_TOKEN_FILE).exists()


@pytest.mark.parametrize(("text", "mode", "words"), [
    ("short\n", 0o600, "at least 32"),
    ("x" * 40 + " y\n", 0o600, "one line"),
    ("x" * 40 + "\n", 0o644, "readable by others"),
])
def test_a_bad_token_file_is_refused(tmp_path: Path, text: str, mode: int,
                                     words: str) -> None:
    path = tmp_path / "t"
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=words):
        auth.token(tmp_path, path)


def test_a_login_code_works_once_and_not_after_ten_minutes() -> None:
    clock = Clock()
    sessions = auth.Sessions("t" * 64, 8700, clock)
    assert sessions.cookie == "zdt_console_8700"
    code = sessions.login_code()
    session = sessions.redeem(code)
    assert session is not None and sessions.valid(session)
    assert sessions.redeem(code) is None                     # used up
    late = sessions.login_code()
    clock.now += auth.LINK_LIFETIME + 1
    assert sessions.redeem(late) is None                     # expired
    assert sessions.redeem(None) is None and not sessions.valid("made-up")
    clock.now += auth.SESSION_LIFETIME
    assert not sessions.valid(session)                       # sessions end too


def test_the_csrf_token_follows_the_console_token() -> None:
    a, b = auth.Sessions("a" * 64, 1), auth.Sessions("b" * 64, 1)
    assert a.csrf() != b.csrf() and a.csrf() == auth.Sessions("a" * 64, 2).csrf()

"""Known servers that need a flag to take zdt's socket; the remote argv of live options."""

from __future__ import annotations

import pytest

from zdt.cli.live_remote import options
from zdt.errors import ConfigError
from zdt.live import servers


@pytest.mark.parametrize(("command", "refused"), [
    (["uvicorn", "app:asgi"], True),
    (["/usr/bin/uvicorn", "--fd", "3", "app:asgi"], False),
    (["uvicorn", "--fd=3", "app:asgi"], False),
    (["python3", "-m", "uvicorn", "app:asgi"], True),
    (["env", "PYTHONPATH=/x", "uvicorn", "app:asgi"], True),
    (["uvicorn", "--fdx", "app:asgi"], True),
    (["hypercorn", "--bind", "fd://3", "app:asgi"], False),
    (["hypercorn", "app:asgi"], True),
    (["gunicorn", "app:wsgi"], False),
    (["python3", "-m", "zdt.lab.counter"], False),
    ([], False),
])
def test_a_known_server_without_its_flag_is_refused(command: list[str], refused: bool
                                                    ) -> None:
    if refused:
        with pytest.raises(ConfigError, match="no update could hand it over") as err:
            servers.check(command)
        assert err.value.exit_code == 2
    else:
        servers.check(command)


def test_options_become_argv() -> None:
    assert options(home_dir="/srv/v2", state_dir=None, all=True, ready_timeout=2.5,
                   stop_timeout=None) == ["--home-dir", "/srv/v2", "--all",
                                          "--ready-timeout", "2.5"]

"""Servers nobody here wrote, as `zdt live` runs them: the recipes the tests and the
benches share (and the README shows).

    gunicorn  reads LISTEN_FDS, says READY=1 itself      zdt.lab.webapp:wsgi
    uvicorn   `--fd 3`, ready by --health                 zdt.lab.webapp:asgi
    lighttpd  socket activation in its config, ready by --health, stopped gracefully by
              SIGINT (`--stop-signal INT`); it serves the home's files
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

LIGHTTPD_CONF = """\
server.document-root = var.CWD
server.bind = "127.0.0.1"
server.port = {port}
server.systemd-socket-activation = "enable"
server.errorlog = var.CWD + "/error.log"
"""


@dataclass(frozen=True)
class Recipe:
    command: tuple[str, ...]
    health: str | None = None        # the path answering 200 once ready (None: sd_notify)
    options: tuple[str, ...] = ()    # more options of `zdt live run`
    page: str = ""                   # what to load: "" (JSON with the version) or a file

    def homes(self, base: Path, port: int, versions: tuple[str, ...] = ("v1", "v2")) -> None:
        """BASE/v1, BASE/v2: a VERSION file each, and the config a server may read there."""
        for version in versions:
            (base / version).mkdir(exist_ok=True)
            (base / version / "VERSION").write_text(version + "\n")
            (base / version / "lighttpd.conf").write_text(LIGHTTPD_CONF.format(port=port))

    def run_args(self, port: int) -> list[str]:
        """`zdt live run` options (readiness, stop signal) and, after `--`, the command."""
        ready = ["--health", f"http://127.0.0.1:{port}/{self.health}"] if self.health else []
        return [*ready, *self.options, "--", *self.command]


RECIPES = {
    "gunicorn": Recipe((sys.executable, "-m", "gunicorn", "--workers", "2",
                        "zdt.lab.webapp:wsgi")),
    "uvicorn": Recipe((sys.executable, "-m", "uvicorn", "--fd", "3", "zdt.lab.webapp:asgi"),
                      "health"),
    "lighttpd": Recipe(("/usr/sbin/lighttpd", "-D", "-f", "lighttpd.conf"), "VERSION",
                       ("--stop-signal", "INT"), "VERSION"),
}

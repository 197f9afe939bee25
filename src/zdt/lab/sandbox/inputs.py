"""The sample installation ("home") and the ready-made update inputs of a sandbox.

A home is a small but real-looking installation: the sample service itself runs from the
installed zdt package and reads only HOME/VERSION and HOME/BROKEN, but the other files
give an archive of the home some substance (directories, an executable, a few KB).

  HOME/VERSION            the version the servers report ("v1", "v2", ...)
  HOME/README             what the installation is
  HOME/bin/app-version    prints the home's version (mode 0755)
  HOME/lib/app.conf       the application's settings
  HOME/BROKEN             only in a broken home: its servers fail their health check
  HOME/DEGRADED           only in a degraded home: healthy servers that serve badly

The inputs, built in D/inputs/ from the same layout as the v1 home:

  D/inputs/v2/                    a patched home (VERSION "v2")
  D/inputs/broken/                a home whose servers answer 500 on /health
  D/inputs/degraded/              healthy, but every 5th request answers 500 (20 %)
  D/inputs/degraded-slow/         healthy, but every request answers 25 ms late
  D/inputs/<name>.tar.gz          each archived with `zdt.archive.create`, with its
  D/inputs/<name>.tar.gz.json     sidecar manifest beside it
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from zdt import archive

# name -> whether the home is broken; the name is also the home's VERSION.
INPUTS: dict[str, bool] = {"v2": False, "broken": True, "degraded": False,
                           "degraded-slow": False}
# Releases that are healthy but bad: HOME/DEGRADED (see the sample service).
DEGRADED = {"degraded": "fail_every = 5\n", "degraded-slow": "delay_ms = 25\n"}

FILE_MODE = 0o644
EXEC_MODE = 0o755   # also for directories

README = """\
Sample application home
=======================

This directory is an installation ("home") of the zdt sample application. The same
home path is used on every node of the domain, so that an update can replace it node by
node while a load balancer sends traffic to the other nodes.

Contents
--------

  VERSION           the version of this installation; servers report it on GET /
  bin/app-version   prints that version
  lib/app.conf      the application's settings

Servers read VERSION once at start-up: a new home takes effect when they restart, and
only then. A home that also holds a file named BROKEN starts servers that serve every
request but fail their health check (GET /health answers 500), so that a rollout onto it
is detected as failed and reverted.

Endpoints of a server
---------------------

  GET /             version, server, node and pid, as JSON
  GET /health       {"status": "ok"}, or 500 {"status": "broken"} for a broken home
  GET /session      a cookie session with a per-session request counter
  GET /slow?ms=N    answers like / after N milliseconds

A server stops gracefully on SIGTERM: it stops accepting connections, finishes the
requests in flight and exits 0.
"""

APP_VERSION_SCRIPT = """\
#!/bin/sh
# Print the version of the installation this script belongs to.
set -eu
here=$(dirname -- "$0")
exec cat -- "$here/../VERSION"
"""

RUNTIMES = ("/opt/runtime-1", "/opt/runtime-2")   # node paths; the first is in use
APP = "/srv/app/apps/shop"           # node path of the deployed application "shop"
APP_BACKUP = "/srv/app/apps/shop.bak"
SETENV = f"""\
#!/bin/sh
# The runtime the service runs with; `zdt rollout runtime` rewrites it.
JAVA_HOME={RUNTIMES[0]}
export JAVA_HOME
"""
RUNTIME_CONF = f"runtime = {RUNTIMES[0]}\nheap = 256m\n"

APP_CONF = """\
# Settings of the sample application. Paths are relative to the home.

[server]
host = 127.0.0.1
protocol = HTTP/1.0
keep_alive = false
shutdown = graceful

[health]
path = /health
ok_status = 200

[sessions]
cookie = ZDTSESSION
storage = memory

[limits]
max_slow_ms = 600000
"""

BROKEN = """\
This home is broken on purpose: its servers start and serve requests, but GET /health
answers 500 {"status": "broken"}. A rollout onto this home must fail its health check
and be reverted.
"""


def write_home(home: Path, version: str, *, broken: bool = False) -> None:
    """Create the installation `home` (which must not exist yet) for `version`.

    Modes are set explicitly, whatever the umask, so that every home built here (and
    every archive of one) is the same from one run to the next.
    """
    home.mkdir(parents=True)
    for sub in ("bin", "lib"):
        (home / sub).mkdir()
    files = {
        "VERSION": (f"{version}\n", FILE_MODE),
        "README": (README, FILE_MODE),
        "bin/app-version": (APP_VERSION_SCRIPT, EXEC_MODE),
        "bin/setenv.sh": (SETENV, EXEC_MODE),
        "lib/app.conf": (APP_CONF, FILE_MODE),
        "lib/runtime.conf": (RUNTIME_CONF, FILE_MODE),
    }
    if broken:
        files["BROKEN"] = (BROKEN, FILE_MODE)
    if version in DEGRADED:
        files["DEGRADED"] = (DEGRADED[version], FILE_MODE)
    for name, (text, mode) in files.items():
        path = home / name
        path.write_text(text, encoding="utf-8")
        os.chmod(path, mode)
    for d in (home, home / "bin", home / "lib"):
        os.chmod(d, EXEC_MODE)


def write_app(path: Path, version: str, *, broken: bool = False) -> None:
    """A deployed application: what the sample service reports as `app_version`."""
    path.mkdir(parents=True)
    (path / "APP_VERSION").write_text(version + "\n")
    (path / "index.html").write_text(f"<h1>shop {version}</h1>\n")
    if broken:
        (path / "BROKEN").write_text("this release of the app fails its health check\n")


def write_apps_spec(d: Path) -> Path:
    """D/inputs/apps.json: the app "shop" version 2, staged from D/inputs/apps/shop-2."""
    write_app(d / "apps" / "shop-2", "2")
    write_app(d / "apps" / "shop-broken", "broken", broken=True)
    spec = d / "apps.json"
    spec.write_text(json.dumps({"applications": [{
        "name": "shop", "patched_location": str(d / "apps" / "shop-2"),
        "backup_location": APP_BACKUP, "mode": "stage"}]}, indent=1) + "\n")
    return spec


def build(d: Path) -> dict[str, Path]:
    """Build D/inputs afresh: every input home and its archive; return the archives."""
    inputs = d / "inputs"
    if inputs.is_symlink() or inputs.is_file():
        inputs.unlink()
    elif inputs.exists():
        shutil.rmtree(inputs)   # left by an earlier sandbox here; rebuilt from scratch
    inputs.mkdir()
    archives: dict[str, Path] = {}
    for name, broken in INPUTS.items():
        home = inputs / name
        write_home(home, name, broken=broken)
        archives[name] = inputs / f"{name}.tar.gz"
        archive.create(home, archives[name])
    write_apps_spec(inputs)
    return archives

"""contrib/systemd/zdt-live@.service passes `systemd-analyze verify` for an instance, with
its paths pointed at this machine's zdt and a conf file; a broken copy does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "contrib" / "systemd" / "zdt-live@.service"
ANALYZE = shutil.which("systemd-analyze")


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    zdt = shutil.which("zdt")
    assert zdt is not None, "the zdt command is installed with the package"
    conf = tmp_path / "web.conf"
    conf.write_text("ZDT_LIVE_ARGS=--listen 127.0.0.1:8080 --home /srv/web -- /bin/true\n")
    unit = tmp_path / "zdt-live@web.service"
    unit.write_text(text.replace("/usr/local/bin/zdt", zdt)
                    .replace("/etc/zdt/live/%i.conf", str(tmp_path / "%i.conf")))
    return subprocess.run([str(ANALYZE), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian: "
                    "systemd)")
def test_the_unit_template_verifies(tmp_path: Path) -> None:
    done = verify(tmp_path, UNIT.read_text())
    assert (done.returncode, done.stderr.strip()) == (0, ""), done.stderr
    broken = verify(tmp_path, UNIT.read_text().replace("Type=simple", "Type=simpel")
                    .replace("Restart=on-failure", "Restart=sometimes"))
    assert "simpel" in broken.stderr and "sometimes" in broken.stderr

"""Several live workloads of one host: `zdt live status` lists them all; one operation
(a liveupdate.data file with `workload:` stanzas) updates them one after another, every
increment kept; when a later one fails, the ones already updated are reverted."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_live import free_port

from conftest import zdt
from zdt import http

pytestmark = pytest.mark.integration

NAMES = ("api", "cart", "shop")


@pytest.fixture
def host(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Three counters under the default state root (XDG_STATE_HOME of this test)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(short_dir / "x"))
    urls = {}
    try:
        for name in NAMES:
            for version in ("v1", "v2"):
                home = short_dir / name / version
                home.mkdir(parents=True)
                (home / "VERSION").write_text(version + "\n")
            port = free_port()
            started = zdt("live", "run", "--name", name, "--listen", f"127.0.0.1:{port}",
                          "--home", str(short_dir / name / "v1"), "--detach", "--",
                          sys.executable, "-m", "zdt.lab.counter")
            assert started.returncode == 0, started.stderr
            urls[name] = f"http://127.0.0.1:{port}/"
        yield urls
    finally:
        for name in NAMES:
            zdt("live", "stop", name)


async def served(urls: dict[str, str]) -> dict[str, tuple[str, int]]:
    out = {}
    for name, url in urls.items():
        body = json.loads((await http.get(url)).body)
        out[name] = (body["version"], body["count"])
    return out


def data_file(base: Path, version: str) -> Path:
    path = base / f"to-{version}.data"
    path.write_text("general:\n    checkpoint_timeout = 10\n" + "".join(
        f"workload:\n    name = {n}\n    home = {base / n / version}\n" for n in NAMES))
    return path


async def test_the_host_is_listed_and_updated_as_one_operation(host: dict[str, str],
                                                              short_dir: Path) -> None:
    for name in NAMES:
        await http.request("POST", host[name] + "incr")
    listed = json.loads(zdt("live", "status", "--json").stdout)
    assert [(r["name"], r["running"], r["version"]) for r in listed] == [
        (n, True, "v1") for n in NAMES]
    assert "api: pid" in zdt("live", "status").stdout
    done = zdt("live", "update", "--data", str(data_file(short_dir, "v2")), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "succeeded"
    assert [w["name"] for w in result["workloads"]] == list(NAMES)
    assert await served(host) == {n: ("v2", 1) for n in NAMES}     # the state came along
    # shop's next home crashes when handed the state: api and cart go back to v2
    (short_dir / "shop" / "v1" / "CRASH_ON_RESTORE").write_text("")
    failed = zdt("live", "update", "--data", str(data_file(short_dir, "v1")), "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    result = json.loads(failed.stdout)
    assert result["state"] == "reverted" and result["error"].startswith("shop: ")
    assert [("reverted" in w, "error" in w) for w in result["workloads"]] == [
        (True, False), (True, False), (False, True)]
    assert await served(host) == {n: ("v2", 1) for n in NAMES}


def test_a_host_update_with_nothing_named_is_refused(host: dict[str, str]) -> None:
    refused = zdt("live", "update", "--home-dir", "/nowhere")
    assert refused.returncode == 2
    assert "give the workload's NAME, --all, or --data" in refused.stderr

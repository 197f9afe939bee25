"""A real Prometheus for the tests and the benches: Debian's package, started on a free
loopback port with its data in a temp dir, scraping the given targets every second (the
sandbox's HAProxy exporters: `metrics_urls` in sandbox.json), stopped by its pid at the
end (a with-block)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from zdt.lab.sandbox.layout import free_ports

BINARY = "/usr/bin/prometheus"
SCRAPE_SECONDS = 1


def config(targets: list[str]) -> str:
    """prometheus.yml scraping each `http://HOST:PORT/PATH` every second (JSON is YAML)."""
    jobs = []
    for number, url in enumerate(targets, start=1):
        parts = urllib.parse.urlsplit(url)
        jobs.append({"job_name": f"lb{number}", "metrics_path": parts.path or "/metrics",
                     "static_configs": [{"targets": [parts.netloc]}]})
    return json.dumps({"global": {"scrape_interval": f"{SCRAPE_SECONDS}s",
                                  "evaluation_interval": f"{SCRAPE_SECONDS}s"},
                       "scrape_configs": jobs}, indent=1) + "\n"


class Prometheus:
    """`with Prometheus([url…]) as p:` p.url answers PromQL once every target was scraped."""

    def __init__(self, targets: list[str]) -> None:
        if not Path(BINARY).exists():
            raise RuntimeError("Prometheus is not installed (Debian: apt-get install "
                               "prometheus); `make deps` and .ci/run install it")
        self.targets = targets
        self.base = Path(tempfile.mkdtemp(prefix="zdt-prom-", dir="/tmp"))
        [self.port] = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        (self.base / "prometheus.yml").write_text(config(self.targets))
        log = (self.base / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={self.base / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.base / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.base)
        log.close()
        try:
            self._wait_scraped(60.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_scraped(self, timeout: float) -> None:
        """Until every target was scraped twice and is up: a rate() has two samples."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("prometheus exited: "
                                   + (self.base / "prometheus.log").read_text()[-2000:])
            if self.query("count(up == 1)") == float(len(self.targets)) and \
                    (self.query("min(count_over_time(up[1m]))") or 0) >= 2:
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not scrape {self.targets} in {timeout:g} s")

    def query(self, promql: str) -> float | None:
        """One instant query's number, None while it has none (or Prometheus is not up)."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=5) as answer:
                result = json.loads(answer.read())["data"]["result"]
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return None
        return float(result[0]["value"][1]) if result else None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

"""A `zdt console` really started on a free port, for the API and browser tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from conftest import ZDT
from zdt.lab.sandbox.layout import free_ports
from zdt.waiting import polls


@dataclass
class Console:
    url: str
    token: str
    login: str
    proc: subprocess.Popen[str]

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}", **headers})


@contextlib.contextmanager
def running_console(domain: str, token_file: Path, *extra: str) -> Iterator[Console]:
    """`zdt console` on a free loopback port until the with-block ends (stopped by pid)."""
    token_file.write_text(os.urandom(32).hex() + "\n")
    token_file.chmod(0o600)
    [port] = free_ports(1)
    proc = subprocess.Popen([*ZDT, "console", "-d", domain, "--bind", f"127.0.0.1:{port}",
                             "--token-file", str(token_file), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        login = proc.stdout.readline().split("min): ", 1)[-1].strip()
        if not login.startswith("http://127.0.0.1:"):
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"zdt console did not start: {first}{login}{err}")
        url = f"http://127.0.0.1:{port}"
        for _ in polls(30):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/favicon.ico", timeout=2).status_code == 204:
                    break
        else:
            raise AssertionError(f"the console never answered on {url}")
        yield Console(url, token_file.read_text().strip(), login, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""wrk (Debian's `wrk` package) as the load: a C client that reaches the machine's capacity
with a fraction of a core, for demos and benches. Same interface as `zdt.lab.load.Load`:
`async with Wrk(url) as w: ...` then `w.stats`.

wrk runs until SIGINT and then prints its summary; a Lua script adds what zdt counts:
every kind of socket error, non-2xx answers, and the versions and servers that answered.
A request fails when its connection cannot be made, breaks (read/write), times out, or the
answer is not 2xx or 3xx (wrk's own rule; the sample service sends no 3xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from zdt.lab.load import LoadStats

# Per thread: versions and servers seen; at the end, one "key value..." line per figure.
SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) versions = {}; servers = {} end
function response(status, headers, body)
  local v = string.match(body, '"version": "([^"]*)"')
  if v then versions[v] = (versions[v] or 0) + 1 end
  local s = string.match(body, '"server": "([^"]*)"')
  if s then servers[s] = (servers[s] or 0) + 1 end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("zdt-requests %d\\n", summary.requests))
  io.write(string.format("zdt-errors %d %d %d %d %d\\n", e.connect, e.read, e.write,
                         e.status, e.timeout))
  io.write(string.format("zdt-latency-max %d\\n", latency.max))
  for _, kind in ipairs({"versions", "servers"}) do
    local total = {}
    for _, t in ipairs(threads) do
      for k, n in pairs(t:get(kind)) do total[k] = (total[k] or 0) + n end
    end
    for k, n in pairs(total) do io.write(string.format("zdt-%s %s %d\\n", kind, k, n)) end
  end
end
"""
ERRORS = ("connect", "read", "write", "status", "timeout")


def available() -> bool:
    return shutil.which("wrk") is not None


def parse(text: str, seconds: float) -> LoadStats:
    """The lines the script printed → LoadStats (errors by wrk's kind).

    wrk's request count holds every answer, those with a bad status and those later than
    the timeout among them; connect, read and write errors come on top (no answer). A
    request that never ends is in neither: the LB's witness covers that.
    """
    stats = LoadStats(seconds=seconds)
    for line in text.splitlines():
        key, *values = line.split() or [""]
        if key == "zdt-requests":
            stats.requests = int(values[0])
        elif key == "zdt-errors":
            for kind, n in zip(ERRORS, map(int, values), strict=True):
                if n:
                    stats.errors["non-2xx/3xx" if kind == "status" else kind] = n
        elif key == "zdt-latency-max":
            stats.latency_max = int(values[0]) / 1e6     # wrk counts microseconds
        elif key in ("zdt-versions", "zdt-servers") and len(values) >= 2:
            counter = stats.versions if key == "zdt-versions" else stats.servers
            counter[" ".join(values[:-1])] = int(values[-1])
    stats.failed = sum(stats.errors.values())
    stats.requests += sum(stats.errors[k] for k in ("connect", "read", "write"))
    return stats


class Wrk:
    """`connections` clients over `threads` threads; keep-alive, or a new connection per
    request (`Connection: close`)."""

    def __init__(self, url: str, *, connections: int = 16, keep_alive: bool = True,
                 threads: int = 2, timeout: float = 10.0) -> None:
        self.url = url
        self.connections = max(connections, threads)
        self.keep_alive = keep_alive
        self.threads = threads
        self.timeout = timeout
        self.stats = LoadStats(errors=Counter())
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: Path | None = None
        self._began = 0.0

    async def __aenter__(self) -> Wrk:
        await self.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def begin(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="zdt-wrk-"))
        script = self._dir / "count.lua"
        script.write_text(SCRIPT)
        argv = ["wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", "86400s",
                "--timeout", f"{self.timeout:g}s", "-s", str(script)]
        if not self.keep_alive:
            argv += ["-H", "Connection: close"]
        self._began = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *argv, self.url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        # wrk prints nothing until it ends (its stdout is a pipe): it runs if it has not
        # exited within 0.1 s (a bad URL or option ends it at once).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 0.1)
            _, err = await self._proc.communicate()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise RuntimeError(f"wrk exited {self._proc.returncode} at once: "
                               f"{err.decode()[-300:]}")

    async def stop(self) -> LoadStats:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
        seconds = time.monotonic() - self._began
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk exited {proc.returncode}: {err.decode()[-300:]}")
        self.stats = parse(out.decode(), seconds)
        return self.stats

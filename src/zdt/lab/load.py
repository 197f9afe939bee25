"""HTTP load through the LB, counting every failure: the client's half of the proof of
"0 failed" (the LB's witness is the other half).

A request fails when its connection cannot be made, breaks before the whole answer
arrived, times out, or the answer is not 2xx. Two client shapes, as operators' traffic
has both:

* keep-alive: each worker holds one HTTP/1.1 connection and sends its requests on it one
  after another; a connection the server closes is opened again for the next request.
  A request sent on a connection that closes under it fails: no hidden retry.
* new connection per request (`keep_alive=False`): `Connection: close`, one connection
  each.

`rate_per_worker=0` sends as fast as answers come back: the load at the machine's
capacity. With `process=True` the generator runs in a process of its own (`python -m
zdt.lab.load`), on the other core: a test's or a demo's own work does not slow it down, nor it
them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import urlsplit


@dataclass
class LoadStats:
    requests: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    connections: int = 0       # connections opened
    latency_max: float = 0.0   # s, the slowest answer

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "errors": dict(self.errors),
                "servers": dict(self.servers), "versions": dict(self.versions),
                "seconds": round(self.seconds, 3),
                "rate": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "connections": self.connections,
                "latency_max": round(self.latency_max, 4)}

    @classmethod
    def of(cls, d: dict[str, Any]) -> LoadStats:
        return cls(d["requests"], d["failed"], Counter(d["errors"]), Counter(d["servers"]),
                   Counter(d["versions"]), d["seconds"], d.get("connections", 0),
                   d.get("latency_max", 0.0))


class _Answer(asyncio.Protocol):
    """One client connection: collects answers (head + Content-Length body) as they come."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bool, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # a TCP connection's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._complete()

    def eof_received(self) -> bool:
        self.closed = True
        self._complete(eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._complete(eof=True, error=exc)

    def ask(self, request: bytes) -> asyncio.Future[tuple[int, bool, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def _complete(self, eof: bool = False, error: Exception | None = None) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if sep:
            try:
                status, close, length = _head(head)
            except ValueError as exc:
                w.set_exception(exc)
                return
            if length is not None and len(rest) >= length:
                self.buffer = rest[length:]
                w.set_result((status, close, rest[:length]))
                return
            if length is None and eof:           # the body ends with the connection
                w.set_result((status, True, rest))
                return
        if eof:
            what = "reset" if error else "closed"
            w.set_exception(ConnectionError(f"connection {what} before the whole answer "
                                            f"({len(self.buffer)} bytes)"))


def _head(head: bytes) -> tuple[int, bool, int | None]:
    """Status, whether the server closes the connection after it, Content-Length."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    close, length = parts[0] == b"HTTP/1.0", None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
    return int(parts[1]), close, length


class Load:
    """`concurrency` workers, each sending a request every 1/rate s at most (0: at once)."""

    def __init__(self, url: str, *, concurrency: int = 4, rate_per_worker: float = 50.0,
                 timeout: float = 10.0, method: str = "GET", keep_alive: bool = False,
                 process: bool = False, nice: int = 0) -> None:
        self.url = url
        self.method = method
        self.concurrency = concurrency
        self.rate_per_worker = rate_per_worker
        self.interval = 1.0 / rate_per_worker if rate_per_worker > 0 else 0.0
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.process = process
        self.nice = nice            # process mode: its niceness (tests let the work go first)
        self.stats = LoadStats()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._began = 0.0
        self._child: asyncio.subprocess.Process | None = None
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        if not keep_alive:
            lines.append("Connection: close")
        if method == "POST":
            lines.append("Content-Length: 0")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def __aenter__(self) -> Load:
        await self.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def begin(self) -> None:
        if self.process:
            await self._spawn()
        else:
            self.start()

    def start(self) -> None:
        self._began = time.monotonic()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> LoadStats:
        if self._child is not None:
            return await self._reap()
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self.stats.seconds = time.monotonic() - self._began
        return self.stats

    async def _spawn(self) -> None:
        argv = ["nice", "-n", str(self.nice)] if self.nice else []
        argv += [sys.executable, "-m", "zdt.lab.load", self.url, "--connections",
                str(self.concurrency), "--rate", str(self.rate_per_worker), "--timeout",
                str(self.timeout), "--method", self.method]
        if self.keep_alive:
            argv.append("--keep-alive")
        self._child = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self._child.stdout is not None
        await self._child.stdout.readline()          # "started": its workers run

    async def _reap(self) -> LoadStats:
        child = self._child
        assert child is not None and child.stdout is not None
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
        out = await child.stdout.read()
        await child.wait()
        try:
            self.stats = LoadStats.of(json.loads(out))
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"the load generator (pid {child.pid}) exited "
                               f"{child.returncode} without its figures") from exc
        return self.stats

    async def _worker(self) -> None:
        conn: _Answer | None = None
        while not self._stop.is_set():
            began = time.monotonic()
            conn = await self._one(conn)
            pause = self.interval - (time.monotonic() - began)
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def _one(self, conn: _Answer | None) -> _Answer | None:
        """One request; returns the connection to use for the next one (None: a new one)."""
        s = self.stats
        s.requests += 1
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                if conn is None or conn.closed:
                    conn = await self._connect()
                status, close, body = await conn.ask(self._request)
        except (OSError, TimeoutError, ValueError) as exc:
            s.failed += 1
            s.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            return None
        s.latency_max = max(s.latency_max, time.monotonic() - began)
        if not 200 <= status < 300:
            s.failed += 1
            s.errors[f"HTTP {status}"] += 1
        else:
            _count(s, body)
        if close or not self.keep_alive:
            assert conn.transport is not None
            conn.transport.close()
            return None
        return conn

    async def _connect(self) -> _Answer:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Answer, self._host, self._port)
        self.stats.connections += 1
        return conn


def _count(s: LoadStats, body: bytes) -> None:
    try:
        answer = json.loads(body)
    except ValueError:
        return
    if isinstance(answer, dict):
        s.servers[str(answer.get("server"))] += 1
        s.versions[str(answer.get("version"))] += 1


class Runs(Protocol):
    """A load that runs for the length of a with-block: Load, or wrk."""

    stats: LoadStats

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...


def at_capacity(url: str, *, connections: int = 16, keep_alive: bool = True,
                use_wrk: bool = True) -> Runs:
    """Clients sending as fast as they are answered: wrk when it is installed (it needs a
    fraction of a core for thousands of requests/s), else zdt's own generator in a
    process of its own."""
    from zdt.lab import wrk

    if use_wrk and wrk.available():
        return wrk.Wrk(url, connections=connections, keep_alive=keep_alive)
    return Load(url, concurrency=connections, rate_per_worker=0, keep_alive=keep_alive,
                process=True)


def describe(load: Runs) -> str:
    """"wrk, 16 keep-alive connections": what made the load, for reports."""
    from zdt.lab import wrk

    tool = "wrk" if isinstance(load, wrk.Wrk) else "zdt's load generator"
    n = load.connections if isinstance(load, wrk.Wrk) else getattr(load, "concurrency", 0)
    shape = "keep-alive connections" if getattr(load, "keep_alive", False) else \
        "clients, a new connection per request"
    return f"{tool}, {n} {shape}"


async def _main(args: argparse.Namespace) -> LoadStats:
    load = Load(args.url, concurrency=args.connections, rate_per_worker=args.rate,
                timeout=args.timeout, method=args.method, keep_alive=args.keep_alive)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    load.start()
    print("started", flush=True)
    if args.duration > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), args.duration)
    else:
        await stopping.wait()
    return await load.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zdt.lab.load", description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rate", type=float, default=0.0,
                   help="requests per second per connection (0: as fast as answered)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--method", default="GET")
    p.add_argument("--keep-alive", action="store_true")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds (0: until SIGINT or SIGTERM)")
    stats = asyncio.run(_main(p.parse_args(argv)))
    sys.stdout.write(json.dumps(stats.as_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


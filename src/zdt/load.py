"""Steady HTTP load through the LB, counting every failure: the proof of "0 failed".

A request fails when the connection errors, times out, or the answer is not 2xx. Every
request opens its own connection (HTTP/1.0), so a server closing a connection it should
have kept cannot hide behind a pool's retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zdt import http


@dataclass
class LoadStats:
    requests: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "errors": dict(self.errors),
                "servers": dict(self.servers), "versions": dict(self.versions),
                "seconds": round(self.seconds, 3),
                "rate": round(self.requests / self.seconds, 1) if self.seconds else 0.0}


class Load:
    """`concurrency` workers, each sending a request every 1/rate s at most."""

    def __init__(self, url: str, *, concurrency: int = 4, rate_per_worker: float = 50.0,
                 timeout: float = 10.0, method: str = "GET") -> None:
        self.url = url
        self.method = method
        self.concurrency = concurrency
        self.interval = 1.0 / rate_per_worker if rate_per_worker > 0 else 0.0
        self.timeout = timeout
        self.stats = LoadStats()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._began = 0.0

    async def __aenter__(self) -> Load:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._began = time.monotonic()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> LoadStats:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self.stats.seconds = time.monotonic() - self._began
        return self.stats

    async def _worker(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            await self._one()
            pause = self.interval - (time.monotonic() - began)
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)

    async def _one(self) -> None:
        s = self.stats
        s.requests += 1
        try:
            response = await http.request(self.method, self.url, timeout=self.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            s.failed += 1
            s.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            return
        if not 200 <= response.status < 300:
            s.failed += 1
            s.errors[f"HTTP {response.status}"] += 1
            return
        try:
            body = json.loads(response.body)
        except ValueError:
            return
        if isinstance(body, dict):
            s.servers[str(body.get("server"))] += 1
            s.versions[str(body.get("version"))] += 1

"""Short adaptive polls: how zdt waits on things that cannot push an event.

The first poll comes after 10 ms and the interval grows by half each time up to 100 ms,
so a condition that becomes true quickly costs ~10-30 ms of latency (not a fixed 1 s
tick), while a long wait costs ~10 polls a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

FIRST_POLL = 0.01
MAX_POLL = 0.1


@dataclass(frozen=True)
class Timing:
    """The clock and sleep zdt waits with; tests pass fixed ones."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


REAL_TIME = Timing()


async def poll(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float,
               timing: Timing = REAL_TIME) -> tuple[bool, T]:
    """Call probe until done(result) or timeout; return (done, last result)."""
    deadline = timing.clock() + timeout
    interval = FIRST_POLL
    while True:
        result = await probe()
        if done(result):
            return True, result
        left = deadline - timing.clock()
        if left <= 0:
            return False, result
        await timing.sleep(min(interval, left))
        interval = min(interval * 1.5, MAX_POLL)


def polls(timeout: float) -> Iterator[None]:
    """The same rhythm for code without an event loop (the sandbox): yield, then sleep
    10 ms, growing to 100 ms, until `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL
    while True:
        yield
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(interval, left))
        interval = min(interval * 1.5, MAX_POLL)

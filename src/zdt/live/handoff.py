"""The supervisor's side of a checkpoint handoff: each answer awaited under a deadline,
checked before it is believed, and the original told to RESUME whenever the handoff fails
after its checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from zdt.errors import StepError
from zdt.live import segments
from zdt.live.process import Workload


@contextlib.asynccontextmanager
async def or_resume(original: Workload, timeout: float, late: str,
                    surrogate: Workload | None = None) -> AsyncIterator[None]:
    """A handoff step under a deadline: if it fails or runs late, the original (paused
    for the checkpoint) is told to accept again before the error goes up."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        await resume(original, surrogate)
        raise StepError(f"{late} within {timeout:g} s") from None
    except BaseException:
        await resume(original, surrogate)
        raise


async def resume(original: Workload, surrogate: Workload | None = None) -> None:
    """RESUME, once, to an original told to CHECKPOINT (a RESUME to one that never paused
    would start its accepting a second time). A surrogate that was handed the state
    segment is killed, and gone, first: never do two processes write the same pages (but
    if the original died, that surrogate is the one left with the state)."""
    if surrogate is not None and surrogate.holds_segment and surrogate.alive and \
            original.alive:
        surrogate.signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(surrogate.exited), 10.0)
    if original.paused and original.alive:
        original.paused = False
        with contextlib.suppress(OSError, RuntimeError):
            await original.send("RESUME")


async def retire(original: Workload) -> None:
    """RETIRE: the handoff is done; the original must not accept again (not even when its
    channel closes), it is about to get SIGTERM."""
    original.paused = False
    if original.alive:
        with contextlib.suppress(OSError, RuntimeError):
            await original.send("RETIRE")


def instant(words: list[str]) -> int | None:
    """The CLOCK_MONOTONIC ns of an ACCEPTING or STATE answer, if it is a number."""
    index = 1 if words[0] == "ACCEPTING" else 2
    try:
        return int(words[index])
    except (IndexError, ValueError):
        return None


async def state_answer(w: Workload, seq: int) -> tuple[list[str], bytes]:
    """The answer to CHECKPOINT seq, skipping late answers to called-off checkpoints."""
    while True:
        words, payload = await w.receive()
        if words[0] in ("STATE", "FAILED") and _seq_of(words) not in (None, str(seq)):
            continue
        if words[0] != "STATE" or instant(words) is None:
            raise StepError(f"the original answered {' '.join(words)[:120]!r} to CHECKPOINT")
        return words, payload


def _seq_of(words: list[str]) -> str | None:
    if words[0] == "STATE":
        return words[3] if len(words) > 3 else None
    return words[1] if len(words) > 1 else None


@dataclass(frozen=True)
class Handed:
    """A state segment the original handed over: its descriptor here, its size."""

    fd: int
    size: int


async def segment_of(original: Workload, words: list[str]) -> Handed | None:
    """`STATE … segment <size>`: the segment's descriptor, from the descriptor channel.
    It must be sealed at that size and mapped by the original no more (segments.py)."""
    if "segment" not in words:
        return None
    try:
        size = int(words[words.index("segment") + 1])
    except (IndexError, ValueError):
        raise StepError(f"the original announced a segment without a size: "
                        f"{' '.join(words)[:120]!r}") from None
    seq = words[3] if len(words) > 3 else None
    while True:       # a descriptor sent for a checkpoint called off earlier is dropped
        note, fd = await original.receive_fd()
        if seq is None or note[2:3] == [seq]:
            break
        os.close(fd)
    try:
        problem = _segment_problem(original, fd, size)
    except OSError as exc:
        problem = f"the original handed over a descriptor that is no segment: {exc}"
    if problem is not None:
        os.close(fd)
        raise StepError(problem)
    return Handed(fd, size)


def _segment_problem(original: Workload, fd: int, size: int) -> str | None:
    actual = os.fstat(fd).st_size
    sealed = fcntl.fcntl(fd, fcntl.F_GET_SEALS) & segments.SIZE_SEALS == segments.SIZE_SEALS
    if actual != size or not sealed:
        return (f"the original's segment is {actual} bytes (announced: {size}), "
                f"{'sealed' if sealed else 'its size not sealed'}")
    if segments.mapped_by(original.pid, fd):
        return (f"the original (pid {original.pid}) still maps its state segment after "
                "its checkpoint: it could change the state handed over")
    return None


async def restored(surrogate: Workload, state: bytes, segment: Handed | None = None
                   ) -> int | None:
    """RESTORE: the surrogate takes the state (and the segment's descriptor). One of this
    zdt (X_ZDT_GO) answers RESTORED and waits for GO: None. An older one answers ACCEPTING
    <ns> and accepts at once: that instant. Any other answer is a StepError (and the
    original resumes)."""
    if segment is None:
        await surrogate.send("RESTORE", len(state), payload=state)
    else:
        if not surrogate.notice.segment:
            raise StepError(f"the surrogate (pid {surrogate.pid}) does not say it takes a "
                            "state segment (its zdt.live helper is older): the state would "
                            "be lost; update its helper first")
        surrogate.holds_segment = True
        await surrogate.send_fd(segment.fd, "SEGMENT", segment.size)
        await surrogate.send("RESTORE", len(state), "segment", segment.size, payload=state)
    answer = await first_answer(surrogate)
    if surrogate.notice.go and answer == ["RESTORED"]:
        return None
    if not surrogate.notice.go and answer[0] == "ACCEPTING" and instant(answer) is not None:
        return instant(answer)
    raise StepError(f"the surrogate answered {' '.join(answer)[:80]!r} to RESTORE")


async def go(surrogate: Workload, timeout: float) -> int:
    """GO: the surrogate accepts from now on; when it says it does (else when GO was
    sent: told GO, it serves either way). A surrogate that died meanwhile serves nothing:
    StepError, and the original resumes."""
    sent = time.monotonic_ns()
    await surrogate.send("GO")
    try:
        async with asyncio.timeout(timeout):
            answer = await first_answer(surrogate)
    except (TimeoutError, StepError, OSError):
        answer = ["none"]
    if not surrogate.alive:
        raise StepError(f"the surrogate (pid {surrogate.pid}) exited when told to accept")
    return (instant(answer) if answer[0] == "ACCEPTING" else None) or sent


async def first_answer(w: Workload) -> list[str]:
    """The surrogate's next message, or an error as soon as it dies."""
    receive = asyncio.ensure_future(w.receive())
    died = asyncio.ensure_future(asyncio.shield(w.exited))
    try:
        done, _ = await asyncio.wait([receive, died], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receive, died):
            if not task.done():
                task.cancel()
    if receive in done and receive.exception() is None:
        return receive.result()[0]
    with contextlib.suppress(TimeoutError):   # a closed channel: its exit status tells why
        await asyncio.wait_for(asyncio.shield(w.exited), 2.0)
    if w.alive:
        raise StepError(f"the surrogate (pid {w.pid}) closed its channel while restoring")
    raise StepError(f"the surrogate (pid {w.pid}) exited with {w.exited.result()} "
                    "while restoring the state")

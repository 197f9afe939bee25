"""The live supervisor: holds a workload's listening sockets and hands them, with the
workload's state, from the running process to a surrogate started from a new home.

Invariant: at any time one or two workload processes, at most one of them not ready.
The one that serves is `current`; a `surrogate` exists only during an update, and if
anything goes wrong it is killed and `current` (which never gave up its state) goes on.

Update (AIX Live Update's sequence, on one host, no load balancer):
  1. validate; the caller holds the host lock
  2. the new home is in place (a directory, or an archive extracted and verified)
  3. start the surrogate from it with the same listening sockets
  4. wait for it to be ready (sd_notify READY=1, or the health URL)
  5. checkpoint: the original stops accepting, finishes in flight, sends its state
  6. restore: the surrogate takes the state, and accepts once told GO
  7. retire the original (SIGTERM; SIGKILL after the stop timeout)
Connections arriving between 5 and 6 wait in the kernel's accept queue: none is refused.
A workload that does not checkpoint is handed over by overlap: both accept for a moment,
then the original drains. Blackout = from the original's stop to the surrogate's start of
accepting, both stamped on CLOCK_MONOTONIC by the processes themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zdt import atomic, http
from zdt.errors import PreconditionError, StepError, ZdtError
from zdt.live import adopt, handoff, homes, process, readiness
from zdt.live.journal import LiveJournal
from zdt.live.process import Workload
from zdt.live.protocol import encode


@dataclass(frozen=True)
class LiveConfig:
    name: str
    listen: tuple[str, ...]            # "host:port"
    home: str
    command: tuple[str, ...]
    state_dir: str
    health: str | None = None
    ready_timeout: float = 30.0
    checkpoint_timeout: float = 30.0
    stop_timeout: float = 10.0
    max_state_bytes: int = process.DEFAULT_MAX_STATE
    stop_signal: str = "TERM"          # the workload's graceful stop (lighttpd: INT)


@dataclass
class Snapshot:
    """What the supervisor keeps in STATE_DIR/state.json (written, then renamed)."""

    home: str
    previous_home: str | None = None
    last: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    pid: int | None = None             # the workload serving (what --adopt takes back)


class Supervisor:
    def __init__(self, config: LiveConfig, adopted: int | None = None) -> None:
        self.config = config
        self.dir = Path(config.state_dir)
        self.adopted = adopted      # a workload pid left serving by a supervisor that died
        self.sockets = adopt.sockets_of(adopted, config.listen) if adopted else \
            [process.listen(a) for a in config.listen]
        self.snapshot = Snapshot(config.home)
        if adopted:
            self.snapshot = Snapshot(**json.loads((self.dir / "state.json").read_text()))
        self.current: Workload | None = None
        self.workloads: set[Workload] = set()     # every process started, until it exits
        self.note: str | None = None
        self.busy = asyncio.Lock()
        self.done = asyncio.Event()
        self.journal = LiveJournal(self.dir)

    # -- life --------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.done.set)
        try:
            await self._start()
            await self._serve()
        finally:
            await self._shutdown()

    async def _start(self) -> None:
        if self.adopted:
            self.current = await adopt.workload(self.adopted, self.snapshot.home, self.dir)
            self.workloads.add(self.current)
            self.note = f"adopted pid {self.adopted}: its next update is an overlap"
            return
        self.current = await self._spawn(self.config.home, "original")
        ready = asyncio.ensure_future(self._wait_ready(self.current, self.config.ready_timeout,
                                                       by_health=True))
        stop = asyncio.ensure_future(self.done.wait())
        await asyncio.wait([ready, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not ready.done():
            ready.cancel()
            raise ZdtError(f"{self.config.name}: stopped before the workload was ready")
        ready.result()
        self._save()

    async def _serve(self) -> None:
        path = self.dir / "control.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._client, path=str(path))
        finally:
            os.umask(old)
        async with server:
            watch = asyncio.create_task(self._watch())
            await self.done.wait()
            watch.cancel()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    async def _watch(self) -> None:
        """The workload dying on its own ends the supervisor too (nothing to hand over)."""
        while True:
            current = self.current
            assert current is not None
            await asyncio.shield(current.exited)
            if self.current is current and not self.busy.locked():
                self.done.set()
                return
            await asyncio.sleep(0.05)

    async def _shutdown(self) -> None:
        """Let an update under way end (its own timeouts bound it), then retire every
        process started: none may be left holding the port without a supervisor."""
        async with self.busy:
            await asyncio.gather(*(w.retire(self.config.stop_timeout, self.config.stop_signal)
                                   for w in list(self.workloads) if w.alive))
        for s in self.sockets:
            s.close()
        self.journal.close()

    async def _spawn(self, home: str, role: str) -> Workload:
        names = [a.replace(":", "_") for a in self.config.listen]
        w = await process.spawn(list(self.config.command), home=home, role=role,
                                sockets=self.sockets, names=names, run_dir=self.dir,
                                log=self.dir / "workload.log", extra_env={})
        w.max_state = self.config.max_state_bytes
        self.workloads.add(w)
        w.exited.add_done_callback(lambda _: self.workloads.discard(w))
        return w

    async def _wait_ready(self, w: Workload, timeout: float, by_health: bool = False) -> None:
        """sd_notify READY=1, or the health URL answering 200: for the first process any
        answer; for a surrogate only one it gave itself (the original shares the port)."""
        async def health() -> None:
            while self.config.health:
                if await self._healthy(w, alone=by_health):
                    w.notice.ready, w.notice.by = True, w.notice.by or "health"
                    return
                await asyncio.sleep(0.02)
            await asyncio.Event().wait()

        waits = [asyncio.ensure_future(w.notice.event.wait()), asyncio.ensure_future(health()),
                 asyncio.ensure_future(asyncio.shield(w.exited))]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()
        if not done:
            raise StepError(f"the workload (pid {w.pid}) was not ready after {timeout:g} s")
        if not w.alive:
            raise StepError(f"the workload (pid {w.pid}) exited with {w.exited.result()} "
                            f"before it was ready; see {self.dir / 'workload.log'}")

    async def _healthy(self, w: Workload, *, alone: bool) -> bool:
        assert self.config.health is not None
        if not alone:
            return await readiness.answered_by(self.config.health, w.pid)
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            return (await http.get(self.config.health, timeout=1.0)).status == 200
        return False

    # -- control socket ----------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline() or b"{}")
            op = request.get("op")
            if op == "status":
                writer.write(encode({"result": self.status()}))
            elif op in ("update", "revert"):
                writer.write(encode(await self._update_op(op, request)))
            elif op == "stop":
                writer.write(encode({"result": {"stopping": True}}))
                self.done.set()
            else:
                writer.write(encode({"error": f"unknown operation {op!r}", "exit": 2}))
            await writer.drain()
        except (ValueError, ConnectionError) as exc:
            with contextlib.suppress(ConnectionError):
                writer.write(encode({"error": f"bad request: {exc}", "exit": 2}))
        finally:
            writer.close()

    async def _update_op(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if self.busy.locked():
            return {"error": "an update is already under way", "exit": 4}
        async with self.busy:
            try:
                home = request.get("home") if op == "update" else self._previous()
                return {"result": await self.update(str(home), op, request)}
            except ZdtError as exc:
                return {"error": str(exc), "exit": exc.exit_code}

    def _previous(self) -> str:
        if not self.snapshot.previous_home:
            raise PreconditionError(f"{self.config.name}: no previous home to go back to")
        return self.snapshot.previous_home

    def status(self) -> dict[str, Any]:
        w = self.current
        return {"name": self.config.name, "supervisor_pid": os.getpid(),
                "listen": list(self.config.listen), "home": self.snapshot.home,
                "previous_home": self.snapshot.previous_home,
                "version": homes.version_of(self.snapshot.home),
                "command": list(self.config.command),
                "pid": w.pid if w else None, "ready": bool(w and w.notice.ready),
                "checkpoint": bool(w and w.notice.checkpoint), "last_update": self.snapshot.last,
                "readiness": (w.notice.by if w else "") or "", "health": self.config.health}

    # -- update ------------------------------------------------------------------------

    async def update(self, home: str, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        if not Path(home).is_dir():
            raise PreconditionError(f"{home}: the new home is not a directory")
        timeouts = {k: float(request.get(k) or getattr(self.config, k))
                    for k in ("ready_timeout", "checkpoint_timeout", "stop_timeout")}
        wid = f"live-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
        original = self.current
        self.journal.begin(wid, self.config.name, kind, home, self.snapshot.home, timeouts)
        began = time.monotonic()
        try:
            facts = await self._handoff(wid, home, timeouts)
        except Exception as exc:       # whatever went wrong, the journal and caller hear it
            reason = str(exc) or type(exc).__name__
            self.journal.end(wid, self._end_after_failure(original), error=reason)
            raise StepError(f"live {kind} of {self.config.name} failed: {reason}; "
                            f"{self._who_serves()}") from exc
        facts.update(id=wid, kind=kind, total_ms=round((time.monotonic() - began) * 1000, 3),
                     home=home, previous_home=self.snapshot.home)
        self.snapshot = Snapshot(home, self.snapshot.home, facts,
                                 [*self.snapshot.history, facts][-20:])
        self._save()
        self.journal.end(wid, "succeeded", facts=facts)
        return facts

    def _end_after_failure(self, original: Workload | None) -> str:
        """What a failed handoff left serving: the original (reverted), the surrogate
        without the state (taken-over), or nothing (failed)."""
        w = self.current
        if w is None or not w.alive:
            return "failed"
        return "reverted" if w is original else "taken-over"

    def _who_serves(self) -> str:
        w = self.current
        note, self.note = self.note, None
        if w is None or not w.alive:
            return "no workload process is left: `zdt live stop` and run it again"
        return note or f"pid {w.pid} serves from {w.home}" + (
            " (the original keeps serving)" if w.role == "original" else "")

    async def _handoff(self, wid: str, home: str, t: dict[str, float]) -> dict[str, Any]:
        original = self.current
        assert original is not None
        step = _Steps(self.journal, wid)
        step("surrogate")
        surrogate = await self._spawn(home, "surrogate")
        both = 0.0
        try:
            step("ready")
            await self._wait_ready(surrogate, t["ready_timeout"])
            if surrogate.notice.checkpoint and original.notice.checkpoint:
                facts = await self._checkpoint(original, surrogate, t, step)
            else:
                step("checkpoint", "overlap: no checkpoint support, both accept a moment")
                if surrogate.notice.checkpoint:
                    await surrogate.send("GO")     # it waits for a state that will not come
                facts = {"mode": "overlap", "blackout_ms": 0.0, "state_bytes": 0}
                both = time.monotonic()        # from here both accept, until the original
        #                                        has drained and exited (overlap_ms)
        except BaseException:
            await self._fall_back(original, surrogate)
            raise
        # committed: the surrogate serves. The original is told it retires before anything
        # else (a journal write) can fail, so it never accepts again beside the surrogate,
        # even if this supervisor dies now
        self.current = surrogate
        await handoff.retire(original)
        problems = []      # from here on the update has happened, whatever fails
        try:
            step("retire")
        except ZdtError as exc:
            problems.append(str(exc))
        try:
            clean = await original.retire(t["stop_timeout"], self.config.stop_signal)
        except Exception as exc:
            clean = False
            problems.append(f"retiring the original (pid {original.pid}): {exc}")
        if facts["mode"] == "overlap":
            facts["overlap_ms"] = round((time.monotonic() - both) * 1000, 3)
        with contextlib.suppress(ZdtError):
            step(None)
        return {**facts, "original_pid": original.pid, "surrogate_pid": surrogate.pid,
                "original_exited_cleanly": clean,
                **({"problems_after_handoff": problems} if problems else {})}

    async def _fall_back(self, original: Workload, surrogate: Workload) -> None:
        """A failed handoff: the original serves on (told to RESUME whatever failed after
        its checkpoint: a bad answer, a journal write). Only if it died meanwhile does a
        ready surrogate take over (without the state) rather than leave the port unserved."""
        await handoff.resume(original, surrogate)
        if original.alive and original.channel_closed:
            # its channel closed first: its exit is on the way (the pidfd tells a moment later)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(original.exited), 2.0)
        if original.alive or not (surrogate.alive and surrogate.notice.ready):
            await surrogate.retire(0.5)
            return
        with contextlib.suppress(OSError):
            await surrogate.send("GO")
        self.current = surrogate
        self.snapshot = Snapshot(surrogate.home, self.snapshot.home, self.snapshot.last,
                                 self.snapshot.history)
        self._save()
        self.note = (f"the original died: the surrogate (pid {surrogate.pid}) took over from "
                     f"{surrogate.home}, " + ("with the state segment it was handed"
                                             if surrogate.holds_segment else "without the state"))

    async def _checkpoint(self, original: Workload, surrogate: Workload,
                          t: dict[str, float], step: _Steps) -> dict[str, Any]:
        step("checkpoint")
        seq = time.monotonic_ns()
        original.paused = True
        await original.send("CHECKPOINT", seq)
        segment: handoff.Handed | None = None
        try:
            async with handoff.or_resume(original, t["checkpoint_timeout"],
                                         f"the original (pid {original.pid}) did not "
                                         "checkpoint"):
                words, state = await handoff.state_answer(original, seq)
                stopped = int(words[2])
                segment = await handoff.segment_of(original, words)
            async with handoff.or_resume(original, t["ready_timeout"],
                                         f"the surrogate (pid {surrogate.pid}) did not "
                                         "restore the state", surrogate):
                accepting = await handoff.restored(surrogate, state, segment)
        finally:
            if segment is not None:
                os.close(segment.fd)      # the surrogate has its own descriptor (or none)
        # committed: from GO on the surrogate accepts (never before: a handoff called off
        # above leaves no request answered by a process whose state is thrown away)
        accepting = accepting or await handoff.go(surrogate, t["ready_timeout"])
        step("restore")        # journaled after the blackout, not inside it
        return {"mode": "checkpoint", "state_bytes": len(state),
                **({"segment_bytes": segment.size} if segment else {}),
                "blackout_ms": round((accepting - stopped) / 1e6, 3)}

    def _save(self) -> None:
        self.snapshot.pid = self.current.pid if self.current else None
        atomic.write_text(self.dir / "state.json", json.dumps(asdict(self.snapshot), indent=1),
                          0o600)


class _Steps:
    """Journals each phase of a handoff as it begins (and the previous one as done)."""

    def __init__(self, journal: LiveJournal, uid: str) -> None:
        self.journal, self.uid = journal, uid
        self.name: str | None = None

    def __call__(self, name: str | None, note: str | None = None) -> None:
        if self.name is not None:
            self.journal.phase(self.uid, self.name, "done")
        self.name = name
        if name is not None:
            self.journal.phase(self.uid, name, "running", note)

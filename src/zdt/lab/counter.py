"""A stateful sample workload for `zdt live`: a counter served over HTTP.

    python -m zdt.lab.counter [--port 8080] [--state-bytes N] [--segment]

  GET /        {"version", "pid", "count"}     (version: $ZDT_HOME/VERSION)
  POST /incr   adds one, answers the same object
  GET /health  200

Its count (and, for benchmarks, N extra bytes) is its state: under `zdt live` it is handed
to the surrogate at checkpoint, so no increment is lost across an update. With --segment
it lives in a state segment (`zdt.live.segment`), handed over by reference, not copied.

The accept loop runs behind a gate: a checkpoint closes the gate, waits until the loop has
seen it (so nothing is accepted after the state is taken) and until the requests in flight
are done, then returns the state. A failed handoff opens the gate again.

Test switches, files in the home: NEVER_READY (never tells zdt it is ready),
NO_CHECKPOINT (like --no-checkpoint), HOLD_VIEW (holds a view of its segment at a
checkpoint), OLD_HELPER (does not announce that it takes a segment),
CRASH_ON_RESTORE (exits 3 when handed a state), SLOW_CHECKPOINT (seconds a checkpoint
takes, read from the home the process runs from).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from zdt import live

PAGE = mmap.PAGESIZE


class Counter:
    def __init__(self, home: Path, blob: bytes, segment: int | None = None) -> None:
        """segment: keep the count and `segment` bytes in a state segment (handed over
        by reference), else the count and `blob` are the state handed over as bytes."""
        self.home = home
        self.version = _read(home / "VERSION") or "unknown"
        self.seg: mmap.mmap | None = None
        self.segment_bytes = segment
        self._count = 0
        self.blob = blob
        if segment is not None and os.environ.get("ZDT_LIVE_ROLE") != "surrogate":
            self.seg = live.segment(8 + segment)       # a surrogate is handed its own
            for offset in range(8, len(self.seg), PAGE):
                self.seg[offset] = 1                   # real memory, every page of it
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.paused = threading.Event()
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)
        self.stopping = False
        self.serving = False
        # a byte on this pair wakes the accept loop at once, so a checkpoint does not wait
        # out a select timeout: that wait would be blackout
        self.wake_r, self.wake_w = socket.socketpair()

    @property
    def count(self) -> int:
        if self.segment_bytes is None:
            return self._count
        if self.seg is None:          # a surrogate that took over without a state
            self.seg = live.segment(8 + self.segment_bytes)
        return int(struct.unpack_from(">Q", self.seg, 0)[0])

    @count.setter
    def count(self, value: int) -> None:
        if self.segment_bytes is None:
            self._count = value
            return
        if self.seg is None:
            self.seg = live.segment(8 + self.segment_bytes)
        struct.pack_into(">Q", self.seg, 0, value)

    def state(self) -> bytes:
        if self.segment_bytes is not None:
            return b""                # it is all in the segment
        return struct.pack(">Q", self.count) + self.blob

    def restore(self, data: bytes) -> None:
        if (self.home / "CRASH_ON_RESTORE").exists():
            print("crashing on restore, as the home asks", file=sys.stderr, flush=True)
            os._exit(3)
        if (self.home / "BAD_ACCEPTING").exists():  # a surrogate answering out of protocol
            live.send_raw(b"ACCEPTING soon\n")
        if self.segment_bytes is not None:
            self.seg = live.segment()  # the original's pages, mapped: nothing copied
            return
        self.count = struct.unpack(">Q", data[:8])[0]
        self.blob = data[8:]

    def pause(self) -> bytes:
        if self.seg is not None and (self.home / "HOLD_VIEW").exists():
            self.view = memoryview(self.seg)      # a workload breaking the segment's rule
        self.gate.clear()
        self.wake_w.send(b"!")
        self.paused.wait()
        with self.idle:
            self.idle.wait_for(lambda: self.in_flight == 0)
            delay = float(_read(self.home / "SLOW_CHECKPOINT") or 0)
            if delay:
                time.sleep(delay)
            return self.state()

    def resume(self) -> None:
        if self.segment_bytes is not None:
            self.seg = live.segment()     # mapped again: the handoff did not take it
        # gate first: the loop must not see a closed gate between these two lines and
        # raise `paused` again, or the next pause would not wait for the loop
        self.gate.set()
        self.paused.clear()

    def serve(self, socks: list[socket.socket]) -> None:
        for s in socks:
            s.setblocking(False)
        while not self.stopping:
            if not self.gate.is_set():
                self.paused.set()         # the checkpoint may now take the state
                self.gate.wait(0.05)
                continue
            readable, _, _ = select.select([*socks, self.wake_r], [], [], 0.5)
            if self.wake_r in readable:
                self.wake_r.recv(64)
                continue
            for s in readable:
                if not self.gate.is_set() or self.stopping:
                    break
                try:
                    conn, addr = s.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                with self.lock:
                    self.in_flight += 1
                threading.Thread(target=self._handle, args=(conn, addr), daemon=True).start()
        self.paused.set()          # a checkpoint waiting on the loop is not left hanging

    def _handle(self, conn: socket.socket, addr: Any) -> None:
        try:
            # a client that connects and says nothing must not hold a checkpoint forever
            conn.settimeout(5.0)
            Handler(conn, addr, self)
        except OSError:
            pass
        finally:
            conn.close()
            with self.idle:
                self.in_flight -= 1
                self.idle.notify_all()

    def stop(self) -> None:
        """SIGTERM: the accept loop ends; main() then waits for the requests in flight
        (not here: a signal handler must not wait on a lock the main thread may hold)."""
        if not self.serving:
            os._exit(0)          # still starting (or never ready): nothing in flight
        self.stopping = True
        self.wake_w.send(b"!")

    def drain(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=30)


class Handler(BaseHTTPRequestHandler):
    server_version = "zdt-counter"

    def __init__(self, conn: socket.socket, addr: Any, counter: Counter) -> None:
        self.counter = counter
        # no socketserver here (the accept loop is ours): the handler never reads .server
        super().__init__(conn, addr, None)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/":
            self._send(200, self._body())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/incr":
            self._send(404, {"error": "not found"})
            return
        with self.counter.lock:
            self.counter.count += 1
        self._send(200, self._body())

    def _body(self) -> dict[str, Any]:
        return {"version": self.counter.version, "pid": os.getpid(),
                "count": self.counter.count}

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zdt.lab.counter")
    p.add_argument("--port", type=int, default=8080, help="when not run by zdt live")
    p.add_argument("--state-bytes", type=int, default=0, help="extra state to hand over")
    p.add_argument("--segment", action="store_true",
                   help="keep the count and the extra state in a segment handed over by "
                   "reference (zdt.live.segment), not as bytes")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="behave like a plain socket-activated server (handed over by overlap)")
    args = p.parse_args(argv)
    home = Path(os.environ.get("ZDT_HOME", "."))
    counter = Counter(home, b"" if args.segment else b"\0" * args.state_bytes,
                      args.state_bytes if args.segment else None)
    socks = live.listeners()
    if not socks:
        s = socket.create_server(("127.0.0.1", args.port), reuse_port=False, backlog=512)
        socks = [s]
    if not (args.no_checkpoint or (home / "NO_CHECKPOINT").exists()):
        live.on_checkpoint(counter.pause, counter.resume)
    signal.signal(signal.SIGTERM, lambda *_: counter.stop())
    if (home / "NEVER_READY").exists():
        time.sleep(3600)
        return 1
    if (home / "OLD_HELPER").exists():    # a helper from before state segments
        announce = live._notify

        def older(message: str) -> None:
            announce(message.replace("\nX_ZDT_SEGMENT=1", ""))

        live._notify = older
    if not (home / "NO_NOTIFY").exists():   # else: a plain server, known ready by --health
        live.ready(counter.restore)
    counter.serving = True
    counter.serve(socks)
    counter.drain()
    return 0


if __name__ == "__main__":
    sys.exit(main())

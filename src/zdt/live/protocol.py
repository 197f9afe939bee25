"""The wire between the live supervisor and a workload process, and between `zdt live`
commands and the supervisor. Both are line-framed: a header line of words, then, where
the header says so, exactly N bytes of payload.

Supervisor ↔ workload (a socketpair; the workload's end is fd $ZDT_LIVE_FD):

    → CHECKPOINT <seq>          stop accepting, finish requests in flight, send the state
    ← STATE <n> <stopped_ns> <seq> [segment <size>]
                                n bytes follow; stopped_ns: when accepting stopped (a STATE
                                with an old seq answers a checkpoint that timed out and was
                                called off: it is read and dropped); with `segment`, the
                                state segment's descriptor comes on the descriptor channel
    → RESUME                    (after a failed handoff) accept again, state untouched
    → RETIRE                    (after a handoff) the surrogate serves: never accept again
    → RESTORE <n> [segment <size>]   n bytes of state follow (surrogate only); with
                                `segment`, the descriptor was sent first on its channel
    ← RESTORED                  the state is taken; the surrogate waits for GO
    → GO                        start accepting (surrogate only: after RESTORED, or with no
                                state to restore); anything else ends a restored surrogate
    ← ACCEPTING <ns>            the surrogate accepts from now on
    ← FAILED <reason...>        the workload could not do what was asked

Beside it, a SOCK_SEQPACKET pair ($ZDT_LIVE_FDS in the workload) carries descriptors
(SCM_RIGHTS): `SEGMENT <size> [seq]` with a memfd, one per message (segments.py).

Times are CLOCK_MONOTONIC nanoseconds, the same clock in every process of the host, so
the supervisor can subtract one process's instant from another's.

Command ↔ supervisor (the control socket, mode 0600): one JSON object per line each way;
the supervisor answers with zero or more {"event": ...} lines and one {"result": ...} or
{"error": ..., "exit": N} line.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_STATE = 1 << 31       # 2 GiB: a state larger than this is a bug, not a workload
MAX_LINE = 1 << 16        # a header line longer than this is not a header


class ProtocolError(Exception):
    """The other side sent something that is not a message of this protocol."""


class Channel:
    """Blocking, line-framed messages over a stream socket (used from threads)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, *words: object, payload: bytes = b"") -> None:
        self.sock.sendall(" ".join(str(w) for w in words).encode() + b"\n" + payload)

    def receive(self) -> tuple[list[str], bytes]:
        """One message: its words, and its payload when the header announces one."""
        line = self._line()
        words = line.split()
        if not words:
            raise ProtocolError("an empty message")
        size = 0
        if words[0] in ("STATE", "RESTORE"):
            try:
                size = int(words[1])
            except (IndexError, ValueError):
                raise ProtocolError(f"{words[0]} without a size: {line!r}") from None
            if not 0 <= size <= MAX_STATE:
                raise ProtocolError(f"{words[0]} of {size} bytes")
        return words, self._exactly(size)

    def _line(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                self.buffer = b""        # dropped: the next read starts afresh
                raise ProtocolError(f"a header line of over {MAX_LINE} bytes")
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")

    def _exactly(self, size: int) -> bytes:
        """Read a payload straight into one buffer: a 100 MB state is copied once, not
        once per chunk as appending to bytes would."""
        if len(self.buffer) >= size:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
            return data
        out = bytearray(size)
        have = len(self.buffer)
        out[:have] = self.buffer
        self.buffer = b""
        view = memoryview(out)
        while have < size:
            n = self.sock.recv_into(view[have:], size - have)
            if n == 0:
                raise EOFError("the other side closed the channel")
            have += n
        return bytes(out)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the other side closed the channel")
        self.buffer += chunk


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"

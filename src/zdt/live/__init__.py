"""zdt.live: the small helper a Python workload uses to be live-updated by `zdt live`.

    from zdt import live

    socks = live.listeners()              # the listening sockets zdt holds (fds 3, 4, ...)
    live.on_checkpoint(pause, resume)     # pause() -> bytes: stop accepting, finish the
                                          # requests in flight, return the state
    live.ready(restore)                   # tell zdt; a surrogate's restore(state) runs here
    ... accept on socks ...               # zdt was told, after restore, that it accepts

State that is large is better kept in a segment: `seg = live.segment(size)` is a shared
mapping (mmap) of a memfd that zdt hands to the surrogate by reference at the checkpoint,
with no copy whatever its size; in the surrogate, `live.segment()` (in `restore`) is the
same memory. Rules (segments.py): hold no memoryview of it past `pause`, and no child
process mapping it; after a failed handoff, `resume` must take `live.segment()` again
(the old mapping is closed); a surrogate's `restore` must not write to it (until GO the
original may still get it back); its size is fixed for good.

Without zdt (no LISTEN_FDS) `listeners()` returns [] and `ready()` returns None, so the
same program also runs on its own. Any socket-activation-aware server works under zdt
without this helper (readiness by sd_notify READY=1 or a health URL); it is then handed
over by overlap, with no state.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
import time
from collections.abc import Callable

from zdt.live import segments
from zdt.live.protocol import Channel, ProtocolError

SD_LISTEN_FDS_START = 3

_pause: Callable[[], bytes] | None = None
_resume: Callable[[], None] | None = None
_restored: bytes | None = None
_channel: Channel | None = None
_fds: socket.socket | None = None                  # the descriptor channel (SCM_RIGHTS)
_segment: segments.Segment | None = None
_state_lock = threading.Lock()
# pausing: `pause` runs; paused: the state was sent and no RESUME nor retirement came yet;
# resume: a RESUME came while pausing (served as soon as `pause` returns)
_pending: dict[str, bool] = {"pausing": False, "paused": False, "resume": False,
                             "retired": False}


def listeners() -> list[socket.socket]:
    """The inherited listening sockets, in the order of `--listen`, if they are for us."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]


def on_checkpoint(pause: Callable[[], bytes], resume: Callable[[], None]) -> None:
    """Register the workload's checkpoint: `pause` stops accepting, waits for the requests
    in flight and returns the state; `resume` accepts again (a handoff that failed)."""
    global _pause, _resume
    _pause, _resume = pause, resume


def segment(size: int | None = None) -> mmap.mmap:
    """The workload's state segment: the one handed over by the previous process (in a
    surrogate, from `restore` on), else this process's own, made of `size` bytes (zeros)
    the first time."""
    global _segment
    if _segment is None:
        if size is None:
            raise ValueError("no state segment yet: give its size")
        _segment = segments.Segment.create(size)
    if size is not None and size != _segment.size:
        raise ValueError(f"the state segment is {_segment.size} bytes, not {size}")
    return _segment.attach()


def restored_state() -> bytes | None:
    """The state handed over by the previous process, once `ready()` returned."""
    return _restored


def ready(restore: Callable[[bytes], None] | None = None) -> bytes | None:
    """Tell zdt this process is ready. A surrogate of a checkpointing workload then waits
    here for the original's state, hands it to `restore`, and only then tells zdt that it
    accepts: a restore that raises or crashes leaves the original serving. The state is
    returned, and kept for `restored_state()`."""
    global _restored, _channel, _fds
    # X_ZDT_GO: this helper answers RESTORED and waits for GO (a supervisor may then tell
    # it from an older helper, which accepted as soon as it had restored)
    # X_ZDT_SEGMENT: it takes a state segment on RESTORE (a supervisor calls a segment's
    # handoff off with a surrogate that does not say so, rather than lose the state)
    _notify("READY=1" + ("\nX_ZDT_CHECKPOINT=1\nX_ZDT_GO=1\nX_ZDT_SEGMENT=1" if _pause else ""))
    fd = os.environ.get("ZDT_LIVE_FD")
    if fd is None:
        return None
    _channel = Channel(socket.socket(fileno=int(fd)))
    if os.environ.get("ZDT_LIVE_FDS"):
        _fds = socket.socket(fileno=int(os.environ["ZDT_LIVE_FDS"]))
    if os.environ.get("ZDT_LIVE_ROLE") == "surrogate" and _pause is not None:
        words, payload = _channel.receive()
        if words[0] == "RESTORE":
            _restored = payload
            _take_segment(words)
            if restore is not None:
                try:
                    restore(payload)
                except Exception as exc:
                    _channel.send("FAILED", "restore", f"{type(exc).__name__}: {exc}")
                    raise
            _channel.send("RESTORED")
            _await_go()
        _channel.send("ACCEPTING", time.monotonic_ns())
    threading.Thread(target=_serve, name="zdt-live", daemon=True).start()
    return _restored


def _take_segment(words: list[str]) -> None:
    """`RESTORE <n> segment <size>`: the original's segment comes on the descriptor
    channel; it replaces any this process made, and is mapped (no copy)."""
    global _segment
    if "segment" not in words or _fds is None:
        return
    size = int(words[words.index("segment") + 1])
    _, fd = segments.receive(_fds)
    if _segment is not None:
        _segment.detach()
        os.close(_segment.fd)
    _segment = segments.Segment.received(fd, size)


def _await_go() -> None:
    """A restored surrogate accepts only once the supervisor says GO: a handoff it calls
    off (the surrogate's answer was wrong, the original resumed) must never see this
    process answer a request, whose effect would be lost with it. Anything but GO, or the
    supervisor gone, ends the process before it accepts."""
    assert _channel is not None
    try:
        words, _ = _channel.receive()
    except (ProtocolError, EOFError, OSError):
        words = ["gone"]
    if words[0] != "GO":
        os._exit(0)


def _serve() -> None:
    """Answer the supervisor for the rest of the process's life. A checkpoint runs in its
    own thread, so a RESUME (the supervisor gave up waiting) is read even while `pause`
    still waits for requests in flight; the workload then resumes as soon as it returns."""
    assert _channel is not None
    while True:
        try:
            words, _ = _channel.receive()
        except ProtocolError:
            continue                    # not a message: wait for the next one
        except (EOFError, OSError):
            _orphaned()
            return
        if words[0] == "CHECKPOINT" and _pause is not None:
            seq = words[1] if len(words) > 1 else "0"
            with _state_lock:
                _pending["resume"] = False
            threading.Thread(target=_checkpoint, args=(seq,), name="zdt-live-checkpoint",
                             daemon=True).start()
        elif words[0] == "RESUME" and _resume is not None:
            _resume_now_or_after_pause()
        elif words[0] == "RETIRE":
            with _state_lock:
                _pending.update(paused=False, resume=False, retired=True)


def _resume_now_or_after_pause() -> None:
    with _state_lock:
        if _pending["retired"]:
            return                     # a surrogate serves: this process only ends
        pausing, paused = _pending["pausing"], _pending["paused"]
        _pending["resume"] = pausing
        _pending["paused"] = False
    if paused and _resume is not None:
        if _segment is not None:
            _segment.reclaim()         # the handoff failed: the segment is this one's again
        _resume()


def _orphaned() -> None:
    """The supervisor is gone (killed mid-handoff): nobody will hand the work to a
    surrogate nor retire this process, so a paused workload accepts again by itself."""
    _resume_now_or_after_pause()


def _checkpoint(seq: str) -> None:
    assert _channel is not None and _pause is not None
    with _state_lock:
        _pending["pausing"] = True
    stopped = time.monotonic_ns()
    try:
        state = _pause()
    except Exception as exc:  # the supervisor must hear of it, not wait forever
        _channel.send("FAILED", seq, f"{type(exc).__name__}: {exc}")
        state = None
    with _state_lock:         # a RESUME now waits until the state is sent (or not)
        _pending["pausing"] = False
        called_off = _pending["resume"]
        _pending["resume"] = False
        problem = None if called_off or state is None else _send_state(state, stopped, seq)
        paused = _pending["paused"] = not called_off and state is not None and problem is None
    if not paused and _resume is not None:     # called off, pause failed, the segment could
        if _segment is not None:               # not go, or the supervisor died while the
            _segment.reclaim()                 # state was on its way: serve on
        _resume()


def _send_state(state: bytes, stopped: int, seq: str) -> str | None:
    """STATE (and the segment's descriptor); why not, if it could not be sent."""
    assert _channel is not None
    try:
        if _segment is None:
            _channel.send("STATE", len(state), stopped, seq, payload=state)
            return None
        why = None if _fds is not None else ("this supervisor has no descriptor channel "
                                             "for a state segment (an older zdt)")
        if why is None:
            try:
                _segment.detach()
            except BufferError:     # a view of it is still held: it could still change
                why = "the workload still holds a view of its state segment"
        if why is not None:
            _channel.send("FAILED", seq, why)
            return why
        _channel.send("STATE", len(state), stopped, seq, "segment", _segment.size,
                      payload=state)
        assert _fds is not None
        _segment.hand_over(_fds, seq)
        return None
    except OSError:
        return "orphaned"


def send_raw(data: bytes) -> None:
    """Bytes written as they are on the channel to the supervisor: for testing how it
    takes answers that are not of the protocol. A workload never needs it."""
    if _channel is not None:
        _channel.sock.sendall(data)


def _notify(message: str) -> None:
    """sd_notify: one datagram to $NOTIFY_SOCKET (an abstract socket when it starts '@')."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)

"""The workload side of a handoff (`zdt.live`): once paused for a checkpoint it accepts
again by itself if the supervisor's channel closes — unless the supervisor said RETIRE
(a surrogate serves), in which case it never accepts again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import zdt.live as live
from zdt.live.protocol import Channel


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, list[str]]]:
    ours, theirs = socket.socketpair()
    resumed: list[str] = []
    monkeypatch.setattr(live, "_channel", Channel(theirs))
    monkeypatch.setattr(live, "_resume", lambda: resumed.append("resume"))
    monkeypatch.setattr(live, "_pending", {"pausing": False, "paused": True, "resume": False,
                                           "retired": False})
    yield ours, resumed
    ours.close()
    theirs.close()


def serve_until_closed(ours: socket.socket, *messages: bytes) -> None:
    thread = threading.Thread(target=live._serve, daemon=True)
    thread.start()
    for m in messages:
        ours.sendall(m)
    ours.shutdown(socket.SHUT_WR)                   # the supervisor is gone
    thread.join(10)
    assert not thread.is_alive()


def test_a_paused_workload_resumes_when_the_supervisor_dies(
        helper: tuple[socket.socket, list[str]]) -> None:
    ours, resumed = helper
    serve_until_closed(ours)
    assert resumed == ["resume"]


def test_a_retired_workload_never_accepts_again(
        helper: tuple[socket.socket, list[str]]) -> None:
    ours, resumed = helper
    serve_until_closed(ours, b"RETIRE\n", b"RESUME\n")
    assert resumed == []


def test_garbage_and_an_overlong_line_do_not_stop_the_helper(
        helper: tuple[socket.socket, list[str]]) -> None:
    ours, resumed = helper
    serve_until_closed(ours, b"\n", b"x" * 70_000 + b"\n", b"RESUME\n")
    assert resumed == ["resume"]                    # the RESUME after them was read

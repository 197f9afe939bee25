"""The sample service as a plain process: graceful SIGTERM, sessions, failure injection."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import get

from zdt.lab.sandbox.layout import free_ports


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "VERSION").write_text("v7\n")
    return tmp_path


def spawn(home: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zdt.lab.sample_service", "--home", str(home), "--port", str(port),
         "--server", "s1", "--node", "n1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def service(home: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    [port] = free_ports(1)
    proc = spawn(home, port)
    try:
        # It prints one line once its socket is bound: no polling needed.
        assert "listening on" in proc.stdout.readline()
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def test_identity_and_health(service: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = service
    status, _, body = get(url)
    assert (status, body) == (200, {"version": "v7", "server": "s1", "node": "n1",
                                    "pid": proc.pid})
    status, headers, body = get(url + "health")
    assert (status, body, headers["Connection"]) == (200, {"status": "ok"}, "close")
    assert get(url + "nope")[0] == 404
    assert get(url + "slow?ms=abc")[0] == 400


def test_sessions_count_per_cookie(service: tuple[subprocess.Popen[str], str]) -> None:
    _, url = service
    _, headers, first = get(url + "session")
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie == f"ZDTSESSION={first['session']}"
    counts = [get(url + "session", cookie)[2]["count"] for _ in range(3)]
    other = get(url + "session")[2]
    assert (first["count"], counts, other["count"]) == (1, [2, 3, 4], 1)
    assert other["session"] != first["session"]


def test_sigterm_finishes_the_request_in_flight_then_exits_0(
        service: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = service
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /slow?ms=500 HTTP/1.0\r\n\r\n")
        # Connections are accepted in order: once a later one is answered, the slow
        # request is being served.
        assert get(url + "health")[0] == 200

        proc.send_signal(signal.SIGTERM)

        slow.settimeout(5)
        answer = b"".join(iter(lambda: slow.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in answer
    assert b'"server": "s1"' in answer
    assert proc.wait(timeout=5) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_fail_starts_fails_that_many_starts_before_binding(home: Path) -> None:
    (home / "FAIL_STARTS").write_text("2\n")
    [port] = free_ports(1)
    for left in (1, 0):
        proc = spawn(home, port)
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out) == (1, "")
        assert f"injected start failure ({left} left)" in err
        assert (home / "FAIL_STARTS").read_text().strip() == str(left)
    proc = spawn(home, port)
    try:
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=5)
    assert proc.returncode == 0


def test_a_broken_home_serves_but_fails_its_health_check(home: Path) -> None:
    (home / "BROKEN").write_text("broken on purpose\n")
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}/"
    proc = spawn(home, port)
    try:
        assert "listening on" in proc.stdout.readline()
        status, _, body = get(url + "health")
        assert (status, body) == (500, {"status": "broken"})
        status, _, body = get(url)
        assert (status, body["version"]) == (200, "v7")
        assert get(url + "session")[0] == 200
        # Read once at start, like VERSION: removing the file changes nothing until a restart.
        (home / "BROKEN").unlink()
        assert get(url + "health")[0] == 500
    finally:
        proc.terminate()
        proc.communicate(timeout=5)
    assert proc.returncode == 0


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` answers of the sample service (each has a Content-Length) off sock."""
    data, answers = b"", []
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                answers.append(head + sep + rest[:length])
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return answers


def test_keep_alive_serves_requests_one_after_another_and_pipelined(
        service: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = service
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for _ in range(3):
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            [answer] = _answers(conn, 1)
            assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection:" not in answer
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        assert [a.split(b"\r\n")[0] for a in _answers(conn, 2)] == [b"HTTP/1.1 200 OK"] * 2
        # An HTTP/1.0 client that asks for keep-alive is told it got it.
        conn.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"Connection: keep-alive" in _answers(conn, 1)[0]
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert f'"pid": {proc.pid}'.encode() in _answers(conn, 1)[0]


def test_sigterm_closes_idle_keep_alive_connections_and_answers_in_flight_with_close(
        service: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = service
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as busy:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(_answers(idle, 1)) == 1              # served, then kept open, idle
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(_answers(busy, 1)) == 1
        busy.sendall(b"GET /slow?ms=400 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert get(url + "health")[0] == 200            # accepted later, so /slow is in flight
        proc.send_signal(signal.SIGTERM)
        assert idle.recv(1) == b""                      # closed by the server, not reset
        [answer] = _answers(busy, 1)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
        assert busy.recv(1) == b""
    assert proc.wait(timeout=5) == 0


def test_the_listen_backlog_holds_a_burst_of_connections(
        service: tuple[subprocess.Popen[str], str]) -> None:
    _, url = service
    port = int(url.rsplit(":", 1)[1].strip("/"))
    listening = subprocess.run(["ss", "-Hltn", "sport", "=", f":{port}"], capture_output=True,
                               text=True, check=True).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    # Send-Q: the backlog, which the kernel caps at net.core.somaxconn
    assert listening[0] == "LISTEN" and int(listening[2]) == min(1024, somaxconn)


def test_a_connection_that_sends_nothing_does_not_hold_a_stop(
        service: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = service
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        assert get(url + "health")[0] == 200     # accepted later: the silent one is in
        proc.send_signal(signal.SIGTERM)
        # it waits FIRST_REQUEST_GRACE (1 s) for a request, not the 75 s idle timeout
        assert proc.wait(timeout=5) == 0
        assert silent.recv(1) == b""

"""A small HTTP service to update without downtime: version, health, sessions, slow calls.

Endpoints (all answer JSON; HTTP/1.1 keep-alive, or one request per connection for a
client that asks for it):
  GET /            {"version", "server", "node", "pid"}
  GET /health      {"status": "ok"}, or 500 {"status": "broken"} (see HOME/BROKEN)
  GET /session     a cookie session (ZDTSESSION) with a per-session request counter
  GET /slow?ms=N   sleeps N ms, then answers like /
  GET /fail        500 {"error": "failed as asked"}: an error for the LB to count

The version is the stripped text of HOME/VERSION, read once at start: a new home only
takes effect after a restart, exactly like a real installation.

A home that holds a file HOME/BROKEN (checked once at start, like VERSION) makes a
service that serves every request normally but fails its health check: GET /health
answers 500 {"status": "broken"}. A rollout onto such a home must be reverted.

On SIGTERM (or SIGINT) it answers the connections already in its accept queue, stops
accepting, closes its idle kept-alive connections, answers the requests in flight (with
`Connection: close`) and exits 0. A request a client sends on a kept-alive connection at
the instant the server closes it is lost, as with any HTTP/1.1 server: that is why a
rollout drains a server in the LB before it stops it.

A home that holds a file HOME/BACKLOG with an integer listens with that backlog instead
of 1024 (read once at start): a service that cannot take a burst of connections, for the
capacity checks.

A home that holds a file HOME/DEGRADED is a release that is healthy but bad: /health
answers 200, but with `fail_every = N` every Nth other request answers 500, and with
`delay_ms = M` every other request answers M ms late (for the metric gates).

The shared libraries in HOME/lib/native/*.so (none in the sandbox's homes) are loaded at
start, as a service linked with a native library would map it: replacing one under a
running server makes the server stale (`zdt stale`) until it restarts.

Failure injection for tests: if HOME/FAIL_STARTS holds an integer > 0, the service
decrements it and exits 1 before binding its port, so a start fails the way a broken
installation would.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import secrets
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

COOKIE = "ZDTSESSION"
MAX_SLOW_MS = 600_000  # 10 min: long enough for any drain test, short enough to end
# A kept-alive connection idle this long is closed: longer than the LB's own idle timeout
# (the sandbox HAProxy's `timeout server` is 30 s), so that the LB, not the server, closes
# an idle connection and never sends a request on one the server is closing.
IDLE_TIMEOUT = 75.0
# At a stop, a connection accepted but not yet sent its request gets this long to send it.
FIRST_REQUEST_GRACE = 1.0


@dataclass
class Degraded:
    """HOME/DEGRADED: `fail_every = 5` (every 5th request but /health answers 500) and
    `delay_ms = 25` (every request but /health answers 25 ms late)."""

    fail_every: int = 0
    delay_ms: int = 0
    _served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def read(cls, path: Path) -> Degraded | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        values = {"fail_every": 0, "delay_ms": 0}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in values:
                values[key.strip()] = max(0, int(value.split("#")[0]))
        return cls(values["fail_every"], values["delay_ms"])

    def fails(self) -> bool:
        if not self.fail_every:
            return False
        with self._lock:
            self._served += 1
            return self._served % self.fail_every == 0


class SampleServer(ThreadingHTTPServer):
    # A restart binds the port again at once; without SO_REUSEADDR the connections the
    # previous process closed (TIME_WAIT, 60 s on Linux) would make the bind fail.
    allow_reuse_address = True
    # Request threads are joined on close (not daemons), so a graceful stop really waits
    # for the requests in flight instead of cutting them off at interpreter exit.
    daemon_threads = False
    block_on_close = True
    # The listen backlog. When a node leaves rotation the LB opens new connections to the
    # others in a burst; with Python's default of 5, SYNs beyond it were dropped and the
    # LB's 1 s connect timeout turned them into 503s (0.2 % of 2,000 requests/s lost).
    # The kernel caps it at net.core.somaxconn (4096 on current kernels).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], identity: dict[str, object],
                 broken: bool = False, backlog: int | None = None,
                 degraded: Degraded | None = None) -> None:
        if backlog is not None:
            self.request_queue_size = backlog
        super().__init__(address, Handler)
        self.identity = identity
        self.broken = broken
        self.degraded = degraded or Degraded()
        self.sessions: dict[str, int] = {}
        self.sessions_lock = threading.Lock()
        self.stopping = threading.Event()
        # Readable once the server stops: wakes every connection waiting for a next request.
        self._wake_r, self._wake_w = os.pipe()

    def begin_stop(self) -> None:
        """Close idle kept-alive connections; requests in flight end with Connection: close."""
        self.stopping.set()
        os.write(self._wake_w, b"x")

    def next_request(self, sock: socket.socket, *, first: bool = False) -> bool:
        """Wait while a connection is idle: True once the client sent something (or
        closed), False when the connection should close (the server stops, or it was idle
        IDLE_TIMEOUT s). Bytes that arrived win over a stop: they are answered; so is the
        first request of a connection the server accepted, if it comes within
        FIRST_REQUEST_GRACE s of the stop."""
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        poller.register(self._wake_r, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(IDLE_TIMEOUT * 1000)}
        if sock.fileno() in ready:
            return True
        if not first or self._wake_r not in ready:
            return False
        alone = select.poll()
        alone.register(sock, select.POLLIN | select.POLLPRI)
        return bool(alone.poll(FIRST_REQUEST_GRACE * 1000))

    def finish_accepting(self) -> None:
        """Serve the connections already in the accept queue (closing the listening socket
        would reset them), then close it."""
        self.socket.setblocking(False)
        while True:
            try:
                request, address = self.socket.accept()
            except OSError:        # BlockingIOError: the queue is empty
                break
            request.setblocking(True)
            self.process_request(request, address)
        self.socket.close()

    def server_close(self) -> None:
        super().server_close()     # joins the request threads, which poll the wake pipe
        os.close(self._wake_r)
        os.close(self._wake_w)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's name (socket.getfqdn), which on a
        # host without a resolver (an isolated sandbox node) waits ~10 s for a timeout.
        # The name only fills SERVER_NAME for CGI; the address does as well.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy's health checks reset the connection as soon as they have the status
        # line; a client gone before the end of the answer is not the server's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def count(self, session: str | None) -> tuple[str, int]:
        """Increment a session's counter; an unknown or missing id starts a new session."""
        with self.sessions_lock:
            if session is None or session not in self.sessions:
                session = secrets.token_hex(8)
                self.sessions[session] = 0
            self.sessions[session] += 1
            return session, self.sessions[session]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT     # a client that stalls mid-request is not waited for forever
    # Head and body leave in one write, flushed at the end of each request: written apart
    # on a kept-alive connection, Nagle's algorithm held the body back until the client's
    # delayed ACK (~40 ms), and 16 keep-alive clients got ~560 requests/s instead of 2,500.
    wbufsize = 64 * 1024
    server: SampleServer

    def handle(self) -> None:
        """Requests one after another on one connection; between them the connection is
        idle, and a stop closes it there, never while a request is being answered."""
        self.close_connection = True
        if not self.server.next_request(self.connection, first=True):
            return
        self.handle_one_request()
        while not self.close_connection:
            if not self._buffered() and not self.server.next_request(self.connection):
                return
            self.handle_one_request()

    def _buffered(self) -> bool:
        """Whether a pipelined request is already read into this connection's buffer."""
        self.connection.setblocking(False)
        try:
            # rfile is a BufferedReader (StreamRequestHandler.rbufsize = -1)
            return bool(cast(io.BufferedReader, self.rfile).peek(1))
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/health" and self.server.degraded.fails():
            self._send(500, {"error": "degraded release", **self.server.identity})
            return
        if url.path != "/health" and self.server.degraded.delay_ms:
            time.sleep(self.server.degraded.delay_ms / 1000)
        if url.path == "/":
            self._send(200, self.server.identity)
        elif url.path == "/health":
            if self.server.broken:
                self._send(500, {"status": "broken"})
            else:
                self._send(200, {"status": "ok"})
        elif url.path == "/session":
            self._session()
        elif url.path == "/slow":
            self._slow(parse_qs(url.query).get("ms", ["0"])[0])
        elif url.path == "/fail":
            self._send(500, {"error": "failed as asked"})
        else:
            self._send(404, {"error": f"no such path: {url.path}"})

    def _session(self) -> None:
        session, count = self.server.count(self._cookie())
        cookie = f"{COOKIE}={session}; Path=/; HttpOnly"
        body = {"session": session, "count": count, **self.server.identity}
        self._send(200, body, (("Set-Cookie", cookie),))

    def _slow(self, ms: str) -> None:
        try:
            delay = int(ms)
        except ValueError:
            self._send(400, {"error": f"ms must be an integer, not {ms!r}"})
            return
        if not 0 <= delay <= MAX_SLOW_MS:
            self._send(400, {"error": f"ms must be between 0 and {MAX_SLOW_MS}"})
            return
        time.sleep(delay / 1000)
        self._send(200, self.server.identity)

    def _cookie(self) -> str | None:
        cookies = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookies.get(COOKIE)
        return morsel.value if morsel else None

    def _send(self, status: int, body: dict,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection or self.server.stopping.is_set():
            self.send_header("Connection", "close")    # and close_connection becomes True
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")   # asked for by this 1.0 client
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A line per request would flood the manager's logs under load tests; keep the
        # failures (4xx/5xx) and everything log_error reports.
        if isinstance(code, int) and code < 400:
            return
        super().log_request(code, size)


def consume_failed_start(home: Path) -> str | None:
    """Apply HOME/FAIL_STARTS: return an error message if this start must fail."""
    marker = home / "FAIL_STARTS"
    try:
        remaining = int(marker.read_text().strip() or "0")
    except FileNotFoundError:
        return None
    except ValueError:
        return f"{marker}: not an integer; failing this start"
    if remaining <= 0:
        return None
    marker.write_text(f"{remaining - 1}\n")
    return f"{marker}: injected start failure ({remaining - 1} left)"


def stop_on_signals(server: SampleServer) -> None:
    """SIGTERM/SIGINT stop the server gracefully; set before it says it listens, so that a
    stop right after that line is graceful too."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, and that loop runs in this
        # (the main) thread: call it from another thread or it would deadlock.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def serve(server: SampleServer) -> None:
    """Serve until stopped (stop_on_signals), then stop gracefully."""
    # 50 ms: the longest a stop waits for the accept loop to notice it; the default
    # 0.5 s would add half a second to every restart of a node.
    server.serve_forever(poll_interval=0.05)
    server.begin_stop()          # idle connections close, answers say Connection: close
    server.finish_accepting()    # connections already queued are served, then no more
    server.server_close()        # wait for the requests in flight (joins threads)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m zdt.lab.sample_service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", required=True, type=Path, help="the installation directory")
    p.add_argument("--app", type=Path, help="a deployed application's directory: its "
                   "APP_VERSION is reported, and its BROKEN fails the health check")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--server", required=True, help="this server's name")
    p.add_argument("--node", required=True, help="the node it runs on")
    p.add_argument("--host", default="127.0.0.1")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failure = consume_failed_start(args.home)
    if failure:
        print(failure, file=sys.stderr, flush=True)
        return 1
    try:
        version = (args.home / "VERSION").read_text().strip()
    except OSError as exc:
        print(f"{args.home}/VERSION: cannot read the version: {exc.strerror}",
              file=sys.stderr, flush=True)
        return 1
    broken = (args.home / "BROKEN").exists()
    try:
        backlog: int | None = int((args.home / "BACKLOG").read_text())
    except (OSError, ValueError):
        backlog = None
    identity: dict[str, object] = {"version": version, "server": args.server,
                                   "node": args.node, "pid": os.getpid()}
    if args.app is not None:
        try:
            identity["app_version"] = (args.app / "APP_VERSION").read_text().strip()
        except OSError:
            identity["app_version"] = None
        broken = broken or (args.app / "BROKEN").exists()
    for library in sorted((args.home / "lib" / "native").glob("*.so")):
        ctypes.CDLL(str(library))
    degraded = Degraded.read(args.home / "DEGRADED")
    server = SampleServer((args.host, args.port), identity, broken=broken, backlog=backlog,
                          degraded=degraded)
    stop_on_signals(server)
    print(f"{args.server} {version} listening on http://{args.host}:{args.port}/ "
          f"pid {os.getpid()}"
          + (f" (broken: {args.home}/BROKEN exists, /health answers 500)" if broken else "")
          + (f" (degraded: {degraded})" if degraded else ""),
          flush=True)
    serve(server)
    print(f"{args.server} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

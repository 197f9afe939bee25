"""A minimal asyncio HTTP/1.0 client: enough for health checks and load generation."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
              ) -> Response:
    """GET url with `Connection: close`; raises OSError / TimeoutError / ValueError."""
    return await request("GET", url, timeout=timeout, headers=headers)


async def request(method: str, url: str, *, timeout: float = 5.0,
                  headers: dict[str, str] | None = None) -> Response:
    """One request without a body, `Connection: close`."""
    async with asyncio.timeout(timeout):
        return await _request(method, url, headers or {})


async def _request(method: str, url: str, extra: dict[str, str]) -> Response:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        lines = [f"{method} {target} HTTP/1.0", f"Host: {parts.netloc}", "Connection: close"]
        if method == "POST":
            lines.append("Content-Length: 0")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return parse(raw, url)


def parse(raw: bytes, url: str) -> Response:
    """A whole HTTP answer (head and body) → Response; ValueError if it is none."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"{url}: incomplete HTTP response ({len(raw)} bytes)")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"{url}: not an HTTP response: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Response(int(fields[1]), headers, body)

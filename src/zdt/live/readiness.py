"""When a workload process is ready: sd_notify READY=1, or its health URL answering 200.

A surrogate shares the listening sockets with the original, so a plain GET to the health
URL may be answered by either. `answered_by()` tells them apart: it opens the connection
itself, sends the request without its final blank line, finds which process accepted the
connection (the server side's socket inode in /proc/net/tcp, then in /proc/PID/fd), and
only then completes the request. An answer from another process does not count.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from zdt import procfs

ACCEPT_WAIT = 1.0          # s for some process to accept the probe's connection


async def answered_by(url: str, pid: int, timeout: float = 2.0) -> bool:
    """Whether process `pid` accepted a GET of `url` (http only) and answered 200."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError):
        return False
    try:
        async with asyncio.timeout(timeout):
            here = writer.get_extra_info("sockname")[:2]
            there = writer.get_extra_info("peername")[:2]
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "Connection: close\r\n".encode())
            await writer.drain()
            if not await _accepted_by(there, here, pid):
                return False
            writer.write(b"\r\n")
            status = (await reader.readline()).split()
            return len(status) >= 2 and status[1] == b"200"
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _accepted_by(server: tuple[str, int], client: tuple[str, int], pid: int) -> bool:
    """Wait for a process to accept the connection; True if it was `pid`."""
    deadline = asyncio.get_running_loop().time() + ACCEPT_WAIT
    while asyncio.get_running_loop().time() < deadline:
        inode = procfs.tcp_inode(server, client)
        if inode is not None:
            for _ in range(5):          # accept() done; the fd table entry follows at once
                if procfs.holds_socket(pid, inode):
                    return True
                await asyncio.sleep(0.002)
            return False
        await asyncio.sleep(0.005)
    return False

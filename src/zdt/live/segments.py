"""A workload's state kept in memory zdt hands over by reference: a memfd segment.

The original keeps (the part that matters of) its state in a shared mapping of a memfd
(`zdt.live.segment(size)`). At a checkpoint the helper unmaps it — from then on the
original cannot change it — seals its size (F_SEAL_SHRINK, F_SEAL_GROW) and passes the
descriptor (SCM_RIGHTS) to the supervisor, which checks that the original maps it no more
and passes it on to the surrogate; the surrogate maps the same pages. Nothing is copied,
whatever the size: the blackout does not grow with the state.

A write seal (F_SEAL_WRITE) is not used: it can never be lifted, so the surrogate could only
map the segment copy-on-write and the next update would have to copy it. Unmapping it in
the original, before the descriptor leaves, is what makes the state the surrogate maps
the one the original had at its checkpoint; the supervisor verifies it in /proc.

If the handoff fails, the original maps its segment again and serves on.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import socket

SIZE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
NAME = "zdt-state"


class Segment:
    """One memfd and, while this process owns it, its shared writable mapping."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.map: mmap.mmap | None = None
        self.handed = False      # sent at a checkpoint: not this process's to map any more

    @classmethod
    def create(cls, size: int) -> Segment:
        if size < 1:
            raise ValueError(f"a state segment of {size} bytes")
        fd = os.memfd_create(NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        segment = cls(fd, size)
        segment.attach()
        return segment

    @classmethod
    def received(cls, fd: int, size: int) -> Segment:
        """A segment handed over: its size must be the one announced, and sealed."""
        actual = os.fstat(fd).st_size
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        if actual != size or seals & SIZE_SEALS != SIZE_SEALS:
            os.close(fd)
            raise ValueError(f"the segment handed over is {actual} bytes (announced: {size}) "
                             f"with seals {seals:#x}")
        segment = cls(fd, size)
        segment.attach()
        return segment

    def attach(self) -> mmap.mmap:
        if self.handed:
            raise RuntimeError("the state segment was handed over at the checkpoint: this "
                               "process may not map it again (unless the handoff fails)")
        if self.map is None:
            self.map = mmap.mmap(self.fd, self.size, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return self.map

    def detach(self) -> None:
        """Unmap: BufferError if the workload still holds a view of it (a memoryview)."""
        if self.map is not None:
            self.map.close()
            self.map = None

    def hand_over(self, fds: socket.socket, seq: str) -> None:
        """Unmap, seal the size, send the descriptor (the caller already announced it)."""
        self.detach()
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, SIZE_SEALS)
        self.handed = True
        socket.send_fds(fds, [f"SEGMENT {self.size} {seq}".encode()], [self.fd])

    def reclaim(self) -> mmap.mmap:
        """The handoff failed: the segment is this process's again; mapped."""
        self.handed = False
        return self.attach()


def receive(fds: socket.socket) -> tuple[list[str], int]:
    """The next descriptor on the descriptor channel, with its words (blocking)."""
    data, received, _, _ = socket.recv_fds(fds, 256, 4)
    if not received:
        raise EOFError("the descriptor channel closed")
    for extra in received[1:]:
        os.close(extra)
    os.set_inheritable(received[0], False)   # recv_fds ignores MSG_CMSG_CLOEXEC (3.11)
    return data.decode(errors="replace").split(), received[0]


def mapped_by(pid: int, fd: int) -> bool:
    """Whether process pid maps the file behind fd (its device and inode in the maps)."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) >= 5 and fields[4] == str(st.st_ino) and fields[3] == dev:
                    return True
    except FileNotFoundError:
        return False
    return False

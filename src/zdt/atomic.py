"""Files replaced whole: a temp file beside the target, created with O_EXCL|O_NOFOLLOW
under an unpredictable name (a link planted there is never followed, a file planted there
never reused), written, fsynced, then renamed over the target and the directory fsynced.
A crash leaves the old file or the new one, never a part of either."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_name(target: Path | str) -> str:
    """A name beside `target` that nobody can guess: .NAME.zdt-<random>."""
    head, tail = os.path.split(str(target))
    return os.path.join(head, f".{tail}.zdt-{secrets.token_hex(8)}")


def replace(target: Path, write: Callable[[BinaryIO], None], mode: int) -> None:
    tmp = temp_name(target)
    fd = os.open(tmp, _FLAGS, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_dir(target.parent)


def write_bytes(target: Path, data: bytes, mode: int) -> None:
    def write(f: BinaryIO) -> None:
        f.write(data)
    replace(target, write, mode)


def write_text(target: Path, text: str, mode: int) -> None:
    write_bytes(target, text.encode("utf-8"), mode)


def copy(source: Path, target: Path, mode: int | None = None) -> None:
    """`source`'s bytes to `target`, with `source`'s permission bits unless given."""
    bits = (source.stat().st_mode & 0o777) if mode is None else mode
    with open(source, "rb") as src:
        replace(target, lambda f: shutil.copyfileobj(src, f, 1 << 20), bits)


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""A first pass over a .tar.gz at the level of its 512-byte headers, in bounded memory.

Python's tarfile reads a pax or GNU long-name header whole into memory, whatever size it
announces: a 65 KB archive with a 64 MiB pax header took verify to 226 MB. This pass reads
every header itself, refuses metadata larger than MAX_META, sparse members and data on
members that hold none, counts the bytes of every member, and skips file data in chunks;
only an archive that passes is handed to tarfile.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from zdt.errors import ConfigError

BLOCK = 512
MAX_META = 64 * 1024          # bytes of one pax or long-name header
MAX_MEMBERS = 1_000_000
_META = {b"x": "a pax header", b"X": "a pax header", b"g": "a global pax header",
         b"L": "a GNU long name", b"K": "a GNU long link name"}
_NO_DATA = {b"5": "a directory", b"2": "a symlink", b"1": "a hard link"}


@dataclass
class Totals:
    members: int = 0
    data: int = 0             # bytes of data of every member (files, and any other)
    meta: int = 0             # bytes of pax and long-name headers


def scan(archive: Path, max_data: int) -> Totals:
    """Walk every header; ConfigError (exit 2) naming the member on the first problem."""
    totals = Totals()
    try:
        with gzip.open(archive, "rb") as f:
            _walk(f, archive, max_data, totals)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{archive}: not a readable .tar.gz: {exc}") from None
    return totals


def _walk(f: gzip.GzipFile, archive: Path, max_data: int, totals: Totals) -> None:
    pending: dict[str, str] = {}      # from a pax header or long name, for the next member
    while True:
        header = f.read(BLOCK)
        if len(header) < BLOCK or header == bytes(BLOCK):
            return                    # the end (tarfile judges a truncated end itself)
        totals.members += 1
        kind = header[156:157]
        name = pending.get("path") or _name(header)
        where = f"{archive}: member {totals.members} ({name[:200]!r})"
        size = int(pending["size"]) if "size" in pending else _size(header, where)
        pending = {}
        if totals.members > MAX_MEMBERS:
            raise ConfigError(f"{where}: more than {MAX_MEMBERS} members")
        if kind in _META:
            if size > MAX_META:
                raise ConfigError(f"{where}: {_META[kind]} of {size} bytes; at most "
                                  f"{MAX_META} are read")
            totals.meta += size
            data = f.read(_padded(size))[:size]
            if kind in (b"x", b"X"):
                pending = _pax(data, where)
            elif kind == b"g" and _pax(data, where):
                raise ConfigError(f"{where}: a global pax header that sets a path or a size "
                                  "for every member; not allowed")
            elif kind == b"L":
                pending = {"path": data.rstrip(b"\0").decode("utf-8", "replace")}
            continue
        if kind == b"S":
            raise ConfigError(f"{where}: a sparse file; only plain regular files are allowed")
        if kind in _NO_DATA and size:
            raise ConfigError(f"{where}: {_NO_DATA[kind]} that carries {size} bytes of data")
        totals.data += size
        if totals.data > max_data:
            raise ConfigError(f"{where}: the members hold more than the {max_data} bytes the "
                              "manifest declares")
        _skip(f, _padded(size), where)


def _name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        name = prefix + b"/" + name if prefix else name
    return name.decode("utf-8", "replace")


def _size(header: bytes, where: str) -> int:
    field = header[124:136]
    if field[0] & 0x80:               # base-256, for sizes past 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise ConfigError(f"{where}: a header with a size of {text[:12]!r}") from None


def _pax(data: bytes, where: str) -> dict[str, str]:
    """The records of a pax header (`LEN key=value\\n`) that name or size the next member."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ConfigError(f"{where}: a malformed pax record") from None
        if space < 0 or length <= space - pos:
            raise ConfigError(f"{where}: a malformed pax record")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        pos += length
        word = key.decode("utf-8", "replace")
        if word.startswith("GNU.sparse"):
            raise ConfigError(f"{where}: a sparse file; only plain regular files are allowed")
        if word in ("path", "size"):
            out[word] = value.decode("utf-8", "replace")
    if "size" in out and not re.fullmatch(r"[0-9]{1,20}", out["size"]):
        raise ConfigError(f"{where}: a pax size of {out['size'][:20]!r}")
    return out


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _skip(f: gzip.GzipFile, count: int, where: str) -> None:
    while count > 0:
        chunk = f.read(min(count, 1 << 20))
        if not chunk:
            raise ConfigError(f"{where}: the archive ends inside this member's data")
        count -= len(chunk)

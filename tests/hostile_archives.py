"""Hostile and broken archives, built by hand: each has exactly one defect, and a sidecar
manifest that matches its bytes (unless the defect is in the sidecar)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from zdt.archive import Manifest, manifest_path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reg(name: str, data: bytes = b"data\n") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def directory(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return special(name, tarfile.DIRTYPE)


def with_pax(member: tuple[tarfile.TarInfo, bytes | None], records: dict[str, str]
             ) -> tuple[tarfile.TarInfo, bytes | None]:
    member[0].pax_headers = records
    return member


def sized(member: tuple[tarfile.TarInfo, bytes | None], data: bytes
          ) -> tuple[tarfile.TarInfo, bytes | None]:
    """A member that carries data its type does not hold (a directory with bytes)."""
    member[0].size = len(data)
    return member[0], data


def pax_record(key: str, value: str) -> bytes:
    """One `LEN key=value\\n` record, LEN counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def raw_header(kind: bytes, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    """A metadata member written as it is (tarfile writes `x` and `g` itself otherwise)."""
    info = tarfile.TarInfo("PaxHeaders/f")
    info.type, info.size = kind, len(data)
    return info, data


Members = list[tuple[tarfile.TarInfo, bytes | None]]


def build(path: Path, members: Members,
          files: Callable[[dict[str, str]], dict[str, str]] | None = None) -> Path:
    """A .tar.gz of exactly these members with a sidecar that matches its bytes, so each
    case below has only the one defect it is about."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    digests = {i.name: sha(d) for i, d in members if d is not None and i.isreg()}
    unpacked = sum(len(d) for i, d in members if d is not None and i.isreg())
    write_sidecar(path, files(digests) if files else digests, unpacked)
    return path


def write_sidecar(path: Path, files: dict[str, str], unpacked: int) -> None:
    data = path.read_bytes()
    m = Manifest("v1", sha(data), len(data), unpacked, files)
    manifest_path(path).write_text(m.to_json())


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def not_gzip(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 this is a zip, not a tar.gz")
    write_sidecar(path, {}, 0)


Mutate = Callable[[Path], None] | None

HOSTILE: list[tuple[str, Members, Mutate, list[str]]] = [
    ("absolute path", [reg("/etc/cron.d/x")], None, ["'/etc/cron.d/x'", "absolute"]),
    ("dot-dot", [reg("../x")], None, ["'../x'", "'..'"]),
    ("dot-dot inside", [directory("a"), reg("a/../../x")], None, ["'a/../../x'", "'..'"]),
    ("empty name", [special("", tarfile.SYMTYPE, "x")], None, ["empty name"]),
    ("dot name", [reg("./x")], None, ["'./x'", "plain relative"]),
    ("symlink absolute", [special("pw", tarfile.SYMTYPE, "/etc/passwd")], None,
     ["'pw'", "/etc/passwd"]),
    ("symlink up", [special("a", tarfile.SYMTYPE, "../../x")], None, ["'a'", "outside"]),
    ("symlink up from a dir", [directory("d"), special("d/l", tarfile.SYMTYPE, "../../x")],
     None, ["'d/l'", "outside"]),
    ("symlink via symlink", [special("s", tarfile.SYMTYPE, "."),
                             special("x", tarfile.SYMTYPE, "s/..")], None, ["'x'", "outside"]),
    ("symlink loop", [special("a", tarfile.SYMTYPE, "b"), special("b", tarfile.SYMTYPE, "a")],
     None, ["loops"]),
    ("under a symlink", [directory("d"), special("s", tarfile.SYMTYPE, "d"), reg("s/x")],
     None, ["'s/x'", "under the symlink 's'"]),
    ("hard link", [reg("f"), special("h", tarfile.LNKTYPE, "f")], None, ["'h'", "hard link"]),
    ("char device", [special("tty", tarfile.CHRTYPE)], None, ["'tty'", "character device"]),
    ("block device", [special("sda", tarfile.BLKTYPE)], None, ["'sda'", "block device"]),
    ("fifo", [special("pipe", tarfile.FIFOTYPE)], None, ["'pipe'", "fifo"]),
    ("duplicate", [reg("f"), reg("f")], None, ["'f'", "duplicate"]),
    ("release marker", [reg(".zdt-release")], None, ["'.zdt-release'", "reserved"]),
    ("setuid bit", [(lambda i: (setattr(i[0], "mode", 0o4755), i)[1])(reg("bin/su"))],
     None, ["'bin/su'", "set-uid"]),
    ("digest mismatch", [reg("f")], flip_a_byte, ["digest mismatch", "sha256"]),
    ("size mismatch", [reg("f")], lambda p: p.write_bytes(p.read_bytes() + b"\0"),
     ["digest mismatch", "bytes"]),
    ("sidecar missing", [reg("f")], lambda p: manifest_path(p).unlink(),
     ["a.tar.gz.json", "missing"]),
    ("sidecar bad json", [reg("f")], lambda p: manifest_path(p).write_text("{oops"),
     ["a.tar.gz.json", "not valid JSON"]),
    ("sidecar wrong type", [reg("f")],
     lambda p: manifest_path(p).write_text(json.dumps(
         {**json.loads(manifest_path(p).read_text()), "size": "big"})),
     ["a.tar.gz.json", "'size'"]),
    ("not gzip", [reg("f")], not_gzip, ["not a readable .tar.gz"]),
    # names GNU tar and Linux cannot create as written, refused before any node is touched
    ("long component", [reg("a" * 256)], None, ["component of 256 bytes"]),
    ("long path", [reg("/".join(["d" * 200] * 16))], None, ["3215 bytes long"]),
    ("newline in a name", [reg("a\nb")], None, ["control character"]),
    ("tab in a name", [reg("a\tb")], None, ["control character"]),
    ("backslash in a name", [reg("a\\b")], None, ["backslash"]),
    ("escape in a name", [reg("a\x1b[2Jb")], None, ["control character"]),
    ("not utf-8", [reg("a\udcffb")], None, ["not valid UTF-8"]),
    ("newline in a link target", [reg("f"), special("l", tarfile.SYMTYPE, "f\nx")], None,
     ["'l'", "link target holds a control character"]),
    # headers and members that would make tarfile allocate, or tar write, what it should not
    ("huge pax header", [with_pax(reg("f"), {"comment": "x" * (1 << 20)})], None,
     ["a pax header of", "at most 65536"]),
    ("huge pax path", [reg("p" * 70_000)], None, ["a pax header of", "at most 65536"]),
    ("sparse member", [special("s", tarfile.GNUTYPE_SPARSE)], None, ["sparse"]),
    ("directory with data", [sized(directory("d"), b"x" * 600)], None,
     ["a directory that carries 600 bytes"]),
    ("huge solaris pax header", [raw_header(b"X", pax_record("comment", "x" * 200_000)),
                                 reg("f")], None, ["a pax header of", "at most 65536"]),
    ("pax size not ascii", [raw_header(b"x", pax_record("size", "\u00b2")), reg("f")], None,
     ["a pax size of"]),
    ("pax size of 5000 digits", [raw_header(b"x", pax_record("size", "9" * 5000)), reg("f")],
     None, ["a pax size of"]),
    ("global pax path", [raw_header(b"g", pax_record("path", "../../x")), reg("f")], None,
     ["a global pax header that sets a path or a size"]),
    ("no entry for a directory", [reg("bin/start")], None,
     ["'bin/start'", "its directory 'bin' is not a member"]),
]

# the manifest's `files` edited, the archive itself sound
SPOILED_MANIFEST: list[tuple[str, Callable[[dict[str, str]], dict[str, str]], list[str]]] = [
    ("content differs", lambda f: {**f, "f": sha(b"other")}, ["'f'", "differs"]),
    ("file not in manifest", lambda f: {k: v for k, v in f.items() if k != "g"},
     ["'g'", "not in the manifest"]),
    ("manifest file not in archive", lambda f: {**f, "ghost": sha(b"data\n")},
     ["'ghost'", "not in the archive"]),
]



"""Making archives: a deterministic .tar.gz of a home (same tree, same bytes) with its
manifest, and bundles of stage-mode application dirs under the same rules."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from zdt import atomic
from zdt.archive.manifest import (
    ARCHIVE_MARKER,
    Manifest,
    is_version,
    manifest_path,
    sha256_file,
)
from zdt.archive.names import link_escapes, node_name_problem
from zdt.errors import ConfigError

FILE_KINDS = {stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket",
              stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass(frozen=True)
class _Entry:
    name: str          # member path, relative to the home
    path: Path
    kind: str          # "dir" | "file" | "link"
    mode: int
    target: str = ""   # a symlink's target


def create(home: Path, out: Path, *, version: str | None = None) -> Manifest:
    """Archive HOME's contents into OUT (and OUT.json); same tree -> same bytes.

    Everything is checked before anything is written: a refused home leaves no file.
    """
    root = _check_home(home, out)
    version = _version(root, version)
    mtime = _source_date_epoch()
    entries = _scan(root)
    sidecar = manifest_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, side_tmp = _temp_beside(out), _temp_beside(sidecar)
    try:
        files, unpacked = _write_tar(entries, tmp, mtime)
        digest, size = sha256_file(tmp)
        manifest = Manifest(version, digest, size, unpacked, files)
        side_tmp.write_text(manifest.to_json(), encoding="utf-8")
        # the archive first: a crash between the two leaves an archive whose old or
        # missing sidecar makes verify refuse it, never a sidecar vouching for old bytes
        os.replace(tmp, out)
        os.replace(side_tmp, sidecar)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the archive: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
    return manifest


def check_tree(directory: Path) -> None:
    """ConfigError naming the first entry `bundle` would refuse; reads only."""
    _scan(directory.resolve())


def bundle(directory: Path, out: Path) -> dict[str, str]:
    """A local directory as a .tar.gz under the rules of `create` (regular files, dirs and
    relative symlinks that stay inside; permission bits only; names the nodes can create):
    what a stage-mode application copies to the nodes. Returns each file's sha256."""
    root = directory.resolve()
    if not root.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    out.unlink(missing_ok=True)
    try:
        files, _ = _write_tar(_scan(root), out, 0)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the bundle of {directory}: {exc}") from exc
    return files


def _check_home(home: Path, out: Path) -> Path:
    if not home.exists():
        raise ConfigError(f"{home}: the home does not exist")
    if not home.is_dir():
        raise ConfigError(f"{home}: the home is not a directory")
    root = home.resolve()
    target = out.resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"{out}: the archive must not be written inside the home {home}")
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; name the .tar.gz file to write")
    return root


def _version(root: Path, version: str | None) -> str:
    if version is not None:
        if not is_version(version.strip()):
            raise ConfigError(f"the version given ({version!r}) is not a non-empty line of "
                              "printable text of at most 200 characters")
        return version.strip()
    try:
        text = (root / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{root}: no version given and no VERSION file in the home") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{root / 'VERSION'}: cannot read the version: {exc}") from exc
    if not text:
        raise ConfigError(f"{root / 'VERSION'}: the file is empty; it must hold the version")
    if not is_version(text):
        raise ConfigError(f"{root / 'VERSION'}: {text[:80]!r} is not one line of printable "
                          "text of at most 200 characters")
    return text


def _source_date_epoch() -> int:
    # the reproducible-builds convention: a build system sets it to pin timestamps
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not re.fullmatch(r"[0-9]{1,11}", raw):
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r}: expected a non-negative integer")
    return int(raw)


def _scan(root: Path) -> list[_Entry]:
    """Every member of the archive-to-be, sorted by name (a dir before its contents)."""
    entries: list[_Entry] = []
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            children = list(os.scandir(directory))
        except OSError as exc:
            raise ConfigError(f"{directory}: cannot list: {exc.strerror}") from exc
        for child in children:
            name = prefix + child.name
            # zdt writes the marker into every release it extracts; archiving a deployed
            # home (copyBinary from a node) must not carry the old one along
            if name == ARCHIVE_MARKER:
                continue
            entry = _entry(Path(child.path), name)
            entries.append(entry)
            if entry.kind == "dir":
                pending.append((entry.path, name + "/"))
    entries.sort(key=lambda e: e.name)
    links = {e.name: e.target for e in entries if e.kind == "link"}
    for e in entries:
        if e.kind == "link" and link_escapes(e.name, links):
            raise ConfigError(f"{e.path}: symlink to {e.target!r} leads outside the home "
                              f"{root} (only relative links that stay inside are archived)")
    return entries


def _entry(path: Path, name: str) -> _Entry:
    problem = node_name_problem(name)
    if problem:
        raise ConfigError(f"{path}: the name {problem}; the nodes could not extract it")
    try:
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode) & 0o777
        if stat.S_ISDIR(st.st_mode):
            return _Entry(name, path, "dir", mode)
        if stat.S_ISREG(st.st_mode):
            return _Entry(name, path, "file", mode)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            problem = node_name_problem(target)
            if problem:
                raise ConfigError(f"{path}: the link target {problem}")
            return _Entry(name, path, "link", 0o777, target)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    kind = FILE_KINDS.get(stat.S_IFMT(st.st_mode), "a file of an unknown type")
    raise ConfigError(f"{path}: {kind} cannot be archived "
                      "(only regular files, directories and symlinks)")


def _write_tar(entries: list[_Entry], tmp: Path, mtime: int) -> tuple[dict[str, str], int]:
    files: dict[str, str] = {}
    unpacked = 0
    # no file name and mtime 0 in the gzip header: its bytes depend on the content only
    with open(tmp, "xb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            # TarInfo's defaults already are uid/gid 0 and an empty uname/gname
            info = tarfile.TarInfo(e.name)
            info.mtime, info.mode = mtime, e.mode
            if e.kind == "file":
                files[e.name], size = _add_file(tar, info, e.path)
                unpacked += size
                continue
            info.type = tarfile.DIRTYPE if e.kind == "dir" else tarfile.SYMTYPE
            info.linkname = e.target
            tar.addfile(info)
    return files, unpacked


class _HashingReader:
    """Hashes what tarfile reads, so each file is read once, and the digest is of the
    bytes that went into the archive even if the file changes meanwhile."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self.f.read(size)
        self.hash.update(data)
        return data


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> tuple[str, int]:
    try:
        # O_NOFOLLOW: the path was a regular file when scanned; a symlink swapped in since
        # must not pull a file from outside the home into the archive
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{path}: changed while being archived")
            info.size = st.st_size
            reader = _HashingReader(f)
            tar.addfile(info, reader)
    except OSError as exc:
        # tarfile raises OSError("unexpected end of data") when the file shrank meanwhile
        raise ConfigError(f"{path}: cannot archive: {exc.strerror or exc}") from exc
    return reader.hash.hexdigest(), info.size


def _temp_beside(path: Path) -> Path:
    return Path(atomic.temp_name(path))

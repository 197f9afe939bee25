"""Checksummed archives of a patched home (WebLogic's copyBinary, an OPatchAuto archive).

An archive is a deterministic `.tar.gz` of a home plus a JSON sidecar (`A.tar.gz.json`,
the `Manifest`) with the archive's sha256 and size and the sha256 of every regular file
inside. `verify` refuses, before one byte reaches a node, anything that differs from what
`create` makes or that could write outside the directory it is extracted into.
`distribute` copies both files to every node's staging dir and skips a node that already
holds an identical copy, so running it again after an interruption only does what is left.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from zdt import atomic, tarscan
from zdt.errors import ConfigError

ARCHIVE_MARKER = ".zdt-release"

HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
# Linux gives up with ELOOP after 40 symlinks (MAXSYMLINKS); a chain longer than that
# could never be followed on a node either.
_MAX_LINK_HOPS = 40
_NAME_MAX = 255            # bytes of one path component (ext4, xfs, btrfs)
_PATH_MAX = 3072           # bytes of a member path: PATH_MAX 4096 less room for where the
                           # node extracts it (the staging dir and the release's name)
_FILE_KINDS = {stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
_KINDS = {tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
          tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a fifo"}


@dataclass(frozen=True)
class Manifest:
    """What the sidecar says about an archive; `files` maps member path -> content sha256."""

    version: str
    sha256: str
    size: int
    unpacked: int
    files: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        for name, (ok, want) in _FIELDS.items():
            if name not in raw:
                raise ConfigError(f"{source}: field {name!r}: required field is missing")
            if not ok(raw[name]):
                raise ConfigError(f"{source}: field {name!r}: expected {want}, "
                                  f"got {raw[name]!r:.80}")
        for name, digest in raw["files"].items():
            if not name or not _is_sha256(digest):
                raise ConfigError(f"{source}: field 'files[{name!r}]': expected a member "
                                  f"path mapped to 64 lowercase hex digits, got {digest!r:.80}")
        return cls(**{name: raw[name] for name in _FIELDS})


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and bool(HEX64.fullmatch(v))


def _is_version(v: str) -> bool:
    """Shown in reports and written to VERSION files: one printable line, short."""
    return bool(v.strip()) and v.isprintable() and len(v) <= 200


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "version": (lambda v: isinstance(v, str) and _is_version(v),
                "a non-empty line of printable text, at most 200 characters"),
    "sha256": (_is_sha256, "64 lowercase hex digits"),
    "size": (_is_count, "a non-negative integer"),
    "unpacked": (_is_count, "a non-negative integer"),
    "files": (lambda v: isinstance(v, dict), "an object of member path -> sha256"),
}


def manifest_path(archive: Path) -> Path:
    """The sidecar manifest of an archive: `A.tar.gz` -> `A.tar.gz.json`."""
    return archive.with_name(archive.name + ".json")


# ---------------------------------------------------------------------------- create


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


@functools.lru_cache(maxsize=8)
def tree(archive: str, sha256: str) -> dict[str, tuple[str, int, str]]:
    """Every member of a verified archive: name -> (type, permission bits, link target),
    type as find's %y prints it (f, d, l). Cached per archive digest: one read for a
    whole fleet."""
    del sha256                     # part of the cache key: another file, another listing
    out = {}
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            name = m.name.rstrip("/")
            kind = "d" if m.isdir() else "l" if m.issym() else "f"
            out[name] = (kind, 0o777 if m.issym() else m.mode & 0o777, m.linkname)
    return out


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
        if not _is_version(version.strip()):
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
    if not _is_version(text):
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
        if e.kind == "link" and _link_escapes(e.name, links):
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
    kind = _FILE_KINDS.get(stat.S_IFMT(st.st_mode), "a file of an unknown type")
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


def sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def node_name_problem(name: str) -> str | None:
    """Why a relative path could not be created as written on a Linux node by GNU tar
    (None if it can): not UTF-8, a control character or backslash (tar would write an
    escape), a component over NAME_MAX, the whole over PATH_MAX."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if not name.isprintable() or "\\" in name:
        return f"holds a control character or backslash ({name[:80]!r})"
    if len(raw) > _PATH_MAX:
        return f"is {len(raw)} bytes long; a path may have at most {_PATH_MAX}"
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > _NAME_MAX:
        return (f"has a component of {len(longest)} bytes; at most {_NAME_MAX} are allowed "
                f"({longest[:40].decode('utf-8', 'replace')!r}…)")
    return None


def _link_escapes(name: str, links: Mapping[str, str]) -> bool:
    """Whether the symlink member `name`, followed through the archive's own symlinks the
    way the kernel would after extraction, leaves the root (or loops).

    Following matters: with `s -> .`, the link `x -> s/..` looks inside when its text is
    normalised, yet on disk it is HOME/.. .
    """
    first = links[name]
    if not first or first.startswith("/"):
        return True
    resolved = name.split("/")[:-1]          # the link's directory, as components
    todo = list(reversed(first.split("/")))
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return True
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return True
            resolved.pop()
            todo.extend(reversed(target.split("/")))
    return False


# ---------------------------------------------------------------------------- verify


def verify(archive: Path) -> Manifest:
    """Check an archive against its sidecar and refuse anything unsafe; reads only.

    Raises ConfigError (exit 2) naming the archive and, where it applies, the member.
    """
    manifest = _read_manifest(archive)
    digest, size = sha256_file(archive)
    if size != manifest.size:
        raise ConfigError(f"{archive}: digest mismatch: the file has {size} bytes, its "
                          f"manifest says {manifest.size}")
    if digest != manifest.sha256:
        raise ConfigError(f"{archive}: digest mismatch: sha256 {digest}, its manifest "
                          f"says {manifest.sha256}")
    tarscan.scan(archive, manifest.unpacked)       # headers bounded before tarfile reads
    check = _Members(archive, manifest)
    try:
        # streaming ("r|gz"): one pass over the compressed bytes, members in order
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                check.add(member, tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{archive}: not a readable .tar.gz: {exc}") from None
    check.finish()
    return manifest


def _read_manifest(archive: Path) -> Manifest:
    sidecar = manifest_path(archive)
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive")
    try:
        text = sidecar.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{sidecar}: the manifest of {archive} is missing; "
                          "an archive is only trusted with the sidecar `create` wrote") from None
    except OSError as exc:
        raise ConfigError(f"{sidecar}: cannot read the manifest: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{sidecar}: not valid JSON: not UTF-8 text") from None
    return Manifest.from_json(text, str(sidecar))


class _Members:
    """The per-member checks of `verify`, and the ones that need every member first."""

    def __init__(self, archive: Path, manifest: Manifest) -> None:
        self.archive = archive
        self.manifest = manifest
        self.names: set[str] = set()
        self.links: dict[str, str] = {}
        self.unpacked = 0

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        name = self._name(member)
        where = f"{self.archive}: member {member.name!r}"
        if name in self.names:
            raise ConfigError(f"{where}: duplicate member name")
        self.names.add(name)
        if member.mode & ~0o777 and not member.issym():
            # tar run as root would restore a set-uid, set-gid or sticky bit as given
            raise ConfigError(f"{where}: mode {member.mode:o} has set-uid, set-gid or "
                              "sticky bits; only permission bits (0777) are allowed")
        if member.issym():
            if not member.linkname or member.linkname.startswith("/"):
                raise ConfigError(f"{where}: symlink to {member.linkname!r}; only relative "
                                  "links that stay inside the archive are allowed")
            problem = node_name_problem(member.linkname)
            if problem:
                raise ConfigError(f"{where}: its link target {problem}")
            self.links[name] = member.linkname
        elif member.isreg():
            self._content(name, member, tar, where)
        elif not member.isdir():
            kind = _KINDS.get(member.type, f"of unsupported type {member.type!r}")
            raise ConfigError(f"{where}: is {kind}; only regular files, directories and "
                              "symlinks are allowed")

    def _name(self, member: tarfile.TarInfo) -> str:
        where = f"{self.archive}: member {member.name!r}"
        # tarfile strips a directory's trailing "/"; other writers may leave it
        name = member.name.rstrip("/") if member.isdir() else member.name
        if not name:
            raise ConfigError(f"{self.archive}: a member has an empty name")
        if name.startswith("/"):
            raise ConfigError(f"{where}: absolute path")
        parts = name.split("/")
        if ".." in parts:
            raise ConfigError(f"{where}: has a '..' component")
        if "" in parts or "." in parts:
            raise ConfigError(f"{where}: not a plain relative path (empty or '.' component)")
        if name == ARCHIVE_MARKER:
            raise ConfigError(f"{where}: reserved; zdt writes it into an extracted release")
        problem = node_name_problem(name)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        return name

    def _content(self, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile,
                 where: str) -> None:
        expected = self.manifest.files.get(name)
        if expected is None:
            raise ConfigError(f"{where}: a regular file that is not in the manifest")
        self.unpacked += member.size
        # stops a decompression bomb at the size the manifest vouches for
        if self.unpacked > self.manifest.unpacked:
            raise ConfigError(f"{where}: the files hold more than the {self.manifest.unpacked}"
                              " bytes the manifest declares")
        f = tar.extractfile(member)
        digest = hashlib.sha256()
        while f is not None and (chunk := f.read(_CHUNK)):
            digest.update(chunk)
        if digest.hexdigest() != expected:
            raise ConfigError(f"{where}: content sha256 {digest.hexdigest()} differs from "
                              f"the manifest's {expected}")

    def finish(self) -> None:
        missing = sorted(set(self.manifest.files) - self.names)
        if missing:
            raise ConfigError(f"{self.archive}: in the manifest but not in the archive: "
                              f"{', '.join(map(repr, missing[:10]))}"
                              f"{' ...' if len(missing) > 10 else ''}")
        for name in sorted(self.names):
            parents = ["/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)]
            absent = next((p for p in parents if p not in self.names), None)
            if absent is not None:
                # tar would make it with a mode of its own: the release would not be the
                # archive's, entry for entry
                raise ConfigError(f"{self.archive}: member {name!r}: its directory {absent!r} "
                                  "is not a member; archive the directories too")
            under = next((p for p in parents if p in self.links), None)
            if under is not None:
                # extracting it would write through the link, wherever that points
                raise ConfigError(f"{self.archive}: member {name!r}: lies under the symlink "
                                  f"{under!r}")
        for name, target in sorted(self.links.items()):
            if _link_escapes(name, self.links):
                raise ConfigError(f"{self.archive}: member {name!r}: symlink to {target!r} "
                                  "resolves outside the archive root (or loops)")
        if self.unpacked != self.manifest.unpacked:
            raise ConfigError(f"{self.archive}: the files hold {self.unpacked} bytes, the "
                              f"manifest says {self.manifest.unpacked}")


# ---------------------------------------------------------------------------- distribute

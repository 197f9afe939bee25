"""Verifying an archive before one byte reaches a node: its digest against the manifest,
its headers in bounded memory (scan.py), then every member — names, types, modes, links,
contents — against what `create` makes and what the nodes can extract."""

from __future__ import annotations

import functools
import hashlib
import tarfile
import zlib
from pathlib import Path

from zdt.archive import scan
from zdt.archive.manifest import ARCHIVE_MARKER, CHUNK, Manifest, read_manifest, sha256_file
from zdt.archive.names import link_escapes, node_name_problem
from zdt.errors import ConfigError

KINDS = {tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
         tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a fifo"}


def verify(archive: Path) -> Manifest:
    """Check an archive against its sidecar and refuse anything unsafe; reads only.

    Raises ConfigError (exit 2) naming the archive and, where it applies, the member.
    """
    manifest = read_manifest(archive)
    digest, size = sha256_file(archive)
    if size != manifest.size:
        raise ConfigError(f"{archive}: digest mismatch: the file has {size} bytes, its "
                          f"manifest says {manifest.size}")
    if digest != manifest.sha256:
        raise ConfigError(f"{archive}: digest mismatch: sha256 {digest}, its manifest "
                          f"says {manifest.sha256}")
    scan.scan(archive, manifest.unpacked)       # headers bounded before tarfile reads
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
            kind = KINDS.get(member.type, f"of unsupported type {member.type!r}")
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
        while f is not None and (chunk := f.read(CHUNK)):
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
            if link_escapes(name, self.links):
                raise ConfigError(f"{self.archive}: member {name!r}: symlink to {target!r} "
                                  "resolves outside the archive root (or loops)")
        if self.unpacked != self.manifest.unpacked:
            raise ConfigError(f"{self.archive}: the files hold {self.unpacked} bytes, the "
                              f"manifest says {self.manifest.unpacked}")


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

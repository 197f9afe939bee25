"""The sidecar of an archive (`A.tar.gz.json`): version, the archive's sha256 and size, the
bytes unpacked and the sha256 of every regular file; read strictly, field by field."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from zdt.errors import ConfigError

ARCHIVE_MARKER = ".zdt-release"
HEX64 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


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


def is_version(v: str) -> bool:
    """Shown in reports and written to VERSION files: one printable line, short."""
    return bool(v.strip()) and v.isprintable() and len(v) <= 200


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "version": (lambda v: isinstance(v, str) and is_version(v),
                "a non-empty line of printable text, at most 200 characters"),
    "sha256": (_is_sha256, "64 lowercase hex digits"),
    "size": (_is_count, "a non-negative integer"),
    "unpacked": (_is_count, "a non-negative integer"),
    "files": (lambda v: isinstance(v, dict), "an object of member path -> sha256"),
}


def manifest_path(archive: Path) -> Path:
    """The sidecar manifest of an archive: `A.tar.gz` -> `A.tar.gz.json`."""
    return archive.with_name(archive.name + ".json")


def sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_manifest(archive: Path) -> Manifest:
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

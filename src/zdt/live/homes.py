"""The new home of a live update, as the surrogate will run from it: a directory as given,
or an archive verified (on a private copy, bounded by its manifest's size) and extracted
once under the workload's state dir, named by its version and digest."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from zdt import archive as archives
from zdt.errors import ConfigError
from zdt.lock import make_private_dir


def prepare_home(directory: Path, home: str | None, archive: str | None) -> str:
    """The new home as a directory: given, or extracted from a verified archive."""
    if bool(home) == bool(archive):
        raise ConfigError("give the new home with --home-dir or --archive (one of them)")
    if home:
        path = Path(home).resolve()
        if not path.is_dir():
            raise ConfigError(f"--home-dir {home}: not a directory")
        return str(path)
    assert archive is not None
    given = archives.read_manifest(Path(archive))   # a regular file with its sidecar (exit 2)
    homes = directory / "homes"
    make_private_dir(homes)
    with tempfile.TemporaryDirectory(dir=homes, prefix=".incoming-") as incoming:
        # verified and extracted from a private copy: the file given cannot be swapped
        # between the check and the extraction. The copy stops one byte past the size the
        # manifest declares (a larger file fails verify without being copied whole).
        copy = Path(incoming) / "home.tar.gz"
        with open(archive, "rb") as src, open(copy, "xb") as dst:
            shutil.copyfileobj(_Bounded(src, given.size + 1), dst)
        archives.manifest_path(copy).write_text(given.to_json())
        manifest = archives.verify(copy)
        target = homes / archives.release_name(manifest.version, manifest.sha256)
        if not (target / archives.ARCHIVE_MARKER).exists():
            scratch = Path(incoming) / "home"
            with tarfile.open(copy, "r:gz") as tar:
                tar.extractall(scratch, filter="data")
            (scratch / archives.ARCHIVE_MARKER).write_text(json.dumps(
                {"sha256": manifest.sha256, "version": manifest.version}))
            shutil.rmtree(target, ignore_errors=True)     # a partial one from a crash
            os.replace(scratch, target)
    return str(target)


class _Bounded:
    """A reader that ends after `limit` bytes."""

    def __init__(self, f: Any, limit: int) -> None:
        self.f, self.left = f, limit

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.f.read(want) if want > 0 else b""
        self.left -= len(data)
        return bytes(data)


def entry_point_problem(command: list[str], home: str) -> str | None:
    """A command given relative to the home must exist there and be executable."""
    first = command[0] if command else ""
    if "/" not in first or first.startswith("/"):
        return None
    path = Path(home) / first
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"{home}: the entry point {first} is missing or not executable"
    return None


def version_of(home: str) -> str | None:
    try:
        return (Path(home) / "VERSION").read_text().strip()
    except OSError:
        return None

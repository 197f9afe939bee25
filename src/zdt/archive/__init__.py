"""Checksummed archives of a patched home (WebLogic's copyBinary, an OPatchAuto archive).

An archive is a deterministic `.tar.gz` of a home plus a JSON sidecar (`A.tar.gz.json`,
the `Manifest`) with the archive's sha256 and size and the sha256 of every regular file
inside. `verify` refuses, before one byte reaches a node, anything that differs from what
`create` makes or that could write outside the directory it is extracted into.
`zdt.staging.distribute` copies both files to every node's staging dir and skips a node that
already holds an identical copy: run again after an interruption, it does what is left.
"""

from zdt.archive.create import bundle, check_tree, create
from zdt.archive.manifest import (
    ARCHIVE_MARKER,
    HEX64,
    Manifest,
    manifest_path,
    read_manifest,
    sha256_file,
)
from zdt.archive.names import node_name_problem, release_name
from zdt.archive.verify import tree, verify

__all__ = [
    "ARCHIVE_MARKER",
    "HEX64",
    "Manifest",
    "bundle",
    "check_tree",
    "create",
    "manifest_path",
    "node_name_problem",
    "read_manifest",
    "release_name",
    "sha256_file",
    "tree",
    "verify",
]

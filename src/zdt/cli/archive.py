"""`zdt archive create | verify | distribute`: checksummed archives of a patched home."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from zdt import app
from zdt.app import Connect, manifest_path
from zdt.cli.common import AcceptNew, DomainOpt, JsonOpt, Parallel, group, handled, out, print_json

archive_app = group("Checksummed archives of a patched home.")


@archive_app.command("create")
@handled
def archive_create(
    home_dir: Annotated[Path, typer.Argument(help="The patched home to archive.")],
    output: Annotated[Path, typer.Argument(metavar="OUT.tar.gz")],
    version: Annotated[str | None, typer.Option(help="Version string [default: "
                                                     "HOME_DIR/VERSION].")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make a deterministic, checksummed archive of HOME_DIR (manifest beside it)."""
    manifest = app.create_archive(home_dir, output, version)
    if json_out:
        print_json({"archive": str(output), "manifest": str(manifest_path(output)),
                    "version": manifest.version, "sha256": manifest.sha256,
                    "size": manifest.size, "files": len(manifest.files)})
    else:
        out.print(f"{output}: version {manifest.version}, {len(manifest.files)} files, "
                  f"sha256 {manifest.sha256}")


@archive_app.command("verify")
@handled
def archive_verify(
    archive_path: Annotated[Path, typer.Argument(metavar="ARCHIVE.tar.gz")],
    json_out: JsonOpt = False,
) -> None:
    """Check an archive against its manifest, member by member, as a rollout would; reads
    only (exit 2 naming the member on the first problem)."""
    manifest = app.verify_archive(archive_path)
    if json_out:
        print_json({"archive": str(archive_path), "version": manifest.version,
                    "sha256": manifest.sha256, "size": manifest.size,
                    "unpacked": manifest.unpacked, "files": len(manifest.files)})
    else:
        out.print(f"{archive_path}: version {manifest.version}, {len(manifest.files)} files, "
                  f"{manifest.unpacked / 2**20:.1f} MiB unpacked, sha256 {manifest.sha256}: "
                  "sound")


@archive_app.command("distribute")
@handled
def archive_distribute(
    archive_path: Annotated[Path, typer.Argument(metavar="ARCHIVE.tar.gz")],
    domain: DomainOpt = Path("domain.toml"),
    parallel: Parallel = 8,
    accept_new_host_keys: AcceptNew = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy a verified archive to every node's staging dir (skipping nodes that hold it)."""
    connect = Connect(accept_new_host_keys, parallel)
    result = asyncio.run(app.App(domain, connect=connect).distribute(archive_path))
    if json_out:
        print_json({"archive": str(archive_path), "nodes": result})
    else:
        for node, what in result.items():
            out.print(f"{node}: {what}")

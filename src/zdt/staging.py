"""Staging an archive on every node: copied once, verified on the node by its digest.

`zdt archive distribute` does it ahead of a rollout; a home rollout's extract step stages
whatever is missing on its own node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from zdt.adapters.transport import Transport
from zdt.archive import HEX64, manifest_path, sha256_file, verify
from zdt.domain import Domain
from zdt.errors import AdapterError, ConfigError, ZdtError


def staged_path(domain: Domain, archive_sha256: str) -> str:
    """The node path where `distribute` puts an archive: named by its digest, so two
    releases never overwrite each other and a re-run finds what is already there."""
    return f"{domain.domain.staging.rstrip('/')}/{archive_sha256[:16]}.tar.gz"


async def distribute(domain: Domain, archive: Path, transports: Mapping[str, Transport], *,
                     parallel: int = 8, timeout: float = 600.0) -> dict[str, str]:
    """Stage a verified archive and its sidecar on every node of the domain.

    Returns {node: "present" | "copied"}. Nothing is copied when `verify` refuses the
    archive. A node whose copy does not hash right after the copy raises AdapterError;
    the other nodes finish their copies first, so a re-run has less to do.
    """
    if parallel < 1:
        raise ConfigError(f"parallel must be at least 1, got {parallel}")
    missing = [n.name for n in domain.nodes if n.name not in transports]
    if missing:
        raise ConfigError(f"{domain.source}: no transport for node(s) {', '.join(missing)}")
    manifest = await asyncio.to_thread(verify, archive)
    sidecar = manifest_path(archive)
    sidecar_sha, _ = await asyncio.to_thread(sha256_file, sidecar)
    target = staged_path(domain, manifest.sha256)
    copies = [(archive, target, manifest.sha256), (sidecar, target + ".json", sidecar_sha)]
    gate = asyncio.Semaphore(parallel)

    async def one(node: str) -> str:
        async with gate:
            copied = [await stage(transports[node], src, dst, sha, timeout)
                      for src, dst, sha in copies]
        return "copied" if any(copied) else "present"

    names = [n.name for n in domain.nodes]
    results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
    _raise_failures(results)
    return {n: r for n, r in zip(names, results, strict=True) if isinstance(r, str)}


async def stage(t: Transport, local: Path, remote: str, sha: str,
                timeout: float = 600.0) -> bool:
    """Make `remote` on the node hold `local`'s bytes; True when a copy was needed."""
    if await _node_sha256(t, remote, timeout) == sha:
        return False
    try:
        async with asyncio.timeout(timeout):
            await t.put(str(local), remote)
    except TimeoutError:
        raise AdapterError(f"{t.node}: copying {local} to {remote} took more than "
                           f"{timeout:g} s") from None
    got = await _node_sha256(t, remote, timeout)
    if got != sha:
        raise AdapterError(f"{t.node}: {remote}: sha256 after the copy is "
                           f"{got or 'unreadable'}, expected {sha}")
    return True


async def _node_sha256(t: Transport, remote: str, timeout: float) -> str | None:
    """The sha256 of a file, computed on the node; None when it is missing or unreadable."""
    # commands run wherever the transport runs them; for a local node that is this
    # machine, so the argv carries the path as this machine sees it (its root dir mapped)
    result = await t.run(["sha256sum", "--", t.path(remote)], check=False, timeout=timeout)
    fields = result.stdout.split(maxsplit=1) if result.returncode == 0 else []
    # GNU sha256sum prefixes the line with "\" when the file name needs escaping
    digest = fields[0].lstrip("\\") if fields else ""
    return digest if HEX64.fullmatch(digest) else None


def _raise_failures(results: Sequence[object]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, ZdtError):
            raise error             # a bug, not a node's failure: keep its traceback
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise AdapterError("; ".join(str(e) for e in errors)) from errors[0]

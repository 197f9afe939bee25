"""`zdt live … -d domain.toml --node N`: a live operation on a domain's node, driven from
this machine (AIX's NIM master starting a Live Update on its targets).

The node runs `zdt live` itself ([live] zdt in the domain: the node's zdt command). A file
given here (an archive and its manifest, a liveupdate.data file) is copied to the node's
staging dir first, named by its digest and verified there by its sha256 (and the archive
once more by the node's own `zdt live update`); the command's argv names the node's copy.
Everything the node prints comes back; its exit code is the command's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zdt.adapters.transport import Transport
from zdt.archive import manifest_path, sha256_file
from zdt.domain import Domain
from zdt.errors import ConfigError, NotFoundError
from zdt.staging import stage


@dataclass(frozen=True)
class Answer:
    node: str
    returncode: int
    stdout: str
    stderr: str


async def run(domain: Domain, transports: Mapping[str, Transport], node: str,
              args: Sequence[str], files: Mapping[str, Path] = {}) -> Answer:
    """`zdt live ARGS` on the node; `files`: option → local file, staged and replaced by
    the node's path (`--archive` brings its manifest along)."""
    if node not in transports:
        known = ", ".join(n.name for n in domain.nodes)
        raise NotFoundError(f"--node {node!r}: no such node in {domain.source} "
                            f"(known: {known})")
    t = transports[node]
    argv = list(args)
    for option, local in files.items():
        argv += [option, await _staged(domain, t, local, sidecar=option == "--archive")]
    r = await t.run([*domain.live.zdt, "live", *argv], check=False,
                    timeout=domain.live.timeout)
    return Answer(node, r.returncode, r.stdout, r.stderr)


async def _staged(domain: Domain, t: Transport, local: Path, *, sidecar: bool) -> str:
    if not local.is_file():
        raise ConfigError(f"{local}: not a file on this machine")
    sha, _ = sha256_file(local)
    suffix = ".tar.gz" if local.name.endswith(".tar.gz") else local.suffix
    remote = f"{domain.domain.staging.rstrip('/')}/live/{sha[:16]}{suffix}"
    await stage(t, local, remote, sha)
    if sidecar:
        manifest = manifest_path(local)
        if not manifest.is_file():
            raise ConfigError(f"{local}: its manifest {manifest.name} is not beside it "
                              "(`zdt archive create` writes both)")
        await stage(t, manifest, remote + ".json", sha256_file(manifest)[0])
    return t.path(remote)

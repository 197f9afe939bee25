"""The extract step trusts what tar wrote only if it is the verified archive, entry for
entry: a staged file swapped after its digest was checked is caught, whatever it brings."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from hostile_archives import build, directory, reg, special
from zdt import domain as dm
from zdt.adapters.transport import Result
from zdt.adapters.transport.local import LocalTransport
from zdt.archive import verify
from zdt.errors import StepError
from zdt.steps import Context, HomeChange, StepSpec, home

GOOD = [directory("bin"), reg("bin/start", b"#!/bin/sh\n"), reg("VERSION", b"v2\n")]


class SwappingTransport(LocalTransport):
    """Replaces the staged archive by another just before tar reads it."""

    def __init__(self, root: Path, swap: Path | None) -> None:
        super().__init__("node1", str(root))
        self.swap = swap

    async def run(self, argv: list[str], *, check: bool = True,
                  timeout: float | None = 60.0) -> Result:
        if argv[0] == "tar" and self.swap is not None:
            shutil.copyfile(self.swap, argv[2])
        return await super().run(argv, check=check, timeout=timeout)


def setuid(member: tuple[tarfile.TarInfo, bytes | None]) -> tuple[tarfile.TarInfo, bytes | None]:
    member[0].mode = 0o4755
    return member


# each swap holds the same regular files, byte for byte: only types, modes, links differ
SWAPS = {
    "a symlink out": [*GOOD, special("bin/evil", tarfile.SYMTYPE, "../../../etc")],
    "a directory more": [*GOOD, directory("more")],
    "a set-uid bit": [directory("bin"), setuid(reg("bin/start", b"#!/bin/sh\n")),
                      reg("VERSION", b"v2\n")],
}


@pytest.mark.parametrize("swapped", list(SWAPS.values()), ids=list(SWAPS))
async def test_a_staged_archive_swapped_before_tar_is_caught(
        tmp_path: Path, domain_file: Path, swapped: list) -> None:
    good = build(tmp_path / "good.tar.gz", GOOD)
    manifest = verify(good)
    (tmp_path / "bad").mkdir()
    bad = build(tmp_path / "bad" / "bad.tar.gz", swapped)
    domain = dm.load(domain_file)
    root = tmp_path / "node1"
    root.mkdir()
    t = SwappingTransport(root, bad)
    change = HomeChange(str(good), manifest.sha256, manifest.version)
    # the extract step uses neither the service manager nor the LB: none is given
    ctx = Context(domain, None, None, transports={"node1": t}, workflow="wf-1",  # type: ignore[arg-type]
                  change=change)
    step = home.Extract(ctx, StepSpec(0, 0, "node1", "extract", ("s1",)))
    with pytest.raises(StepError, match="differs from the archive \\(types, modes or links"):
        await step.execute()
    t.swap = None                                       # the retry stages it again
    assert (await step.execute()) is not None
    release = root / home.Paths(ctx).release.lstrip("/")
    assert sorted(p.name for p in release.rglob("*")) == [".zdt-release", "VERSION", "bin",
                                                          "start"]

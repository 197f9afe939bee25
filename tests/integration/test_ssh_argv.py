"""A property of the SSH transport, checked against a real sshd and the node's real shell:
whatever an argv holds (spaces, quotes, `;`, `$()`, backticks, newlines, globs), the
process on the node receives exactly those arguments, and a command template of the
domain filled with hostile values stays one argument per item."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import needs_isolation, running_sandbox
from zdt import adapters
from zdt import domain as dm
from zdt.adapters.services import command_argv as fill
from zdt.errors import CommandError

pytestmark = [pytest.mark.integration, needs_isolation]

HOSTILE = st.sampled_from([" ", "'", '"', ";", "$(", ")", "`", "\n", "\t", "*", "?", "&",
                           "|", ">", "<", "\\", "#", "~", "-", "--", "$HOME", "!", "{", "}"])
# Any text but NUL (which no argv item can hold), rich in what a shell would act on.
ITEM = st.lists(st.one_of(HOSTILE, st.text(st.characters(blacklist_characters="\0",
                                                          blacklist_categories=("Cs",)),
                                           max_size=8)),
                max_size=6).map("".join)


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[asyncio.AbstractEventLoop, Any, dm.Domain]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    loop = asyncio.new_event_loop()
    try:
        with running_sandbox(base, 1, 1, admin=False, isolated=True) as info:
            domain = dm.load(info["domain"])
            transport = adapters.transports(domain)["node1"]
            try:
                yield loop, transport, domain
            finally:
                loop.run_until_complete(transport.close())
    finally:
        loop.close()
        shutil.rmtree(base, ignore_errors=True)


def received(loop: asyncio.AbstractEventLoop, transport: Any, items: list[str]) -> list[str]:
    """The arguments the node's printf got, each ended by a NUL."""
    result = loop.run_until_complete(transport.run(["printf", "%s\\0", *items]))
    return result.stdout.split("\0")[:-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(ITEM, min_size=1, max_size=5))
def test_argv_reaches_the_node_unchanged(node: Any, items: list[str]) -> None:
    loop, transport, _ = node
    assert received(loop, transport, items) == items


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(home=ITEM.filter(lambda h: ".." not in h.split("/")), wrap=ITEM)
def test_template_placeholders_stay_one_argument(node: Any, home: str, wrap: str) -> None:
    loop, transport, domain = node
    hostile = domain.model_copy(update={"domain": domain.domain.model_copy(
        update={"home": "/" + home})})
    server = domain.servers[0]
    template = ("{home}", f"{wrap.replace('{', '{{').replace('}', '}}')}{{server}}",
                "{node}{home}")
    argv = fill(template, hostile, server)
    assert argv == ["/" + home, f"{wrap}{server.name}", f"{server.node}/{home}"]
    assert received(loop, transport, argv) == argv


def test_a_timed_out_command_is_ended_on_the_node(node: Any) -> None:
    loop, transport, _ = node
    marker = "sleep 30.125"                  # an argv no other process has
    with pytest.raises(CommandError, match=r"timed out after 0\.5 s"):
        loop.run_until_complete(transport.run(marker.split(), timeout=0.5))
    left = loop.run_until_complete(transport.run(["ps", "-eo", "args"])).stdout
    assert marker not in left
    # and the connection is still good for the next command
    assert received(loop, transport, ["after"]) == ["after"]


def test_a_command_deaf_to_sigterm_is_killed_on_the_node(node: Any) -> None:
    """The second stage of the node's timeout: SIGKILL, still reported as a timeout."""
    loop, transport, _ = node
    marker = "sleep 30.375"
    with pytest.raises(CommandError, match=r"timed out after 0\.5 s"):
        loop.run_until_complete(transport.run(
            ["sh", "-c", f"trap '' TERM; exec {marker}"], timeout=0.5))
    left = loop.run_until_complete(transport.run(["ps", "-eo", "args"])).stdout
    assert marker not in left


def test_a_child_left_running_does_not_hold_the_command(node: Any) -> None:
    """`daemon &` then exit 0 (a hook starting something): done when the command exits,
    with its output, not when the child ends or the timeout comes."""
    loop, transport, _ = node
    marker = "sleep 60.625"          # outlives the channel's backstop (5 + 5 + 10 s)
    result = loop.run_until_complete(transport.run(
        ["sh", "-c", f"{marker} & echo started; echo note >&2"], timeout=5))
    assert (result.returncode, result.stdout, result.stderr) == (0, "started\n", "note\n")
    left = loop.run_until_complete(transport.run(["ps", "-eo", "pid,args"])).stdout
    pids = [line.split()[0] for line in left.splitlines() if marker in line]
    assert pids                                   # it was meant to run on: not killed
    loop.run_until_complete(transport.run(["kill", *pids], check=False))

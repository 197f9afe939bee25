"""Names, versions, paths and messages from users and nodes are printed as written: never as
console markup (which crashed the CLI or hid lines), never as terminal control codes."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from zdt.cli import live as cli_live
from zdt.cli import preview as cli_preview
from zdt.cli.main import app
from zdt.display import Progress
from zdt.terminal import SafeConsole, clean
from zdt.workflow.journal import StepRecord
from zdt.workflow.journal.sqlite import SqliteJournal
from zdt.workflow.plan import Plan, StepSpec

runner = CliRunner()
# Markup that crashes Rich ([/]), markup that would restyle ([red], [link=…]), an ANSI
# sequence that clears the screen, an OSC that retitles the terminal, a bidi override.
HOSTILE = ["v2 [/]", "[red]x[/red]", "[link=http://x]y", "a\x1b[2Jb", "t\x1b]0;pwned\x07",
           "evil\u202etxt.sh", "[bold", "line\rover"]


def shown(text: str) -> None:
    """Each hostile piece appears as written (markup literally, controls as escapes)."""
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    for piece in HOSTILE:
        assert clean(piece, lines=False) in text.replace("\n", "") or clean(piece) in text


@pytest.fixture
def hostile_journal(domain_file: Path) -> Iterator[str]:
    journal = SqliteJournal(domain_file.parent / "state", lambda: 1_800_000_000.0)
    try:
        steps = tuple(StepSpec(i, 0, f"n{i}{HOSTILE[i]}", "drain", (f"s{HOSTILE[-1 - i]}",))
                      for i in range(len(HOSTILE)))
        change = {"version": " ".join(HOSTILE), "sha256": "0" * 64, "rollback": False}
        journal.create("wf-1", "home", str(domain_file), {"targets": HOSTILE,
                                                          "change": change}, steps)
        journal.event("wf-1", "warning", " | ".join(HOSTILE))
        journal.set_step("wf-1", 0, "failed", error=" ".join(HOSTILE))
        journal.set_state("wf-1", "failed", " ".join(HOSTILE))
    finally:
        journal.close()
    yield "wf-1"


@pytest.mark.parametrize("args", [["status", "wf-1"], ["status"], ["history"]])
def test_journal_strings_through_status_and_history(
        domain_file: Path, hostile_journal: str, args: list[str]) -> None:
    result = runner.invoke(app, [*args, "-d", str(domain_file)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "\x1b" not in result.output
    if args[0] == "history":
        assert "wf-1" in result.output
    else:
        shown(result.output)


def test_an_error_message_naming_a_hostile_path(tmp_path: Path) -> None:
    where = tmp_path / "d[/]\x1b[2J"
    result = runner.invoke(app, ["status", "-d", str(where / "domain.toml")])
    assert result.exit_code == 2, result.output
    assert "d[/]\\x1b[2J" in result.output and "\x1b" not in result.output


def capture(monkeypatch: pytest.MonkeyPatch, *modules: Any) -> io.StringIO:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=400)
    for module in modules:
        monkeypatch.setattr(module, "out", console)
        if hasattr(module, "err"):
            monkeypatch.setattr(module, "err", console)
    return buffer


def test_preview_of_hostile_names(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = capture(monkeypatch, cli_preview)
    check = {"node": HOSTILE[0], "server": HOSTILE[1], "name": HOSTILE[2], "ok": False,
             "detail": " ".join(HOSTILE)}
    cli_preview._print_preview({
        "kind": "home", "targets": HOSTILE, "domain": HOSTILE[3],
        "archive": {"path": HOSTILE[4], "version": HOSTILE[5], "sha256": "0" * 64, "size": 1,
                    "unpacked": 1, "rollback": False},
        "preconditions": [check], "ok": False,
        "runtime_changes": {HOSTILE[6]: [{"path": HOSTILE[7], "line": 1, "before": HOSTILE[0],
                                          "after": HOSTILE[1]}]},
        "plan": [{"batch": 1, "node": HOSTILE[2], "servers": HOSTILE, "steps": ["drain"]}],
        "capacity": {"batches": 1, "batch": HOSTILE[5], "largest_batch": 1,
                     "clusters": [{"line": HOSTILE[6]}]},
        "estimates": {"total_seconds": 1.0, "per_node": [{"node": HOSTILE[3], "seconds": 1}],
                      "basis": HOSTILE[4]}})
    shown(buffer.getvalue())


def test_live_status_and_preview_of_hostile_names(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = capture(monkeypatch, cli_live)
    cli_live._show_status({"name": HOSTILE[0], "pid": 1, "ready": True, "listen": HOSTILE,
                           "home": " ".join(HOSTILE), "version": HOSTILE[1]}, False)
    shown(buffer.getvalue())


def test_progress_lines_of_hostile_names() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, width=400)
    specs = tuple(StepSpec(i, i, f"n{h}", "drain", (h,)) for i, h in enumerate(HOSTILE))
    plan = Plan("restart", tuple(HOSTILE), specs, tuple(s.node for s in specs))
    with Progress(plan, console) as progress:
        for s in specs:
            progress(StepRecord(s.index, s.group, s.node, s.name, s.servers, "done", 1,
                                None, None, None), "done")
        console.print(progress._table())
    shown(buffer.getvalue())


def test_stale_lists_a_hostile_process_name(tmp_path: Path) -> None:
    """Any local user can name a process and its files; `zdt stale` prints them as text."""
    where = tmp_path / "x[/][red]\x1b[2J"
    where.mkdir(parents=True)
    exe = Path(shutil.copy2("/bin/sleep", where / "s[bold]\x1b]0;t\x07\nforged"))
    process = subprocess.Popen([str(exe), "30"])
    try:
        exe.unlink()
        result = runner.invoke(app, ["stale"])
    finally:
        process.kill()
        process.wait()
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    # one line per process and per file: a newline in a name cannot forge a line
    assert "x[/][red]\\x1b[2J/s[bold]\\x1b]0;t\\x07\\x0aforged" in result.output.replace("\n", "")
    assert not any(line.startswith("forged") for line in result.output.splitlines())


def test_a_live_script_that_leaves_a_child_running_is_done_when_it_exits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`daemon &` then exit 0 in a live stanza script: done at its exit, the child kept
    (before: waited for the pipes' end, so the child's 30 s ran past the timeout)."""
    from zdt.live import operations

    monkeypatch.setattr(operations, "SCRIPT_TIMEOUT", 5.0)
    script = tmp_path / "pre"
    script.write_text("#!/bin/sh\nsleep 30 &\necho $! > \"$(dirname \"$0\")/child\"\n"
                      "echo fine >&2\n")
    script.chmod(0o755)
    assert asyncio.run(operations.run_script(str(script), {"PATH": "/usr/bin:/bin"})) is None
    child = int((tmp_path / "child").read_text())
    try:
        assert Path(f"/proc/{child}").exists()
    finally:
        os.kill(child, 9)
    script.write_text("#!/bin/sh\necho broken >&2\nexit 4\n")
    assert asyncio.run(operations.run_script(str(script), {})) == "exited 4: broken"

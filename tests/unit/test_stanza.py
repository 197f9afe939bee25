"""liveupdate.data → LiveUpdateData: every bad file names the file, the line and the key or
stanza, exits 2, and one error lists every problem in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from zdt.errors import ConfigError
from zdt.live import stanza
from zdt.live.stanza import General, LiveUpdateData, Scripts, load, parse

FULL = """\
# Live update of the web workload to release 2.
general:
    name = web
    home = "/srv/app/releases/v2 #2"     # quoted: the # belongs to the path
\tready_timeout = 12.5
    checkpoint_timeout = 45
    stop_timeout = .5
    blackout_budget_ms = 250

scripts:
    check = /opt/hooks/check
    pre = /opt/hooks/drain, /opt/hooks/notify   # two, in this order
    pre = /opt/hooks/last
    post = "/opt/hooks/a,b"
    error = /opt/hooks/page#1
    complete = /opt/hooks/done
"""


def test_a_full_file_reads_into_every_field(tmp_path: Path) -> None:
    path = tmp_path / "liveupdate.data"
    path.write_text(FULL)
    assert parse(path.read_text(), str(path)) == LiveUpdateData(     # scripts not on disk
        general=General(name="web", home="/srv/app/releases/v2 #2", archive=None,
                        ready_timeout=12.5, checkpoint_timeout=45.0, stop_timeout=0.5,
                        blackout_budget_ms=250),
        scripts=Scripts(check=("/opt/hooks/check",),
                        pre=("/opt/hooks/drain", "/opt/hooks/notify", "/opt/hooks/last"),
                        post=("/opt/hooks/a,b",), error=("/opt/hooks/page#1",),
                        complete=("/opt/hooks/done",)),
        source=str(path))


def test_crlf_a_byte_order_mark_and_an_archive_read_the_same(tmp_path: Path) -> None:
    path = tmp_path / "win.data"
    text = "general:\n  archive = /srv/v2.tar.gz\n  blackout_budget_ms = 0\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    data = load(path)
    assert data.general == General(archive="/srv/v2.tar.gz", blackout_budget_ms=0)
    assert data.scripts == Scripts()


def test_an_empty_file_gives_the_defaults() -> None:
    data = parse("# nothing yet\n\n", "empty.data")
    assert data == LiveUpdateData(General(), Scripts(), "empty.data")
    assert (data.general.ready_timeout, data.general.stop_timeout) == (30.0, 10.0)


def good(*attrs: str, stanza: str = "general") -> str:
    """A valid file (lines 1-3) with `attrs` appended under `stanza` from line 5 on."""
    head = "general:\n    name = web\n    home = /srv/v2\n"
    return head + f"{stanza}:\n" + "".join(f"    {a}\n" for a in attrs)


# (id, file text, line, key or stanza named, words in the reason)
BAD = [
    ("unknown-stanza", good("x = 1", stanza="network"), 4, "network", "unknown stanza"),
    ("duplicate-stanza", good("stop_timeout = 3"), 4, "general", "duplicate stanza"),
    ("unknown-key", good("colour = blue", stanza="scripts"), 5, "scripts.colour",
     "unknown key"),
    ("unknown-general-key", "general:\n  homedir = /srv\n", 2, "general.homedir",
     "unknown key"),
    ("duplicate-key", "general:\n  name = a\n  # again\n  name = b\n", 4, "general.name",
     "duplicate key (first at line 2)"),
    ("attribute-before-stanza", "# top\n  name = web\ngeneral:\n", 2, "name",
     "before any stanza"),
    ("unreadable-line", "general:\n  name = web\n  home /srv/v2\n", 3, "general",
     "cannot read"),
    ("unindented-attribute", "general:\nname = web\n", 2, "general.name", "indented"),
    ("indented-header", "general:\n  name = web\n  scripts:\n", 3, "scripts", "column 0"),
    ("text-after-header", "general: web\n", 1, "general", "nothing may follow"),
    ("empty-value", "general:\n  name =\n", 2, "general.name", "empty value"),
    ("empty-quoted-value", 'general:\n  name = ""  # none\n', 2, "general.name",
     "empty value"),
    ("empty-after-comment", "scripts:\n  pre = # later\n", 2, "scripts.pre", "empty value"),
    ("unterminated-quote", 'general:\n  home = "/srv/v2\n', 2, "general.home",
     "unterminated quote"),
    ("timeout-words", "general:\n\n  ready_timeout = soon\n", 3, "general.ready_timeout",
     "not a number of seconds: 'soon'"),
    ("timeout-nan", "general:\n  ready_timeout = nan\n", 2, "general.ready_timeout",
     "not a number of seconds"),
    ("timeout-zero", "general:\n  checkpoint_timeout = 0\n", 2, "general.checkpoint_timeout",
     "out of range"),
    ("timeout-negative", "general:\n  stop_timeout = -1\n", 2, "general.stop_timeout",
     "out of range"),
    ("timeout-over-a-day", "general:\n  stop_timeout = 86400.5\n", 2, "general.stop_timeout",
     "at most 86400 s"),
    ("budget-fraction", "general:\n  blackout_budget_ms = 1.5\n", 2,
     "general.blackout_budget_ms", "not a whole number of milliseconds"),
    ("budget-negative", "general:\n  blackout_budget_ms = -3\n", 2,
     "general.blackout_budget_ms", "negative"),
    ("relative-home", "general:\n  home = srv/v2\n", 2, "general.home",
     "not an absolute path: 'srv/v2'"),
    ("relative-archive", "general:\n  archive = ./v2.tar.gz\n", 2, "general.archive",
     "not an absolute path"),
    ("home-and-archive", "general:\n  home = /srv/v2\n  name = web\n  archive = /srv/a.tgz\n",
     4, "general.archive", "not both (home at line 2)"),
    ("relative-script", good("check = /ok", "pre = hooks/pre", stanza="scripts"), 6,
     "scripts.pre", "not an absolute path: 'hooks/pre'"),
    ("empty-script-in-list", "scripts:\n  post = /ok,,/ok\n", 2, "scripts.post",
     "empty path"),
    # `env NAME=VALUE… SCRIPT` would run nothing and pass: refused like a hook's '='
    ("script-with-equals", "scripts:\n  pre = /opt/hooks/pre=1.sh\n", 2, "scripts.pre",
     "may not contain '='"),
]


@pytest.mark.parametrize(("text", "line", "where", "why"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_file_names_file_line_and_key(tmp_path: Path, text: str, line: int,
                                           where: str, why: str) -> None:
    path = tmp_path / "liveupdate.data"
    path.write_text(text.replace("/ok", str(OK_SCRIPT)))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.exit_code == 2
    message = str(err.value)
    assert f"{path}:{line}: {where}: " in message, message
    assert why in message, message
    assert "1 problem(s)" in message, message


OK_SCRIPT = Path("/bin/true")


def _script(tmp_path: Path, kind: str) -> str:
    path = tmp_path / "hook"
    if kind == "not executable":
        path.write_text("#!/bin/sh\n")
        path.chmod(0o644)
    elif kind == "a directory":
        path.mkdir()
    return str(path)


@pytest.mark.parametrize("kind", ["missing", "not executable", "a directory"])
def test_a_script_that_cannot_run_is_bad_input(tmp_path: Path, kind: str) -> None:
    """Before: a missing or non-executable script was a traceback when its phase came."""
    script = _script(tmp_path, kind)
    path = tmp_path / "liveupdate.data"
    path.write_text(f"general:\n  home = /srv\nscripts:\n  pre = {script}\n")
    with pytest.raises(ConfigError, match=rf"liveupdate.data:4: scripts.pre: {script} is "
                       "missing or not an executable file"):
        load(path)


def test_the_example_message_reads_as_documented() -> None:
    with pytest.raises(ConfigError) as err:
        parse("\n" * 5 + "general:\n  ready_timeout = soon\n", "liveupdate.data")
    assert ("liveupdate.data:7: general.ready_timeout: not a number of seconds: 'soon'"
            in str(err.value))


def test_every_problem_is_listed_in_line_order() -> None:
    text = ("  name = early\n"            # 1: before any stanza
            "scripts:\n"
            "  pre = /ok, bad\n"          # 3
            "  nonsense here\n"           # 4
            "general:\n"
            "  ready_timeout = soon\n"    # 6
            "  home = relative\n"         # 7
            "  stop_timeout = 0\n"        # 8
            "colours:\n"                  # 9: unknown stanza; its keys are not judged
            "  red = 1\n")
    with pytest.raises(ConfigError) as err:
        parse(text, "liveupdate.data")
    lines = str(err.value).splitlines()
    assert lines[0] == "liveupdate.data: 7 problem(s) in the live update data file:"
    assert lines[-1].startswith("Fix the file")
    named = [tuple(line.strip().split(": ")[:2]) for line in lines[1:-1]]
    assert named == [("liveupdate.data:1", "name"), ("liveupdate.data:3", "scripts.pre"),
                     ("liveupdate.data:4", "scripts"),
                     ("liveupdate.data:6", "general.ready_timeout"),
                     ("liveupdate.data:7", "general.home"),
                     ("liveupdate.data:8", "general.stop_timeout"),
                     ("liveupdate.data:9", "colours")]


def test_a_missing_file_is_bad_input_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "liveupdate.data"
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.exit_code == 2
    assert str(path) in str(err.value)
    assert "cannot read" in str(err.value)


def test_a_binary_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "liveupdate.data"
    path.write_bytes(b"general:\n  name = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        load(path)
    assert err.value.exit_code == 2


def test_workload_stanzas_name_several_workloads() -> None:
    parsed = stanza.parse("general:\n    home = /srv/all\nworkload:\n    name = api\n"
                          "workload:\n    name = worker\n    archive = /w.tar.gz\n"
                          "    state_dir = /var/lib/zdt/worker\n", "f")
    assert [(w.name, w.home, w.archive, w.state_dir, w.line) for w in parsed.workloads] == [
        ("api", None, None, None, 3), ("worker", None, "/w.tar.gz", "/var/lib/zdt/worker", 5)]


@pytest.mark.parametrize(("text", "problem"), [
    ("workload:\n    home = /a\n", "f:1: workload[0]: no name"),
    ("workload:\n    name = x\n    home = /a\n    archive = /b\n",
     "f:4: workload[0]: give home or archive, not both"),
    ("workload:\n    name = x\nworkload:\n    name = x\n",
     "f:4: workload[1].name: 'x' is already updated by the workload at line 1"),
    ("workload:\n    name = a b\n", "f:2: workload[0].name: not a workload name"),
    ("workload:\n    name = x\n    state_dir = rel\n",
     "f:3: workload[0].state_dir: not an absolute path"),
    ("workload:\n    name = x\n    name = y\n", "f:3: workload[0].name: duplicate key"),
])
def test_bad_workload_stanzas(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        stanza.parse(text, "f")
    assert problem in str(err.value) and err.value.exit_code == 2

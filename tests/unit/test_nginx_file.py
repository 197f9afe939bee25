"""The upstream file zdt owns for nginx: which lines it reads, and that marking a server
changes that server's line and nothing else."""

from __future__ import annotations

import pytest

from zdt.lb.nginx import LINE, _mark

FILE = """# operators may comment
upstream app {
    server 10.0.0.1:8001;  # web1-s1
    server 10.0.0.2:8001 down;  # web2-s1
    server [2001:db8::3]:8001 weight=2;  # web3-s1
    server 10.0.0.4:8001;
}
"""


@pytest.mark.parametrize(("line", "name", "down"), [
    ("    server 10.0.0.1:8001;  # web1-s1", "web1-s1", False),
    ("server 10.0.0.2:8001 down;#web2-s1", "web2-s1", True),
    ("\tserver a.example:80   down ;  #  x.y-1  ", "x.y-1", True),
])
def test_lines_read(line: str, name: str, down: bool) -> None:
    m = LINE.match(line)
    assert m is not None and m["name"] == name and (m["down"] is not None) == down


@pytest.mark.parametrize("line", [
    "    server 10.0.0.4:8001;",                        # no name: not zdt's to touch
    "    server 10.0.0.3:8001 weight=2;  # web3-s1",    # parameters zdt would drop
    "    # server 10.0.0.1:8001;  # web1-s1",           # commented out
    "upstream app {  # web1-s1",
])
def test_lines_left_alone(line: str) -> None:
    assert LINE.match(line) is None


def test_marking_changes_one_line() -> None:
    drained = _mark(FILE, "web1-s1", True)
    assert drained == FILE.replace("8001;  # web1-s1", "8001 down;  # web1-s1")
    assert _mark(drained, "web1-s1", False) == FILE
    assert _mark(FILE, "web2-s1", False) == FILE.replace("8001 down;  # web2-s1",
                                                         "8001;  # web2-s1")
    assert _mark(FILE, "nobody", True) == FILE

"""The upstream file zdt owns for nginx: which lines it reads, and that marking a server
changes that server's line and nothing else; the Lua peer list's answer."""

from __future__ import annotations

import pytest

from zdt.adapters.lb import Counts
from zdt.adapters.lb.nginx_lua import parse_admin
from zdt.adapters.lb.upstream_file import LINE, mark, parts, servers

FILE = """# operators may comment
upstream app {
    server 10.0.0.1:8001;  # web1-s1
    server 10.0.0.2:8001 down;  # web2-s1
    server [2001:db8::3]:8001 weight=2 max_fails=3;  # web3-s1
    server 10.0.0.4:8001;
\tserver 10.0.0.5:8001 down weight=5;  # web5-s1
}
"""


@pytest.mark.parametrize(("line", "name", "down"), [
    ("    server 10.0.0.1:8001;  # web1-s1", "web1-s1", False),
    ("server 10.0.0.2:8001 down;#web2-s1", "web2-s1", True),
    ("\tserver a.example:80   down ;  #  x.y-1  ", "x.y-1", True),
    ("    server 10.0.0.3:8001 weight=2 backup;  # web3-s1", "web3-s1", False),
    ("    server 10.0.0.3:8001 down max_fails=1;  # web3-s1", "web3-s1", True),
])
def test_lines_read(line: str, name: str, down: bool) -> None:
    m = LINE.match(line)
    assert m is not None and m["name"] == name and parts(m)[1] == down


@pytest.mark.parametrize("line", [
    "    server 10.0.0.4:8001;",                        # no name: not zdt's to touch
    "    # server 10.0.0.1:8001;  # web1-s1",           # commented out
    "upstream app {  # web1-s1",
    "    server ;  # web1-s1",                          # no address
])
def test_lines_left_alone(line: str) -> None:
    assert LINE.match(line) is None


def test_marking_changes_one_line() -> None:
    drained = mark(FILE, "web1-s1", True, "app")
    assert drained == FILE.replace("8001;  # web1-s1", "8001 down;  # web1-s1")
    assert mark(drained, "web1-s1", False, "app") == FILE
    assert mark(FILE, "web2-s1", False, "app") == FILE.replace("8001 down;  # web2-s1",
                                                         "8001;  # web2-s1")
    assert mark(FILE, "nobody", True, "app") == FILE


def test_marking_keeps_parameters_and_indentation() -> None:
    drained = mark(FILE, "web3-s1", True, "app")
    assert "    server [2001:db8::3]:8001 weight=2 max_fails=3 down;  # web3-s1\n" in drained
    assert mark(drained, "web3-s1", False, "app") == FILE
    ready = mark(FILE, "web5-s1", False, "app")
    assert "\tserver 10.0.0.5:8001 weight=5;  # web5-s1\n" in ready


def test_the_lua_modules_answer_is_read_by_name() -> None:
    peers = parse_admin("version 3\nserver web1-s1 up active 2\nserver web2-s1 down active 0\n"
                        "counts BACKEND requests=9 http_5xx=1 bogus=4\n"
                        "counts web1-s1 requests=9 connection_errors=1\n")
    assert (peers.up, peers.active) == ({"web1-s1": True, "web2-s1": False},
                                        {"web1-s1": 2, "web2-s1": 0})
    assert peers.counts["BACKEND"] == Counts(requests=9, http_5xx=1)
    assert peers.counts["web1-s1"] == Counts(requests=9, connection_errors=1)


@pytest.mark.parametrize("text", ["", "<html>404 Not Found</html>", "server a up active 1\n"])
def test_an_answer_not_from_the_lua_module_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_admin(text)


def test_only_the_backends_own_block_is_read_and_marked() -> None:
    other = "upstream admin {\n    server 10.0.9.1:9000;  # web1-s1\n}\n"
    text = other + FILE
    assert servers(text, "app") == {"web1-s1": False, "web2-s1": True, "web3-s1": False,
                                    "web5-s1": True}
    assert servers(text, "admin") == {"web1-s1": False}
    assert servers(text, "nothing") == {}
    drained = mark(text, "web1-s1", True, "app")
    assert drained.startswith(other)                    # the other block's web1-s1: as it was
    assert "10.0.0.1:8001 down;  # web1-s1" in drained

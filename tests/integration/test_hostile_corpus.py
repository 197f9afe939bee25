"""The hostile-input corpus: domain files, archives, apps.json specs, command-line arguments
and names with every odd character, each against a running sandbox. Every case must end
in exit 2 (bad input) or 3 (a precondition), with a message naming the spot (file, field,
member, option), and change nothing: a digest of every node's tree, the load balancer's
servers and the state dir are the same before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import running_sandbox, zdt
from hostile_archives import HOSTILE, Members, Mutate, build, reg
from zdt.adapters.lb.haproxy import HAProxy

pytestmark = pytest.mark.integration

Case = Callable[[dict[str, Any], Path], list[str]]     # (sandbox, tmp) -> zdt argv


@pytest.fixture(scope="module")
def sb() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="zdt-", dir="/tmp"))
    try:
        with running_sandbox(base, admin=False) as info:
            yield info
    finally:
        shutil.rmtree(base, ignore_errors=True)


def digest(sb: dict[str, Any]) -> str:
    """Every node's whole tree (names, modes, links, bytes) and the state dir's listing."""
    h = hashlib.sha256()
    root = Path(sb["dir"])
    for top in ("nodes", "state"):
        for p in sorted((root / top).rglob("*")) if (root / top).exists() else ():
            if p.is_socket():
                continue
            h.update(str(p.relative_to(root)).encode() + oct(p.lstat().st_mode).encode())
            if p.is_symlink():
                h.update(str(p.readlink()).encode())
            elif p.is_file() and top == "nodes":
                h.update(p.read_bytes())
    return h.hexdigest()


async def lb_state(sb: dict[str, Any]) -> dict[str, tuple[str, str]]:
    states = await HAProxy(sb["haproxy_socket"], "app").servers()
    return {name: (st.admin, st.status) for name, st in states.items()}


# -- domain files: the sandbox's file, edited, written beside it --------------------------

def domain(edit: Callable[[str], str], *rest: str) -> Case:
    def case(sb: dict[str, Any], tmp: Path) -> list[str]:
        path = Path(sb["domain"]).with_name("hostile.toml")
        text = Path(sb["domain"]).read_text()
        data = edit(text)
        path.write_bytes(data.encode("utf-8", "surrogateescape"))
        return [*(rest or ("rollout", "restart", "--targets", "cluster1")), "-d", str(path)]
    return case


def sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def remote_node3(text: str) -> str:
    """node3 over SSH, its server keeping host 127.0.0.1 and no health_url of its own."""
    text = sub('address = "local"\nroot = "nodes/node3"', 'address = "ssh://d@web3.example"')(text)
    head, server = text.split('name = "node3-s1"', 1)
    server = "\n".join(line for line in server.split("\n") if not line.startswith("health_url"))
    return head + 'name = "node3-s1"' + server


_DOMAIN_EDITS = [
    ("toml syntax", sub('name = "sandbox"', 'name = = "x"'), 2, ["hostile.toml", "TOML"]),
    ("not utf-8", sub('name = "sandbox"', 'name = "sand\udce9box"'), 2, ["not UTF-8"]),
    ("unknown key", sub('backend = "app"', 'backend = "app"\ncolour = 1'), 2, ["lb.colour"]),
    ("program {server!r}", sub('program = "{server}"', 'program = "{server!r}"'), 2,
     ["services.program", "{server!r} is not a placeholder"]),
    ("program {server.x}", sub('program = "{server}"', 'program = "{server.__class__}"'), 2,
     ["services.program"]),
    ("program {server:>20}", sub('program = "{server}"', 'program = "{server:>20}"'), 2,
     ["services.program"]),
    ("program {0}", sub('program = "{server}"', 'program = "{0}"'), 2, ["services.program"]),
    ("home /", sub('home = "/srv/app/home"', 'home = "/"'), 2,
     ["domain.home", "names / itself"]),
    ("home //.", sub('home = "/srv/app/home"', 'home = "//."'), 2, ["domain.home"]),
    ("home dot-dot", sub('home = "/srv/app/home"', 'home = "/srv/../etc"'), 2,
     ["domain.home", "'..'"]),
    ("home newline", sub('home = "/srv/app/home"', 'home = "/srv/app\\nhome"'), 2,
     ["domain.home", "control characters"]),
    ("relative home", sub('home = "/srv/app/home"', 'home = "srv"'), 2, ["domain.home"]),
    ("two nodes one root", sub('root = "nodes/node2"', 'root = "nodes/./node1/"'), 2,
     ["nodes[1].root", "is node 'node1' already"]),
    ("two ssh nodes one host", lambda t: sub(
        'address = "local"\nroot = "nodes/node3"', 'address = "ssh://a@web.example"')(sub(
            'address = "local"\nroot = "nodes/node2"', 'address = "ssh://b@WEB.example:22"')(
            t)), 2, ["nodes[2].address", "is node 'node2' already"]),
    ("loopback host on a remote node", remote_node3, 2,
     ["servers[2].host", "is this machine, not node 'node3'"]),
    ("ssh option injection", sub('address = "local"\nroot = "nodes/node3"',
                                 'address = "ssh://-oProxyCommand=x"'), 2,
     ["nodes[2].address", "bad host name"]),
    ("server on an unknown node", sub('node = "node3"', 'node = "ghost"'), 2,
     ["servers[2].node", "unknown node 'ghost'"]),
    ("port 0", lambda t: t.replace("\nport = ", "\nport = 0\n#", 1), 2, ["servers[0].port"]),
    ("server name with a space", sub('name = "node2-s1"', 'name = "node2 s1"'), 2,
     ["servers[1].name"]),
    ("cluster of an unknown server", sub('servers = ["node1-s1"', 'servers = ["ghost"'), 2,
     ["clusters[0].servers[0]", "unknown server 'ghost'"]),
    ("hook with =", sub("[runtime]", '[hooks]\neach-node = "/bin/x=y"\n\n[runtime]'), 2,
     ["hooks.each-node"]),
    ("runtime glob with dot-dot", sub('scripts = ["bin/*.sh"', 'scripts = ["../*.sh"'), 2,
     ["runtime.scripts"]),
    ("application location /", sub('location = "/srv/app/apps/shop"', 'location = "/"'), 2,
     ["applications[0].location"]),
    ("no servers", lambda t: t[:t.index("[[servers]]")], 2, ["servers"]),
]
DOMAIN = [(name, domain(edit), code, words) for name, edit, code, words in _DOMAIN_EDITS]

# -- archives: each one defect, through a home rollout -----------------------------------


def archive(members: Members, mutate: Mutate) -> Case:
    def case(sb: dict[str, Any], tmp: Path) -> list[str]:
        path = build(tmp / "a.tar.gz", members)
        if mutate is not None:
            mutate(path)
        return ["rollout", "home", "-d", sb["domain"], "--targets", "cluster1", "--archive",
                str(path)]
    return case


ARCHIVES = [(name, archive(members, mutate), 2, words)
            for name, members, mutate, words in HOSTILE]

# -- apps.json specs ------------------------------------------------------------------------


def apps(content: Any) -> Case:
    def case(sb: dict[str, Any], tmp: Path) -> list[str]:
        path = tmp / "apps.json"
        patched = str(Path(sb["apps"]).parent / "apps" / "shop-2")
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps({"applications": content}).replace("PATCHED", patched))
        return ["rollout", "apps", "-d", sb["domain"], "--targets", "cluster1", "--apps",
                str(path)]
    return case


def app(**fields: str) -> list[dict[str, str]]:
    return [{"name": "shop", "mode": "stage", "patched_location": "PATCHED",
             "backup_location": "/srv/app/apps-bak/shop", **fields}]


APPS = [
    ("apps not json", apps("{oops"), 2, ["apps.json", "not valid JSON"]),
    ("apps unknown app", apps(app(name="blog")), 2, ["no application 'blog'"]),
    ("apps bad mode", apps(app(mode="copy")), 2, ["mode", "'copy'"]),
    ("apps mode differs", apps(app(mode="nostage")), 2, ["deployed stage, not nostage"]),
    ("apps relative backup", apps(app(backup_location="bak")), 2, ["backup_location"]),
    ("apps backup //", apps(app(backup_location="/srv/app/apps//shop/old")), 2,
     ["lie inside one another"]),
    ("apps backup /.", apps(app(backup_location="/srv/app/apps/shop/.")), 2,
     ["lie inside one another"]),
    ("apps backup in the home", apps(app(backup_location="/srv/app/home/x")), 2,
     ["lies in the home"]),
    ("apps backup newline", apps(app(backup_location="/srv/b\nak")), 2,
     ["backup_location", "control characters"]),
    ("apps staged dir missing", apps(app(patched_location="/nope")), 2,
     ["/nope is not a directory here"]),
    ("apps listed twice", apps(app() * 2), 2, ["listed twice"]),
]

# -- command-line arguments -----------------------------------------------------------------


def cli(*argv: str) -> Case:
    def case(sb: dict[str, Any], tmp: Path) -> list[str]:
        return [a.replace("DOMAIN", sb["domain"]).replace("V2", sb["archives"]["v2"])
                for a in argv]
    return case


HOME = ("rollout", "home", "-d", "DOMAIN", "--targets", "cluster1", "--archive", "V2")
RUNTIME = ("rollout", "runtime", "-d", "DOMAIN", "--targets", "cluster1", "--runtime-home")
CLI = [
    ("unknown target", cli("rollout", "restart", "-d", "DOMAIN", "--targets", "nope"), 2,
     ["unknown target 'nope'"]),
    ("target with markup", cli("rollout", "restart", "-d", "DOMAIN", "--targets", "[/]x"), 2,
     ["unknown target '[/]x'"]),
    ("target with an escape", cli("rollout", "restart", "-d", "DOMAIN", "--targets",
                                  "a\x1b[2Jb"), 2, ["unknown target", "\\x1b[2J"]),
    ("empty targets", cli("rollout", "restart", "-d", "DOMAIN", "--targets", ""), 2,
     ["--targets"]),
    ("negative retries", cli(*HOME, "--retries", "-1"), 2, ["--retries"]),
    ("huge timeout", cli(*HOME, "--shutdown-timeout", "1e9"), 2, ["--shutdown-timeout"]),
    ("nan delay", cli(*HOME, "--delay-between-nodes", "nan"), 2, ["--delay-between-nodes"]),
    ("pause after 0", cli(*HOME, "--pause-after", "0"), 2, ["--pause-after"]),
    ("backup inside the home //", cli(*HOME, "--backup-dir", "/srv/app//home/x"), 2,
     ["--backup-dir", "inside the home"]),
    ("backup /", cli(*HOME, "--backup-dir", "//"), 2, ["--backup-dir", "names / itself"]),
    ("backup relative", cli(*HOME, "--backup-dir", "bak"), 2, ["--backup-dir"]),
    ("runtime with a quote", cli(*RUNTIME, '/opt/run"time'), 2, ["--runtime-home", "quotes"]),
    ("runtime with $", cli(*RUNTIME, "/opt/$(id)"), 2, ["--runtime-home", "'$'"]),
    ("runtime with a newline", cli(*RUNTIME, "/opt/rt\n2"), 2, ["control characters"]),
    ("runtime with ;", cli(*RUNTIME, "/opt/rt;reboot"), 2, ["--runtime-home", "only letters"]),
    ("runtime with a space", cli(*RUNTIME, "/opt/rt 2"), 2, ["--runtime-home", "only letters"]),
    ("runtime missing", cli(*RUNTIME, "/opt/runtime-9"), 3, ["/opt/runtime-9 is missing"]),
    ("archive missing", cli("rollout", "home", "-d", "DOMAIN", "--targets", "cluster1",
                            "--archive", "/nonexistent/v9.tar.gz"), 2,
     ["/nonexistent/v9.tar.gz"]),
    ("no session compat without timeout", cli(*HOME, "--no-session-compatible"), 2,
     ["--shutdown-timeout"]),
    ("resume with no journal", cli("resume", "wf-[/]\x07", "-d", "DOMAIN"), 2,
     ["no journal yet"]),
    ("domain file missing", cli("status", "-d", "/nonexistent/d[/].toml"), 2,
     ["/nonexistent/d[/].toml"]),
]

CORPUS = DOMAIN + ARCHIVES + APPS + CLI


def test_the_corpus_is_large() -> None:
    assert len(CORPUS) >= 60


@pytest.mark.parametrize(("make", "code", "words"), [pytest.param(*c[1:], id=c[0]) for c in CORPUS])
def test_hostile_input_changes_nothing(sb: dict[str, Any], tmp_path: Path, make: Case,
                                       code: int, words: list[str]) -> None:
    argv = make(sb, tmp_path)
    before = digest(sb), asyncio.run(lb_state(sb))
    result = zdt(*argv)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output and "\x1b" not in output, output
    for w in words:
        assert w in output, output
    assert (digest(sb), asyncio.run(lb_state(sb))) == before


def test_a_version_with_a_control_character_is_not_archived(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "VERSION").write_text("v2\x1b]0;pwned\x07\n")
    result = zdt("archive", "create", str(home), str(tmp_path / "a.tar.gz"))
    assert result.returncode == 2 and "VERSION" in result.stderr
    assert not list(tmp_path.glob("a.tar.gz*"))


def test_member_names_survive_the_message(tmp_path: Path) -> None:
    """A member named with markup and escapes is named in the error as written."""
    info = tarfile.TarInfo("x[/]\x1b[2J")
    path = build(tmp_path / "a.tar.gz", [(info, None), reg("f")])
    result = zdt("archive", "verify", str(path))
    assert result.returncode == 2
    assert "x[/]\\x1b[2J" in result.stderr and "\x1b" not in result.stderr

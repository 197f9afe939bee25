"""domain.toml → model: every bad input names the file, the line and the field; exit 2."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from zdt import domain as dm
from zdt.errors import ConfigError


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (id, change to the sample, field path named, line number or None, words in the reason)
BAD = [
    ("unknown-top-key", lambda t: t + "\ncolour = 'blue'\n", "colour", None, "unknown key"),
    ("unknown-server-key", lambda t: edit(t, 'port = 8001\n', 'port = 8001\nweight = 3\n'),
     "servers[1].weight", 37, "unknown key"),
    ("duplicate-node", lambda t: edit(t, 'name = "node2"', 'name = "node1"'),
     "nodes[1].name", 20, "duplicate name 'node1'"),
    ("duplicate-server", lambda t: edit(t, 'name = "s2"', 'name = "s1"'),
     "servers[2].name", 39, "duplicate name 's1'"),
    ("duplicate-cluster", lambda t: edit(t, 'name = "batch"', 'name = "web"'),
     "clusters[1].name", 58, "duplicate name 'web'"),
    ("server-on-unknown-node", lambda t: edit(t, 'node = "node2"', 'node = "node9"'),
     "servers[2].node", 40, "unknown node 'node9'"),
    ("cluster-unknown-server", lambda t: edit(t, '["s1", "s2", "s3"]', '["s1", "s7", "s3"]'),
     "clusters[0].servers[1]", 55, "unknown server 's7'"),
    ("port-zero", lambda t: edit(t, "port = 7001", "port = 0"), "servers[0].port", 30,
     "greater than or equal to 1"),
    ("port-too-big", lambda t: edit(t, "port = 7001", "port = 70000"), "servers[0].port", 30,
     "less than or equal to 65535"),
    ("port-not-int", lambda t: edit(t, "port = 7001", 'port = "http"'), "servers[0].port", 30,
     "integer"),
    ("port-clash-across-local-nodes", lambda t: edit(t, 'port = 8002', 'port = 8001'),
     "servers[2].port", 41, "already used by 's1'"),
    ("bad-program-template", lambda t: edit(t, 'kind = "supervisor"\n',
                                            'kind = "supervisor"\nprogram = "{name}"\n'),
     "services.program", 9, "{name} is not a placeholder"),
    *[(f"program-template-{i}", lambda t, v=bad: edit(
        t, 'kind = "supervisor"\n', f'kind = "supervisor"\nprogram = "{v}"\n'),
       "services.program", 9, why) for i, (bad, why) in enumerate((
        ("{server.__class__}", "{server.__class__} is not a placeholder"),
        ("{server!r}", "{server!r} is not a placeholder"),
        ("{server:>20}", "{server:>20} is not a placeholder"),
        ("{0}", "{0} is not a placeholder"), ("{}", "{} is not a placeholder"),
        ("{server[0]}", "{server[0]} is not a placeholder"),
        ("x{", "write a brace as {{ or }}"), ("}x", "write a brace as {{ or }}")))],
    ("unit-template", lambda t: edit(t, 'kind = "supervisor"\n',
                                     'kind = "systemd"\nunit = "{server!s}.service"\n'),
     "services.unit", 9, "{server!s} is not a placeholder"),
    ("command-template", lambda t: edit(
        t, 'kind = "supervisor"\n', 'kind = "command"\nstart = ["run", "{home.x}"]\n'
        'stop = ["x"]\nstatus = ["y"]\n'), "services.start", 9,
     "{home.x} is not a placeholder"),
    ("bad-health-url", lambda t: edit(t, 'port = 7001\n', 'port = 7001\nhealth_url = "ftp://x"\n'),
     "servers[0].health_url", 31, "not an http(s) URL"),
    ("health-url-bad-port", lambda t: edit(t, 'port = 7001\n',
                                           'port = 7001\nhealth_url = "http://h:99999/"\n'),
     "servers[0].health_url", 31, "bad port"),
    ("relative-home", lambda t: edit(t, 'home = "/srv/app/home"', 'home = "srv/app"'),
     "domain.home", 3, "absolute path"),
    ("home-dotdot", lambda t: edit(t, 'home = "/srv/app/home"', 'home = "/srv/../etc"'),
     "domain.home", 3, "'..' is not allowed"),
    *[(f"home-{i}", lambda t, v=v: edit(t, 'home = "/srv/app/home"', f'home = "{v}"'),
       "domain.home", 3, why) for i, (v, why) in enumerate((
           ("/", "names / itself"), ("//", "names / itself"), ("/.", "names / itself"),
           ("/srv/app\\nhome", "control characters")))],
    ("staging-in-home", lambda t: edit(
        t, 'home = "/srv/app/home"\n', 'home = "/srv/app/home"\nstaging_dir = "/srv/app/home/s"\n'),
     "domain.staging_dir", None, "lie inside one another"),
    ("missing-state-dir", lambda t: edit(t, 'state_dir = "state"\n', ''), "domain.state_dir",
     1, "required"),
    ("unknown-admin", lambda t: edit(t, 'admin = "admin"', 'admin = "boss"'), "domain.admin", 5,
     "unknown server 'boss'"),
    ("admin-in-cluster", lambda t: edit(t, '["s4"]', '["s4", "admin"]'), "domain.admin", 5,
     "also in clusters[1]"),
    ("bad-service-kind", lambda t: edit(t, 'kind = "supervisor"', 'kind = "upstart"'),
     "services.kind", 8, "unknown kind 'upstart' (known: command, supervisor, systemd)"),
    ("bad-lb-kind", lambda t: edit(t, 'kind = "haproxy"', 'kind = "f5"'), "lb.kind", 11,
     "unknown kind 'f5' (known: command, haproxy, nginx)"),
    ("missing-lb", lambda t: edit(t, '[lb]\nkind = "haproxy"\nsocket = "haproxy/admin.sock"\n'
                                  'backend = "app"\n', ''), "lb", None, "required"),
    ("bad-name", lambda t: edit(t, 'name = "s3"', 'name = "s 3"'), "servers[3].name", 44,
     "should match pattern"),
    *[(f"address-{why.split()[0]}", lambda t, a=address: edit(
        t, 'name = "node3"\nroot = "nodes/node3"\n', f'name = "node3"\naddress = "{a}"\n'),
       "nodes[2].address", 25, why) for address, why in (
        ("ftp://web3", "not 'local' nor ssh://"), ("ssh:web3", "not 'local' nor ssh://"),
        ("ssh://web3/srv", "no path, query or password"),
        ("ssh://u:pw@web3", "no path, query or password"),
        ("ssh://web3:99999", "bad port"), ("ssh://-oProxyCommand=x", "bad host name"),
        ("ssh://a;b@web3", "bad user name"))],
    ("ssh-node-with-root", lambda t: edit(t, 'name = "node3"\nroot = "nodes/node3"\n',
                                          'name = "node3"\naddress = "ssh://web3"\n'
                                          'root = "nodes/node3"\n'),
     "nodes[2].root", 26, "root is for local nodes only"),
    ("nginx-without-files", lambda t: edit(t, 'kind = "haproxy"\nsocket = "haproxy/admin.sock"',
                                           'kind = "nginx"'), "lb", None, "needs upstream_file"),
    # each kind has its own fields: HAProxy's socket means nothing to nginx
    ("a-key-of-another-kind", lambda t: edit(t, 'kind = "haproxy"', 'kind = "nginx"'),
     "lb.socket", 12, "unknown key for kind 'nginx' (a key of kind haproxy; it would do "
                      "nothing here: remove it)"),
    ("ssh-timeout", lambda t: t + '\n[ssh]\nconnect_timeout = 0\n',
     "ssh.connect_timeout", None, "greater than 0"),
    ("ssh-unknown-key", lambda t: t + '\n[ssh]\nstrict = false\n',
     "ssh.strict", None, "unknown key"),
    ("empty-cluster", lambda t: edit(t, '["s4"]', '[]'), "clusters[1].servers", 59,
     "at least 1 item"),
    ("no-servers", lambda t: t.split("[[servers]]")[0], "servers", None, "required"),
    ("partition-without-name", lambda t: edit(t, 'port = 8004\n',
                                              'port = 8004\npartition_of = "s3"\n'),
     "servers[4].partition", 48, "give both"),
    ("partition-of-other-node", lambda t: edit(t, 'port = 8004\n',
                                               'port = 8004\npartition_of = "s1"\n'
                                               'partition = "p1"\n'),
     "servers[4].partition_of", 52, "not a server on 'node3'"),
    ("same-process-twice", lambda t: edit(t, 'port = 8004\n',
                                          'port = 8004\nprogram = "s3"\n'),
     "servers[4].program", 52, "already the process of 's3'"),
    *[(f"remote-loopback-{host}", lambda t, h=host: edit(edit(
        t, 'name = "node3"\nroot = "nodes/node3"\n', 'name = "node3"\naddress = "ssh://deploy@web3.example"\n'),
        'port = 8003\n', f'port = 8003\nhost = "{h}"\n'),
       "servers[3].host", 47, "is this machine, not node 'node3'")
      for host in ("127.0.0.1", "127.8.9.1", "::1", "localhost", "127.1", "0.0.0.0",
                   "LOCALHOST", "::ffff:127.0.0.1", "[::1]")],
    ("cluster-named-like-server", lambda t: edit(t, 'name = "batch"', 'name = "s4"'),
     "clusters[1].name", 58, "also a server name"),
]


@pytest.mark.parametrize(("change", "field", "line", "why"),
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_domain(tmp_path: Path, sample_toml: str, change: Callable[[str], str], field: str,
                    line: int | None, why: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(change(sample_toml))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError) as err:
        dm.load(path)
    message = str(err.value)
    assert err.value.exit_code == 2
    where = f"{path}:{line}: " if line else f"{path}"
    assert any(where in m and f"{field}: " in m and why in m for m in message.splitlines()), \
        message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_toml_syntax_error_names_the_line(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(edit(sample_toml, 'port = 8001\n', 'port = = 8001\n'))
    with pytest.raises(ConfigError, match=r"domain.toml: not valid TOML: .*line 36"):
        dm.load(path)


def test_a_file_not_in_utf8_names_the_file(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_bytes(sample_toml.encode().replace(b'"node2"', b'"n\xe9ud"', 1))
    with pytest.raises(ConfigError, match=r"domain.toml:20: not UTF-8") as err:
        dm.load(path)
    assert err.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the domain file"):
        dm.load(tmp_path / "nope.toml")


def test_every_problem_is_listed(tmp_path: Path, sample_toml: str) -> None:
    text = edit(edit(sample_toml, 'node = "node2"', 'node = "x"'), 'node = "node3"', 'node = "y"')
    path = tmp_path / "domain.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        dm.load(path)
    assert "servers[2].node" in str(err.value) and "servers[3].node" in str(err.value)


def test_good_domain(domain_file: Path) -> None:
    d = dm.load(domain_file)
    assert d.state_dir == domain_file.parent / "state"
    assert d.lb.socket == str(domain_file.parent / "haproxy/admin.sock")
    assert [s.name for s in d.servers_on("node3")] == ["s3", "s4"]
    assert d.server("s1").health == "http://127.0.0.1:8001/health"
    assert d.server("s1").backend_name == "s1"
    with pytest.raises(Exception, match="frozen"):
        d.server("s1").port = 1


def test_hooks_and_staging(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + '\n[hooks]\neach-node = "/opt/hooks/each"\n'
                    'after-update = ["/opt/hooks/a", "/opt/hooks/b"]\n')
    d = dm.load(path)
    assert d.hooks.at("each-node") == ("/opt/hooks/each",)
    assert d.hooks.at("after-update") == ("/opt/hooks/a", "/opt/hooks/b")
    assert d.hooks.at("success") == ()
    assert d.domain.staging == "/srv/app/staging"


@pytest.mark.parametrize(("hooks", "field", "why"), [
    ('[hooks]\neach_node = "/x"\n', "hooks.each_node", "unknown key"),
    ('[hooks]\nbefore-update = "relative/x"\n', "hooks.before-update", "absolute path"),
    ('[hooks]\nsuccess = 3\n', "hooks.success", "valid tuple"),
    ('[hooks]\nlater = "/x"\n', "hooks.later", "unknown key"),
])
def test_bad_hooks(tmp_path: Path, sample_toml: str, hooks: str, field: str, why: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + "\n" + hooks)
    with pytest.raises(ConfigError) as err:
        dm.load(path)
    assert f"{field}" in str(err.value) and why in str(err.value), str(err.value)


def test_a_server_on_an_ssh_node_is_reached_at_the_node(tmp_path: Path,
                                                         sample_toml: str) -> None:
    """Before: every server defaulted to 127.0.0.1, so a remote server's health was probed
    on this machine (whatever listened there answered "healthy")."""
    text = edit(sample_toml, 'name = "node3"\nroot = "nodes/node3"\n',
                'name = "node3"\naddress = "ssh://deploy@web3.example:2222"\n')
    text = edit(text, 'name = "node2"\nroot = "nodes/node2"\n', 'name = "node2"\naddress = "ssh://[fd00::2]"\n')
    text = edit(text, 'port = 8004\n', 'port = 8004\nhost = "127.0.0.1"\n'
                'health_url = "http://127.0.0.1:9004/health"\n')   # said explicitly
    path = tmp_path / "domain.toml"
    path.write_text(text)
    d = dm.load(path)
    assert d.server("s3").health == "http://web3.example:8003/health"
    assert d.server("s2").health == "http://[fd00::2]:8002/health"
    assert d.server("s1").health == "http://127.0.0.1:8001/health"       # a local node
    assert d.server("s4").host == "127.0.0.1"


def test_an_ssh_node_at_a_loopback_address_may_use_loopback(tmp_path: Path,
                                                            sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(edit(sample_toml, 'name = "node3"\nroot = "nodes/node3"\n',
                         'name = "node3"\naddress = "ssh://root@127.0.0.1:2222"\n'))
    assert dm.load(path).server("s3").host == "127.0.0.1"


@pytest.mark.parametrize("spelling", ["/srv/app/home/.", "/srv//app/home/", "//srv/./app/home"])
def test_node_paths_are_read_in_one_spelling(tmp_path: Path, sample_toml: str,
                                             spelling: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(edit(sample_toml, 'home = "/srv/app/home"', f'home = "{spelling}"'))
    assert dm.load(path).domain.home == "/srv/app/home"


def test_two_nodes_that_are_one_machine(tmp_path: Path, sample_toml: str) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(edit(sample_toml, 'root = "nodes/node2"', 'root = "nodes/./node1/"'))
    with pytest.raises(ConfigError, match=r"nodes\[1\].root: root .*/nodes/node1 is node "
                       "'node1' already"):
        dm.load(path)
    text = sample_toml
    for n, address in ((2, "ssh://a@Web1.example"), (3, "ssh://b@web1.example:22")):
        text = edit(text, f'root = "nodes/node{n}"', f'address = "{address}"')
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"nodes\[2\].address: web1.example:22 is node "
                       "'node2' already"):
        dm.load(path)


@pytest.mark.parametrize(("locations", "field"), [
    (("/srv/app/home/apps/shop",), "applications[0].location"),
    (("/srv/app/apps", "/srv/app/apps/shop"), "applications[1].location"),
    (("/srv/app/apps/shop", "/srv/app//apps/shop/"), "applications[1].location"),
])
def test_applications_that_lie_inside_another_dir(tmp_path: Path, sample_toml: str,
                                                  locations: tuple[str, ...],
                                                  field: str) -> None:
    apps = "".join(f'\n[[applications]]\nname = "a{i}"\nlocation = "{loc}"\n'
                   for i, loc in enumerate(locations))
    path = tmp_path / "domain.toml"
    path.write_text(sample_toml + apps)
    with pytest.raises(ConfigError, match=rf"{re.escape(field)}: .*lie inside one another"):
        dm.load(path)


def test_two_spellings_of_one_ipv6_host_are_one_machine(tmp_path: Path,
                                                          sample_toml: str) -> None:
    text = sample_toml
    for n, address in ((2, "ssh://[fd00::2]"), (3, "ssh://[fd00:0:0::0002]:22")):
        text = edit(text, f'root = "nodes/node{n}"', f'address = "{address}"')
    path = tmp_path / "domain.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"nodes\[2\].address: .* is node 'node2' already"):
        dm.load(path)

"""Hosts of their own for the sandbox (`zdt sandbox up --isolated`, root only).

Each node is a network namespace with an address from 198.18.0.0/15 (set aside for
network testing, RFC 2544) on a bridge in the root namespace, where HAProxy runs. The
node's supervisord is started in its namespace and in a mount namespace of its own where
the node's root dirs `srv/`, `opt/` and `run/` are bound onto /srv, /opt and /run: so the
home is /srv/app/home on every node, with different contents, as on separate machines.
The node's sshd runs under that supervisord, so an SSH session sees what the servers see.

Each thing made is labelled (a link alias unique to this sandbox) and written to
D/network.json as soon as it exists, so `down` removes it all (namespaces, the bridge and
its links, every process inside) even after a crash half-way, and nothing of another
sandbox that reuses the names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from zdt import atomic
from zdt.errors import PreconditionError, ZdtError
from zdt.lab.sandbox.layout import Layout, sshd_config
from zdt.waiting import polls

MOUNTS = ("srv", "opt", "run")
# The one shell script here: binds the node's dirs, then becomes the command ("$@").
# No value is formatted into it; the root, the rc file and the command are arguments.
# The node gets an rc file of its own too: bash sources ~/.bashrc for every SSH command,
# and this machine's (pyenv, cargo…) would cost each command ~80 ms of process spawns
# that a fresh host does not have.
BIND_AND_EXEC = 'root=$1; rc=$2; shift 2; for d in srv opt run; do ' \
                'mount --bind "$root/$d" "/$d" || exit 1; done; ' \
                'if [ -f "$rc" ]; then mount --bind "$root/etc/bashrc" "$rc" || exit 1; fi; ' \
                'exec "$@"'
USER = "root"                  # who the sandbox's SSH sessions log in as
TOOLS = ("ip", "unshare", "ssh-keygen", "/usr/sbin/sshd", "mount")
COMMAND_TIMEOUT = 30.0
LOCK = "/run/zdt-sandbox-network.lock"


@dataclass(frozen=True)
class Network:
    subnet: int                    # the third byte: 198.18.<subnet>.0/24
    bridge: str
    namespaces: tuple[str, ...]    # one per node, in node order
    links: tuple[str, ...]         # the root-namespace end of each node's veth pair
    # Every link made is labelled with this (its alias): `down` removes only what bears
    # its own label, never a later sandbox's objects that happen to have the same names.
    label: str = ""

    @property
    def gateway(self) -> str:
        return f"198.18.{self.subnet}.1"

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"198.18.{self.subnet}.{10 + i}" for i in range(len(self.namespaces)))


def require() -> None:
    if os.geteuid() != 0:
        raise PreconditionError("--isolated needs root (it makes network namespaces, a "
                                "bridge and mounts); run it as root, or leave --isolated out")
    missing = [t for t in TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        raise PreconditionError(f"--isolated needs {', '.join(missing)} (Debian: `apt-get "
                                f"install iproute2 util-linux openssh-server openssh-client`)")


def plan(nodes: int) -> Network:
    """A subnet, bridge and namespace names that nothing on this machine uses yet."""
    used = _ip(["-o", "-4", "addr", "show"]).stdout
    links = _ip(["-o", "link", "show"]).stdout
    spaces = set(_ip(["netns", "list"]).stdout.split())
    for subnet in range(1, 255):
        bridge = f"zdtbr{subnet}"
        names = tuple(f"zdt{subnet}-node{i}" for i in range(1, nodes + 1))
        if f" 198.18.{subnet}." in used or f" {bridge}:" in links or spaces & set(names):
            continue
        return Network(subnet, bridge, names,
                       tuple(f"zdt{subnet}v{i}" for i in range(1, nodes + 1)),
                       f"zdt-sandbox-{secrets.token_hex(6)}")
    raise PreconditionError("no free /24 left in 198.18.0.0/16 for an isolated sandbox; "
                            "bring some down with `zdt sandbox down`")


@contextlib.contextmanager
def reserving() -> Iterator[None]:
    """One sandbox at a time chooses and makes its network on this machine: two would
    otherwise pick the same free subnet, and the loser's cleanup would remove the
    winner's bridge."""
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def create(d: Path, net: Network) -> None:
    """Make the bridge, and per node a namespace with a veth into it; each thing is
    labelled and recorded in D/network.json as soon as it exists."""
    made = Network(net.subnet, "", (), (), net.label)
    _record(d, made)
    _ip(["link", "add", net.bridge, "type", "bridge"])
    _ip(["link", "set", net.bridge, "alias", net.label])
    made = replace(made, bridge=net.bridge)
    _record(d, made)
    _ip(["addr", "add", f"{net.gateway}/24", "dev", net.bridge])
    _ip(["link", "set", net.bridge, "up"])
    for ns, link, address in zip(net.namespaces, net.links, net.addresses, strict=True):
        _ip(["netns", "add", ns])
        made = replace(made, namespaces=(*made.namespaces, ns))
        _record(d, made)
        _ip(["link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _ip(["link", "set", link, "alias", net.label])
        _ip(["-n", ns, "link", "set", "eth0", "alias", net.label])
        made = replace(made, links=(*made.links, link))
        _record(d, made)
        _ip(["link", "set", link, "master", net.bridge])
        _ip(["link", "set", link, "up"])
        for argv in (["addr", "add", f"{address}/24", "dev", "eth0"],
                     ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"],
                     ["route", "add", "default", "via", net.gateway]):
            _ip(["-n", ns, *argv])


def recorded(d: Path) -> Network | None:
    path = d / "network.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return Network(raw["subnet"], raw["bridge"], tuple(raw["namespaces"]),
                   tuple(raw["links"]), raw.get("label", ""))


def owned_namespaces(net: Network) -> list[str]:
    """The recorded namespaces that exist and are this sandbox's (their eth0's label)."""
    spaces = set(_ip(["netns", "list"]).stdout.split())
    return [ns for ns in net.namespaces
            if ns in spaces and _labelled(["-n", ns], "eth0", net.label)]


def pids_in(net: Network) -> list[int]:
    """Every process in the sandbox's namespaces, however it got there (a daemon that
    left its parent, a session's setsid child)."""
    pids: list[int] = []
    for ns in owned_namespaces(net):
        pids += [int(x) for x in _ip(["netns", "pids", ns], check=False).stdout.split()]
    return pids


GONE = ("Cannot find", "No such device")


def destroy(d: Path) -> None:
    """Remove what D/network.json names and bears this sandbox's label; what is already
    gone is skipped, and a failed removal does not keep the others (the record stays for
    another try)."""
    net = recorded(d)
    if net is None:
        return
    # Deleting a namespace deletes its veth pair, both ends; a link whose namespace was
    # never made, and the bridge, are deleted by name.
    removals = [["netns", "delete", ns] for ns in owned_namespaces(net)]
    removals += [["link", "delete", name] for name in [*net.links, net.bridge]
                 if name and _labelled([], name, net.label)]
    failed = []
    for argv in removals:
        done = _ip(argv, check=False)
        # gone already: "Cannot find device", or "No such device" when a veth end went
        # with its namespace's deletion between the listing and this removal
        if done.returncode != 0 and not any(w in done.stderr for w in GONE):
            failed.append(f"`ip {' '.join(argv)}`: {done.stderr.strip()}")
    if failed:
        raise ZdtError(f"{d}: could not remove all of the sandbox's network: "
                       f"{'; '.join(failed)}; run `zdt sandbox down --dir {d}` again")
    (d / "network.json").unlink()


def _labelled(where: list[str], link: str, label: str) -> bool:
    done = _ip([*where, "-d", "link", "show", "dev", link], check=False)
    return done.returncode == 0 and bool(label) and f"alias {label}" in done.stdout


def check_hidden(paths: list[str]) -> None:
    """The nodes see their own /srv, /opt and /run: what runs there must live elsewhere."""
    for path in paths:
        if any(path == f"/{m}" or path.startswith(f"/{m}/") for m in MOUNTS):
            raise PreconditionError(
                f"{path} is under {', '.join('/' + m for m in MOUNTS)}, which an isolated "
                f"node replaces with its own: run zdt from a Python installed elsewhere")


def node_argv(layout: Layout, net: Network, node: str, argv: list[str]) -> list[str]:
    """argv run in the node's namespaces, with its own /srv, /opt and /run."""
    ns = net.namespaces[layout.hosts.index(node)]
    return ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
            "/bin/sh", "-c", BIND_AND_EXEC, "sh", str(layout.root(node)),
            os.path.join(pwd.getpwnam(USER).pw_dir, ".bashrc"), *argv]


def write_ssh(layout: Layout) -> None:
    """A client key, a host key per node, known_hosts and authorized_keys, sshd configs."""
    for mount in MOUNTS:   # the mount points, on this machine
        Path("/", mount).mkdir(exist_ok=True)
    keys = layout.dir / "ssh"
    keys.mkdir(mode=0o700, exist_ok=True)
    client = keys / "id_ed25519"
    _keygen(client, "zdt sandbox")
    (keys / "authorized_keys").write_text(client.with_suffix(".pub").read_text())
    known = []
    for node in layout.hosts:
        etc = layout.root(node) / "etc" / "ssh"
        etc.mkdir(parents=True, exist_ok=True)
        host_key = etc / "ssh_host_ed25519_key"
        _keygen(host_key, f"zdt sandbox {node}")
        algorithm, data = host_key.with_suffix(".pub").read_text().split()[:2]
        known.append(f"{layout.host(node)} {algorithm} {data}\n")
        (etc / "sshd_config").write_text(sshd_config(layout, node))
        (etc.parent / "bashrc").write_text(
            f"# {USER}'s ~/.bashrc on sandbox node {node}: a fresh host's, empty\n")
        # sshd's privilege separation dir, under the node's own /run
        (layout.root(node) / "run" / "sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        for mount in MOUNTS:
            (layout.root(node) / mount).mkdir(exist_ok=True)
    (keys / "known_hosts").write_text("".join(known))


def wait_sshd(address: str, timeout: float) -> None:
    for _ in polls(timeout):
        try:
            with socket.create_connection((address, 22), timeout=1.0) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            continue
    raise ZdtError(f"sshd at {address}:22 does not answer after {timeout:.0f} s; "
                   f"see the node's var/log/sshd.log")


def _keygen(path: Path, comment: str) -> None:
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, capture_output=True, timeout=COMMAND_TIMEOUT)


def _record(d: Path, net: Network) -> None:
    atomic.write_text(d / "network.json", json.dumps(asdict(net), indent=2) + "\n", 0o644)


def _ip(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise ZdtError(f"`ip {' '.join(argv)}` failed: {done.stderr.strip()}")
    return done

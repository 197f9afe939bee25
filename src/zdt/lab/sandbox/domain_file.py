"""The sandbox's domain.toml: zdt's input, written from the layout (a JSON string is
also a valid TOML basic string)."""

from __future__ import annotations

import json

from zdt.lab.sandbox.inputs import APP, RUNTIMES
from zdt.lab.sandbox.layout import (
    BACKEND,
    CLUSTER,
    HOME,
    LB_NODE_NGINX_SOCKET,
    LB_NODE_SOCKET,
    LB_NODE_UPSTREAM,
    NGINX,
    SUPERVISOR_SOCKET,
    Layout,
)


def domain_toml(layout: Layout) -> str:
    q = json.dumps  # a JSON string is also a valid TOML basic string
    out = ["# A zdt sandbox, written by `zdt sandbox up`. Paths are relative to this file.",
           "", "[domain]", 'name = "sandbox"', f"home = {q(HOME)}", 'state_dir = "state"']
    if layout.admin:
        out.append(f"admin = {q(layout.admin)}")
    out += ["", "[services]", 'kind = "supervisor"', f"socket = {q(SUPERVISOR_SOCKET)}",
            'program = "{server}"',
            *_lb_sections(layout),
            "", "[runtime]", f"home = {q(RUNTIMES[0])}", 'variable = "JAVA_HOME"',
            'scripts = ["bin/*.sh", "lib/*.conf"]',
            "", "[[applications]]", 'name = "shop"', f"location = {q(APP)}", 'mode = "stage"']
    if layout.isolated:
        out += ["", "[ssh]", 'known_hosts = "ssh/known_hosts"', 'identity = "ssh/id_ed25519"']
    for node in layout.hosts:
        if layout.isolated:
            out += ["", "[[nodes]]", f"name = {q(node)}",
                    f"address = {q(f'ssh://root@{layout.host(node)}')}"]
        else:
            out += ["", "[[nodes]]", f"name = {q(node)}", 'address = "local"',
                    f"root = {q(f'nodes/{node}')}"]
    for s in layout.servers:
        host = layout.host(s.node)
        out += ["", "[[servers]]", f"name = {q(s.name)}", f"node = {q(s.node)}",
                f"host = {q(host)}", f"port = {s.port}", f"lb = {'true' if s.lb else 'false'}",
                f"health_url = {q(f'http://{host}:{s.port}/health')}"]
        if s.partition:
            out += [f"partition_of = {q(s.partition_of)}", f"partition = {q(s.partition)}",
                    f"program = {q(f'{s.partition}:{s.name}')}"]
        mine = [p.partition for p in layout.servers if p.partition_of == s.name]
        if mine:
            out.append(f"partitions = [{', '.join(q(p) for p in mine)}]")
    members = ", ".join(q(s.name) for s in layout.servers if s.lb and not s.partition)
    out += ["", "[[clusters]]", f"name = {q(CLUSTER)}", f"servers = [{members}]", ""]
    return "\n".join(out)


def _lb_sections(layout: Layout) -> list[str]:
    if layout.lb_nodes and layout.nginx:
        return [line for node in layout.lb_nodes
                for line in ("", "[[lb]]", 'kind = "nginx"', f"node = {json.dumps(node)}",
                             f"backend = {json.dumps(BACKEND)}",
                             f"upstream_file = {json.dumps(LB_NODE_UPSTREAM)}",
                             f"admin_socket = {json.dumps(LB_NODE_NGINX_SOCKET)}")]
    if layout.lb_nodes:
        return [line for node in layout.lb_nodes
                for line in ("", "[[lb]]", 'kind = "haproxy"', f"node = {json.dumps(node)}",
                             f"socket = {json.dumps(LB_NODE_SOCKET)}",
                             f"backend = {json.dumps(BACKEND)}")]
    if not layout.more_lbs:
        return ["", "[lb]", *_lb_section(layout)]
    out = []
    for number in range(1, layout.haproxies + 1):
        socket = "haproxy/admin.sock" if number == 1 else layout.admin_address(number)
        out += ["", "[[lb]]", 'kind = "haproxy"', f"socket = {json.dumps(socket)}",
                f"backend = {json.dumps(BACKEND)}"]
    return out


def _lb_section(layout: Layout) -> list[str]:
    if layout.lb == "nginx":
        return ['kind = "nginx"', f"backend = {json.dumps(BACKEND)}",
                'upstream_file = "nginx/upstream.conf"', 'admin_socket = "nginx/admin.sock"']
    if layout.lb == "nginx-reload":
        return ['kind = "nginx"', f"backend = {json.dumps(BACKEND)}",
                'upstream_file = "nginx/upstream.conf"', 'pid_file = "nginx/nginx.pid"',
                'config = "nginx/nginx.conf"', f"binary = {json.dumps(NGINX)}"]
    return ['kind = "haproxy"', 'socket = "haproxy/admin.sock"',
            f"backend = {json.dumps(BACKEND)}"]

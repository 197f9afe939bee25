"""The sandbox's load balancer configs: HAProxy hiding nothing (no retries, no
redispatch), or nginx with zdt's Lua peer list or with reloads."""

from __future__ import annotations

from zdt.errors import ConfigError
from zdt.lab.sandbox.layout import (
    BACKEND,
    LB_NODE_NGINX_SOCKET,
    LB_NODE_PORT,
    LB_NODE_SOCKET,
    LB_NODE_UPSTREAM,
    NGINX_MODULES,
    Layout,
)


def haproxy_servers(layout: Layout) -> list[str]:
    return [f"    server {s.name} {layout.host(s.node)}:{s.port}"
            for s in layout.servers if s.lb]


def haproxy_cfg(layout: Layout, number: int = 1) -> str:
    """HAProxy number N of the sandbox (the first on its Unix socket; the others, an HA
    pair's second, with their Runtime API on loopback TCP)."""
    servers = haproxy_servers(layout)
    if layout.lb_nodes:      # on a host of its own: its own /run, its own address
        admin = f"{LB_NODE_SOCKET} mode 600"
        bind = f"{layout.host(layout.lb_nodes[number - 1])}:{LB_NODE_PORT}"
    else:
        admin = (f"{layout.haproxy_socket} mode 600" if number == 1 else
                 "ipv4@" + layout.admin_address(number).removeprefix("tcp://"))
        bind = layout.lb_urls()[number - 1].removeprefix("http://").rstrip("/")
    return "\n".join([
        f"# HAProxy {number} of the sandbox, written by `zdt sandbox up`.",
        "# No user/group/chroot and no syslog: it runs as whoever starts it.",
        "global",
        f"    stats socket {admin} level admin",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    # A request that fails must be seen failing: no retry, no redispatch.",
        "    retries 0",
        "",
        "frontend www",
        f"    bind {bind}",
        "    # HAProxy's own Prometheus exporter (for the metric gates' tests), not the backend",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk GET /health",
        "    # A restarted server is UP again ~100 ms after it first answers (rise 1,",
        "    # downinter 100ms); a stopped one is DOWN after 2 failed checks.",
        "    default-server check inter 1s fastinter 100ms downinter 100ms rise 1 fall 2",
        *servers,
        "",
    ])


def _q(path: object) -> str:
    """A path as an nginx string, quoted; a character nginx or Lua would read as syntax
    (a quote, a backslash, `$`, a newline) is refused rather than escaped."""
    text = str(path)
    bad = sorted({c for c in text if c in '"\\$\n\r' or c == "]"})
    if bad:
        raise ConfigError(f"{text}: the sandbox dir has {''.join(bad)!r}, which nginx's "
                          "config cannot hold; choose another --dir")
    return f'"{text}"'


def nginx_conf(layout: Layout, node: str | None = None) -> str:
    """nginx in front: with zdt's Lua peer list (`--lb nginx`: drains change a shared dict,
    no reload) or including zdt's upstream file (`--lb nginx-reload`: a reload per change).
    On an LB host (`node`), its files are the host's own."""
    d = layout.root(node) / "var" / "nginx" if node else layout.dir / "nginx"
    upstream_file = LB_NODE_UPSTREAM if node else str(d / "upstream.conf")
    socket_path = LB_NODE_NGINX_SOCKET if node else str(d / "admin.sock")
    bind = (f"{layout.host(node)}:{LB_NODE_PORT}" if node
            else f"127.0.0.1:{layout.lb_port}")
    temp = [f"    {kind}_temp_path {_q(d / 'tmp' / kind)};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    lua = layout.lb == "nginx"
    modules = [f"load_module {NGINX_MODULES / m};" for m in
               ("ndk_http_module.so", "ngx_http_lua_module.so")] if lua else []
    if lua:
        from zdt.adapters.lb.nginx_lua import LUA_DIR

        _q(d)        # refused here if nginx could not hold it; Lua reads it verbatim:
        init = f'require("zdt_nginx").init([==[{upstream_file}]==], "{BACKEND}")'
        upstream = ["    lua_shared_dict zdt 1m;",
                    f"    lua_package_path {_q(f'{LUA_DIR}/?.lua;;')};",
                    f"    init_by_lua_block {{ {init} }}",
                    f"    upstream {BACKEND} {{",
                    "        server 0.0.0.1;   # never used: the Lua balancer picks the peer",
                    '        balancer_by_lua_block { require("zdt_nginx").balance() }', "    }"]
        counted = ['            log_by_lua_block { require("zdt_nginx").log() }']
        socket = _q(f"unix:{socket_path}")
        admin = ["    server {", f"        listen {socket};",
                 "        client_body_buffer_size 1m;   # the upstream file, in memory",
                 '        location /zdt/ { content_by_lua_block { require("zdt_nginx").admin() } }',
                 "    }"]
    else:
        upstream, counted, admin = [f"    include {_q(d / 'upstream.conf')};"], [], []
    return "\n".join([
        f"# nginx of the sandbox, written by `zdt sandbox up --lb {layout.lb}`.", *modules,
        "worker_processes 2;", "worker_rlimit_nofile 8192;", f"pid {_q(d / 'nginx.pid')};",
        f"error_log {_q(d / 'error.log')};",
        # 256 keep-alive clients hold 256 connections, and as many to the servers
        "events { worker_connections 4096; }", "http {", "    access_log off;", *temp,
        *upstream,
        "    server {", f"        listen {bind} backlog=4096;",
        "        location / {", f"            proxy_pass http://{BACKEND};",
        "            # A request that fails must be seen failing: no next upstream.",
        "            proxy_next_upstream off;", *counted, "        }", "    }", *admin, "}", ""])


def nginx_upstream(layout: Layout) -> str:
    """The file zdt owns: one line per server, its name in the comment."""
    lines = [f"    server {layout.host(s.node)}:{s.port};  # {s.name}"
             for s in layout.servers if s.lb]
    return "\n".join(["# Rewritten by zdt: a server marked `down` is out of rotation.",
                      f"upstream {BACKEND} {{", *lines, "}", ""])

-- zdt's peer list for nginx (Debian: libnginx-mod-http-lua): drains without a reload.
--
-- A reload makes nginx's old workers close their idle keep-alive client connections as
-- they exit, racing requests the clients are sending on them: 71 of 43,415 requests failed
-- in a home rollout at 128 keep-alive connections. Here a drain changes a shared dict that
-- every worker reads per request, so no worker exits and no client connection is closed.
--
-- zdt owns the upstream file (one `server ADDRESS [PARAMS];  # NAME` line per server, a
-- drained one marked `down`). This module reads it when nginx loads its config (in the
-- master), and takes its new text from zdt through the admin location (POST .../peers,
-- the text as the body: workers need no access to the file). It keeps per server the
-- requests in flight (a drain waits for 0) and the counters of the LB's witness.
--
-- nginx.conf (paths are examples; see zdt's README):
--   lua_shared_dict zdt 1m;
--   lua_package_path "/path/to/zdt/lb/?.lua;;";
--   init_by_lua_block { require("zdt_nginx").init("/etc/nginx/zdt-upstream.conf") }
--   upstream app { server 0.0.0.1; balancer_by_lua_block { require("zdt_nginx").balance() } }
--   location / { proxy_pass http://app; log_by_lua_block { require("zdt_nginx").log() } }
--   server { listen unix:/run/zdt-nginx.sock; client_body_buffer_size 1m;
--            location /zdt/ { content_by_lua_block { require("zdt_nginx").admin() } } }

local M = {}
local dict = ngx.shared.zdt
local COUNTS = {"requests", "connection_errors", "response_errors", "http_5xx",
                "client_aborts", "server_aborts"}

local cached_version, cached = nil, {}

local function parse(text)
  local peers = {}
  for line in text:gmatch("[^\n]+") do
    local body, name = line:match("^%s*server%s+([^;#]+);%s*#%s*(%S+)%s*$")
    if body then
      local words = {}
      for w in body:gmatch("%S+") do words[#words + 1] = w end
      local host, port = words[1]:match("^(.+):(%d+)$")
      local down, backup = false, false
      for i = 2, #words do
        if words[i] == "down" then down = true end
        if words[i] == "backup" then backup = true end
      end
      if host and not backup then
        peers[#peers + 1] = name .. " " .. host:gsub("^%[(.*)%]$", "%1") .. " " .. port
                            .. " " .. (down and "down" or "up")
      end
    end
  end
  return table.concat(peers, "\n")
end

local function take(text)
  dict:set("peers", parse(text))
  dict:incr("version", 1, 0)
end

function M.init(path)
  local f, err = io.open(path, "r")
  if not f then
    ngx.log(ngx.ERR, "zdt: cannot read the upstream file: ", err)
    return
  end
  take(f:read("*a"))
  f:close()
end

local function peers()
  local version = dict:get("version")
  if version ~= cached_version then
    local list = {}
    for line in (dict:get("peers") or ""):gmatch("[^\n]+") do
      local name, host, port, state = line:match("^(%S+) (%S+) (%d+) (%a+)$")
      list[#list + 1] = {name = name, host = host, port = tonumber(port), up = state == "up"}
    end
    cached_version, cached = version, list
  end
  return cached
end

function M.balance()
  local up = {}
  for _, p in ipairs(peers()) do
    if p.up then up[#up + 1] = p end
  end
  if #up == 0 then
    ngx.log(ngx.ERR, "zdt: no server of the upstream is in rotation")
    return ngx.exit(ngx.ERROR)
  end
  local n = dict:incr("rr", 1, 0)
  local peer = up[(n % #up) + 1]
  local ok, err = require("ngx.balancer").set_current_peer(peer.host, peer.port)
  if not ok then
    ngx.log(ngx.ERR, "zdt: cannot choose ", peer.name, ": ", err)
    return ngx.exit(ngx.ERROR)
  end
  ngx.ctx.zdt_peer = peer.name
  dict:incr("active:" .. peer.name, 1, 0)
end

local function count(name, what)
  dict:incr("n:" .. name .. ":" .. what, 1, 0)
  dict:incr("n:BACKEND:" .. what, 1, 0)
end

function M.log()
  local name = ngx.ctx.zdt_peer
  local status = ngx.status
  if name then dict:incr("active:" .. name, -1, 1) else name = "-" end
  count(name, "requests")
  if status == 499 then count(name, "client_aborts") end
  if status >= 500 then count(name, "http_5xx") end
  if status == 502 or status == 504 then
    -- no answer from the server: nginx never connected (no connect time), or the answer
    -- broke off before its head
    local connected = ngx.var.upstream_connect_time
    if name == "-" or connected == nil or connected == "" or connected == "-" then
      count(name, "connection_errors")
    else
      count(name, "response_errors")
    end
  end
end

function M.admin()
  if ngx.req.get_method() == "POST" then
    ngx.req.read_body()
    local text = ngx.req.get_body_data()
    if not text then
      ngx.status = 400
      ngx.say("error: POST the upstream file's text (at most client_body_buffer_size)")
      return
    end
    take(text)
  end
  local out = {"version " .. tostring(dict:get("version") or 0)}
  local names = {"BACKEND"}
  for _, p in ipairs(peers()) do names[#names + 1] = p.name end
  for _, p in ipairs(peers()) do
    out[#out + 1] = "server " .. p.name .. " " .. (p.up and "up" or "down") .. " active "
                    .. tostring(dict:get("active:" .. p.name) or 0)
  end
  for _, name in ipairs(names) do
    local line = {"counts", name}
    for _, what in ipairs(COUNTS) do
      line[#line + 1] = what .. "=" .. tostring(dict:get("n:" .. name .. ":" .. what) or 0)
    end
    out[#out + 1] = table.concat(line, " ")
  end
  ngx.say(table.concat(out, "\n"))
end

return M

-- zdt's peer list for nginx (Debian: libnginx-mod-http-lua): drains without a reload.
--
-- A reload makes nginx's old workers close their idle keep-alive client connections as
-- they exit, racing requests the clients are sending on them: 71 of 43,415 requests failed
-- in a home rollout at 128 keep-alive connections. Here a drain changes a shared dict that
-- every worker reads per request, so no worker exits and no client connection is closed.
--
-- zdt owns the upstream file (one `server IP:PORT [PARAMS];  # NAME` line per server, a
-- drained one marked `down`). This module reads it when nginx loads its config (in the
-- master): the servers and their addresses come from there only. Through the admin
-- location zdt then says which of those servers are up or down (POST .../peers, a body of
-- `NAME up|down` lines; an unknown name is refused, no address is ever taken from it).
-- Keep the admin socket in a directory only root (or zdt's user) can enter: nginx makes
-- unix sockets world-writable. Per server the module keeps the requests in flight (a
-- drain waits for 0) and the counters of the LB's witness.
--
-- nginx.conf (paths are examples; see zdt's README):
--   lua_shared_dict zdt 1m;
--   lua_package_path "/path/to/zdt/lb/?.lua;;";
--   init_by_lua_block { require("zdt_nginx").init("/etc/nginx/zdt-upstream.conf", "app") }
--   upstream app { server 0.0.0.1; balancer_by_lua_block { require("zdt_nginx").balance() } }
--   location / { proxy_pass http://app; log_by_lua_block { require("zdt_nginx").log() } }
--   server { listen unix:/run/zdt/nginx.sock; client_body_buffer_size 1m;
--            location /zdt/ { content_by_lua_block { require("zdt_nginx").admin() } } }

local M = {}
local dict = ngx.shared.zdt
local COUNTS = {"requests", "connection_errors", "response_errors", "http_5xx",
                "client_aborts", "server_aborts", "response_ms"}

local cached_version, cached, cached_up = nil, {}, {}

local function address(host)
  if host:match("^%d+%.%d+%.%d+%.%d+$") then return host end
  return host:match("^%[([%x:.]+)%]$")        -- [IPv6]
end

local function parse(text, backend)
  -- only the lines of `upstream BACKEND { ... }` (all of them without a backend)
  local peers, inside = {}, backend == nil
  for line in text:gmatch("[^\n]+") do
    local opened = line:match("^%s*upstream%s+([^%s{]+)%s*{")
    local body, name = line:match("^%s*server%s+([^;#]+);%s*#%s*(%S+)%s*$")
    if opened then
      inside = backend == nil or opened == backend
      body = nil
    elseif backend ~= nil and line:match("^%s*}") then
      inside = false
    end
    if body and inside then
      local words = {}
      for w in body:gmatch("%S+") do words[#words + 1] = w end
      local host, port = words[1]:match("^(.+):(%d+)$")
      host, port = host or words[1], port or "80"
      local down, backup = false, false
      for i = 2, #words do
        if words[i] == "down" then down = true end
        if words[i] == "backup" then backup = true end
      end
      local ip = address(host)
      if not ip or backup then
        -- zdt then reports the server unknown to nginx: the operator sees it at once
        ngx.log(ngx.ERR, "zdt: ", name, ": only IP:PORT servers without backup are taken")
      else
        peers[#peers + 1] = name .. " " .. ip .. " " .. port .. " " .. (down and "down" or "up")
      end
    end
  end
  return table.concat(peers, "\n")
end

local function take(text, backend)
  dict:set("peers", parse(text, backend))
  dict:incr("version", 1, 0)
end

function M.init(path, backend)
  local f, err = io.open(path, "r")
  if not f then
    ngx.log(ngx.ERR, "zdt: cannot read the upstream file: ", err)
    return
  end
  take(f:read("*a"), backend)
  f:close()
  dict:add("epoch", tostring(ngx.now()))   -- kept across reloads, new with a new dict
end

local function peers()
  local version = dict:get("version")
  if version ~= cached_version then
    local list, up = {}, {}
    for line in (dict:get("peers") or ""):gmatch("[^\n]+") do
      local name, host, port, state = line:match("^(%S+) (%S+) (%d+) (%a+)$")
      list[#list + 1] = {name = name, host = host, port = tonumber(port), up = state == "up"}
      if state == "up" then up[#up + 1] = list[#list] end
    end
    cached_version, cached, cached_up = version, list, up   -- once per change, not per request
  end
  return cached, cached_up
end

local function pick()
  local _, up = peers()
  if #up == 0 then return nil end
  return up[(dict:incr("rr", 1, 0) % #up) + 1]
end

function M.balance()
  -- counted in flight first, then checked against the newest list: a drain that reads 0
  -- in flight after its POST can never be followed by a request sent to that server
  local peer
  for _ = 1, 3 do
    local version = dict:get("version")
    peer = pick()
    if not peer then break end
    dict:incr("active:" .. peer.name, 1, 0)
    if dict:get("version") == version then break end
    local still
    for _, p in ipairs(peers()) do
      if p.name == peer.name and p.up then still = true end
    end
    if still then break end
    dict:incr("active:" .. peer.name, -1, 1)
    peer = nil
  end
  if not peer then
    if dict:add("warned", true, 1) then      -- at most once a second
      ngx.log(ngx.ERR, "zdt: no server of the upstream is in rotation")
    end
    return ngx.exit(ngx.ERROR)
  end
  ngx.ctx.zdt_peer = peer.name
  local ok, err = require("ngx.balancer").set_current_peer(peer.host, peer.port)
  if not ok then
    ngx.log(ngx.ERR, "zdt: cannot choose ", peer.name, ": ", err)
    return ngx.exit(ngx.ERROR)
  end
end

local function count(name, what, n)
  dict:incr("n:" .. name .. ":" .. what, n or 1, 0)
  dict:incr("n:BACKEND:" .. what, n or 1, 0)
end

local function by_address(addr)
  -- the last address tried, "IP:PORT" or "[IPv6]:PORT", back to the server's name
  local last = (addr or ""):match("(%S+)%s*$") or ""
  for _, p in ipairs(peers()) do
    if last == p.host .. ":" .. p.port or last == "[" .. p.host .. "]:" .. p.port then
      return p.name
    end
  end
end

function M.log()
  -- ngx.ctx does not survive an internal redirect (error_page, try_files): the address
  -- nginx used finds the server then
  local name = ngx.ctx.zdt_peer or by_address(ngx.var.upstream_addr)
  local status = ngx.status
  if name then dict:incr("active:" .. name, -1, 1) else name = "-" end
  count(name, "requests")
  if status == 499 then count(name, "client_aborts") end
  if status >= 500 then count(name, "http_5xx") end
  -- time to the answer's head (the last server tried, "0.012" or "0.003, 0.010"), added
  -- up in ms: the mean over a window is its difference over the requests'
  local head = tonumber((ngx.var.upstream_header_time or ""):match("([%d.]+)%s*$") or "")
  if head then count(name, "response_ms", math.floor(head * 1000 + 0.5)) end
  if status == 502 or status == 504 then
    -- the cause, for requests that got no answer from a server (each request once): no
    -- connection (no connect time), or an answer broken off before its head
    local connected = ngx.var.upstream_connect_time
    if name == "-" or connected == nil or connected == "" or connected == "-" then
      count(name, "connection_errors")
    elseif (ngx.var.upstream_header_time or "-") == "-" then
      count(name, "response_errors")
    end
  end
end

local function set_states(body)
  local known, want = {}, {}
  for _, p in ipairs(peers()) do known[p.name] = p end
  for line in body:gmatch("[^\n]+") do
    local name, state = line:match("^(%S+) (%a+)$")
    if not name or (state ~= "up" and state ~= "down") then
      return nil, "not a `NAME up|down` line: " .. line:sub(1, 80)
    end
    if not known[name] then
      return nil, "unknown server " .. name .. " (reload nginx after adding it to the file)"
    end
    want[name] = state == "up"
  end
  local out = {}
  for _, p in ipairs(peers()) do
    local up = p.up
    if want[p.name] ~= nil then up = want[p.name] end
    out[#out + 1] = p.name .. " " .. p.host .. " " .. p.port .. " " .. (up and "up" or "down")
  end
  dict:set("peers", table.concat(out, "\n"))
  dict:incr("version", 1, 0)
  return true
end

function M.admin()
  if ngx.req.get_method() == "POST" then
    ngx.req.read_body()
    local ok, err = set_states(ngx.req.get_body_data() or "")
    if not ok then
      ngx.status = 400
      ngx.say("error: ", err)
      return
    end
  end
  local out = {"version " .. tostring(dict:get("version") or 0),
               "epoch " .. tostring(dict:get("epoch") or "")}
  local names = {"BACKEND"}
  for _, p in ipairs(peers()) do
    names[#names + 1] = p.name
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

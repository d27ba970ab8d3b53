-- wechat-gate's checks in pure Lua, for Envoy's Lua filter (envoy.filters.http.lua),
-- to compare with the Wasm filter in `make bench`. bench/run.py fills in the
-- @TOKEN@, @PATH@, @TOLERANCE@, @MAX_BODY@ and @ALLOW@ placeholders.
--
-- Envoy 1.40's Lua API has no hash function (the stream handle offers base64Escape,
-- base64Decode, importPublicKey/verifySignature, timestamp: checked by listing the
-- handle's methods), so SHA-1 is written here with LuaJIT's `bit` module.
--
-- Same order as the gate: method, query, source, signature, freshness; then the
-- handshake is answered here and a verified POST is forwarded with
-- x-wechat-gate-verified: 1. Sources: IPv4 addresses and CIDR blocks only.

local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local lshift, rshift, rol, tobit, tohex = bit.lshift, bit.rshift, bit.rol, bit.tobit, bit.tohex
local byte, char, sub, find, rep = string.byte, string.char, string.sub, string.find, string.rep

local TOKEN = "@TOKEN@"
local GUARDED_PATH = "@PATH@"
local TOLERANCE = @TOLERANCE@
local MAX_BODY = @MAX_BODY@
local ALLOW_TEXT = { @ALLOW@ }

local function ipv4(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return tobit(a * 16777216 + b * 65536 + c * 256 + d)
end

-- { network, mask } pairs, built once per worker.
local ALLOW = {}
for _, entry in ipairs(ALLOW_TEXT) do
  local addr, len = entry:match("^([^/]+)/(%d+)$")
  addr = addr or entry
  len = tonumber(len) or 32
  local mask = len == 0 and 0 or tobit(lshift(0xffffffff, 32 - len))
  if len == 32 then mask = tobit(0xffffffff) end
  local ip = ipv4(addr)
  if ip then ALLOW[#ALLOW + 1] = { band(ip, mask), mask } end
end

local function allowed(remote)
  -- "1.2.3.4:5678" (IPv6 sources are not handled by this script).
  local host = remote and remote:match("^([%d%.]+):%d+$")
  local ip = host and ipv4(host)
  if not ip then return false end
  for i = 1, #ALLOW do
    local e = ALLOW[i]
    if band(ip, e[2]) == e[1] then return true end
  end
  return false
end

local W = {}
local function sha1_hex(msg)
  local h0, h1, h2, h3, h4 = tobit(0x67452301), tobit(0xEFCDAB89), tobit(0x98BADCFE), tobit(0x10325476), tobit(0xC3D2E1F0)
  local ml = #msg
  local bits = ml * 8
  msg = msg .. "\128" .. rep("\0", (55 - ml) % 64)
    .. char(0, 0, 0, 0, band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
  local w = W
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local p = chunk + i * 4
      local a, b, c, d = byte(msg, p, p + 3)
      w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    for i = 16, 79 do
      w[i] = rol(bxor(w[i - 3], w[i - 8], w[i - 14], w[i - 16]), 1)
    end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
      elseif i < 40 then
        f, k = bxor(b, c, d), 0x6ED9EBA1
      elseif i < 60 then
        f, k = bor(band(b, c), band(b, d), band(c, d)), 0x8F1BBCDC
      else
        f, k = bxor(b, c, d), 0xCA62C1D6
      end
      local t = tobit(rol(a, 5) + f + e + k + w[i])
      e, d, c, b, a = d, c, rol(b, 30), a, t
    end
    h0, h1, h2, h3, h4 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d), tobit(h4 + e)
  end
  return tohex(h0) .. tohex(h1) .. tohex(h2) .. tohex(h3) .. tohex(h4)
end

-- Byte-by-byte comparison whose time does not depend on where the first difference is.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    diff = bor(diff, bxor(byte(a, i), byte(b, i)))
  end
  return diff == 0
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local WANTED = { signature = true, timestamp = true, nonce = true, echostr = true, openid = true }

local function reject(handle, status, reason, detail)
  handle:respond({ [":status"] = status, ["content-type"] = "text/plain" },
    "wechat-gate: " .. reason .. ": " .. detail .. "\n")
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or ""
  local q = find(path, "?", 1, true)
  local path_only = q and sub(path, 1, q - 1) or path
  if path_only ~= GUARDED_PATH then return end

  -- 1. Method.
  local method = headers:get(":method")
  if method ~= "GET" and method ~= "POST" then
    return reject(handle, "405", "method", "only GET and POST are accepted")
  end

  -- 2. Query: the parameters WeChat sends, decoded, never repeated.
  local params = {}
  if q then
    for pair in path:sub(q + 1):gmatch("[^&]+") do
      local eq = find(pair, "=", 1, true)
      local key = eq and sub(pair, 1, eq - 1) or pair
      if WANTED[key] then
        if params[key] then
          return reject(handle, "400", "malformed", "query parameter " .. key .. " is repeated")
        end
        params[key] = unescape(eq and sub(pair, eq + 1) or "")
      end
    end
  end
  local signature, timestamp, nonce = params.signature, params.timestamp, params.nonce
  if not signature or signature == "" or not timestamp or timestamp == "" or not nonce or nonce == "" then
    return reject(handle, "400", "malformed", "signature, timestamp and nonce are required")
  end
  if #timestamp > 18 or not timestamp:match("^%d+$") then
    return reject(handle, "400", "malformed", "query parameter timestamp is not a number of seconds")
  end
  local echostr = params.echostr
  if method == "GET" and (not echostr or echostr == "") then
    return reject(handle, "400", "malformed", "query parameter echostr is missing")
  end
  local openid = params.openid
  if openid and (#openid > 128 or not openid:match("^[%w_%-]+$")) then
    return reject(handle, "400", "malformed", "query parameter openid is not plausible")
  end

  -- 3. Source.
  if not allowed(handle:streamInfo():downstreamRemoteAddress()) then
    return reject(handle, "403", "source", "source address is not on the allowlist")
  end

  -- 4. Signature: sha1 of the sorted parts.
  local parts = { TOKEN, timestamp, nonce }
  table.sort(parts)
  if not same(sha1_hex(parts[1] .. parts[2] .. parts[3]), signature) then
    return reject(handle, "401", "signature", "signature does not match")
  end

  -- 5. Freshness.
  if TOLERANCE > 0 and math.abs(os.time() - tonumber(timestamp)) > TOLERANCE then
    return reject(handle, "401", "stale", "timestamp is too far from now")
  end

  -- 6. Handshake: answered here.
  if method == "GET" then
    handle:respond({ [":status"] = "200", ["content-type"] = "text/plain" }, echostr)
    return
  end

  -- 7. Push: declared length within the limit, then forwarded, marked as verified.
  local length = headers:get("content-length")
  if not length then
    return reject(handle, "411", "length_required", "a POST needs a content-length")
  end
  if not length:match("^%d+$") or tonumber(length) > MAX_BODY then
    return reject(handle, "413", "too_large", "the body is over the limit")
  end
  headers:remove("x-wechat-gate-openid")
  headers:replace("x-wechat-gate-verified", "1")
  if openid then headers:add("x-wechat-gate-openid", openid) end
end

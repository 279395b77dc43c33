-- wrk script for the authorization-code phase of make bench: authorization-code + PKCE round
-- trips with a browser session that is already logged in, or (MODE=refresh) a chain of
-- refresh grants.
--
-- MODE=code (default): each connection sends an authorization request (GET AUTHORIZE with
-- the session COOKIE) unless a code is waiting in its thread's queue, in which case it redeems
-- that code at TOKEN (public client CLIENT, REDIRECT, the fixed PKCE VERIFIER: any connection
-- may redeem any code). The code comes from the Location of the 302/303 to REDIRECT. One round
-- trip = one token response 200 with a refresh token.
--
-- MODE=refresh: REFRESH is the first refresh token; every 200 carries the next one (rotation:
-- the old one is spent), so run it with -t1 -c1.
--
-- Anything else (another status, a redirect without a code, a 200 without a refresh token,
-- a socket error) is counted as an error; done() prints "roundtrips N", "rate R" and
-- "errors E" (and the first bad response) for bench/run.sh, which fails on E > 0.

local mode = os.getenv("MODE") or "code"
local authorize_path = os.getenv("AUTHORIZE")
local token_path = assert(os.getenv("TOKEN"), "set TOKEN")
local client = assert(os.getenv("CLIENT"), "set CLIENT")

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local form_headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local get_headers = { ["Cookie"] = os.getenv("COOKIE") }
local code_prefix
if mode == "code" then
  assert(authorize_path and os.getenv("COOKIE"), "set AUTHORIZE and COOKIE")
  code_prefix = "grant_type=authorization_code&redirect_uri=" ..
    urlencode(assert(os.getenv("REDIRECT"), "set REDIRECT")) ..
    "&code_verifier=" .. urlencode(assert(os.getenv("VERIFIER"), "set VERIFIER")) ..
    "&client_id=" .. urlencode(client) .. "&code="
end
local refresh_prefix = "grant_type=refresh_token&client_id=" .. urlencode(client) .. "&refresh_token="

-- per thread
codes = {}
head, tail = 1, 0
roundtrips, authorized, errors = 0, 0, 0
first_error = ""
current = os.getenv("REFRESH")

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local function fail(what)
  errors = errors + 1
  if first_error == "" then first_error = what end
end

function request()
  if mode == "refresh" then
    return wrk.format("POST", token_path, form_headers, refresh_prefix .. urlencode(current))
  end
  if head <= tail then
    local code = codes[head]
    codes[head] = nil
    head = head + 1
    return wrk.format("POST", token_path, form_headers, code_prefix .. urlencode(code))
  end
  return wrk.format("GET", authorize_path, get_headers)
end

function response(status, headers, body)
  if status == 302 or status == 303 then
    local location = headers["Location"] or headers["location"] or ""
    local code = location:match("[?&]code=([^&]+)")
    if code then
      code = code:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      tail = tail + 1
      codes[tail] = code
      authorized = authorized + 1
    else
      fail(status .. " to " .. location)
    end
  elseif status == 200 then
    local rt = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if rt and body:find('"access_token"', 1, true) then
      roundtrips = roundtrips + 1
      if mode == "refresh" then current = rt end
    else
      fail("200 without tokens: " .. body:sub(1, 200))
    end
  else
    fail(status .. ": " .. body:sub(1, 200))
  end
end

function done(summary, latency, requests)
  local n, a, e, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    n = n + t:get("roundtrips")
    a = a + t:get("authorized")
    e = e + t:get("errors")
    if first == "" then first = t:get("first_error") end
  end
  local sock = summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout
  local secs = summary.duration / 1e6
  io.write(string.format("roundtrips %d\n", n))
  io.write(string.format("rate %.1f\n", n / secs))
  io.write(string.format("authorized %d\n", a))
  io.write(string.format("errors %d\n", e + sock))
  if e + sock > 0 then
    io.write(string.format("socket errors %d; first bad response: %s\n", sock, first))
  end
end

-- wrk script for the token endpoint: RFC 8693 token exchanges, each with its own subject
-- token (a token is accepted once). TOKENS names a file of tokens, one per line (see
-- bench/exchange_tokens.mjs); thread t of THREADS uses lines t, t+THREADS, ... Running out of
-- tokens sends an empty one, which the server refuses: wrk then reports Non-2xx.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local tokens, i = {}, 0
function init(args)
  local threads = assert(os.getenv("THREADS"), "set THREADS")
  local file = assert(os.getenv("TOKENS"), "set TOKENS")
  local t, nt, n = tonumber(tid), tonumber(threads), 0
  for line in assert(io.open(file)):lines() do
    if n % nt == t then tokens[#tokens + 1] = line end
    n = n + 1
  end
end

local prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
  .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token="
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
function request()
  i = i + 1
  return wrk.format("POST", nil, headers, prefix .. (tokens[i] or ""))
end

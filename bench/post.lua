-- POSTs one body (from the BODY_FILE environment variable) with the bearer token in TOKEN.
-- With RANDOM_USERS=n, each request is a single activity by one of n users instead, as live
-- traffic from many users would be (one user's writes wait for each other on its rollup rows).
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

local users = tonumber(os.getenv("RANDOM_USERS") or "")
if users then
  -- Each wrk thread has its own Lua state: seed each differently so they pick different users.
  init = function()
    math.randomseed(tonumber(tostring({}):match("0x(%x+)") or "1", 16) % 2147483647)
  end
  request = function()
    local body = string.format(
      '{"user_id":"00000000-0000-4000-8000-%012x","action":"bench","value":1.5}',
      math.random(1, users))
    return wrk.format(nil, nil, nil, body)
  end
end

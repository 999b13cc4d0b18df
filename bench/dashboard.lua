-- GETs the default dashboard's statistics in three zones in turn (15 entries, every one holding
-- today, the hot day), with the Authorization header given by -H.
local paths = {}
for _, tz in ipairs({"UTC", "Europe/Berlin", "America/New_York"}) do
  for _, p in ipairs({"summary", "timeseries?bucket=day", "timeseries?bucket=hour", "active-users", "top-users"}) do
    local sep = p:find("?", 1, true) and "&" or "?"
    paths[#paths + 1] = "/api/v1/stats/" .. p .. sep .. "tz=" .. tz
  end
end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

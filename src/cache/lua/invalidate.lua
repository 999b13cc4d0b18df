-- KEYS: generation keys (n), then (index, expiry) per tag
-- ARGV: generation ttl, n, then per tag: span count, then (first, last, action) per span
local gen_ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], gen_ttl)
end
local deleted = 0
local a = 3
for i = n + 1, #KEYS, 2 do
  local spans
  spans, a = read_spans(a)
  prune(KEYS[i], KEYS[i + 1])
  local fields = redis.call('HGETALL', KEYS[i])
  for f = 1, #fields, 2 do
    if touched(fields[f + 1], spans) then
      deleted = deleted + redis.call('DEL', fields[f])
      redis.call('HDEL', KEYS[i], fields[f])
      redis.call('ZREM', KEYS[i + 1], fields[f])
    end
  end
end
return deleted

-- KEYS: log position, log, then (index, expiry) per tag
-- ARGV: log length, log ttl, record count r, records (r), then per tag: span count, then
--       (first, last, action) per span, as the invalidation script takes them
-- Answers: the first record's position, then the key of every live entry a span falls in. The
-- values are read with MGET after the script: moving tens of kilobytes through Lua strings cost
-- Redis more than everything else the script does.
local r = tonumber(ARGV[3])
local last = redis.call('INCRBY', KEYS[1], r)
local first = last - r + 1
for i = 1, r do
  redis.call('ZADD', KEYS[2], first + i - 1, (first + i - 1) .. ':' .. ARGV[3 + i])
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[1]) + 1))
redis.call('EXPIRE', KEYS[2], ARGV[2])
local out = { tostring(first) }
local listed = {}
local a = 4 + r
for i = 3, #KEYS, 2 do
  local spans
  spans, a = read_spans(a)
  prune(KEYS[i], KEYS[i + 1])
  local fields = redis.call('HGETALL', KEYS[i])
  for f = 1, #fields, 2 do
    local key = fields[f]
    if not listed[key] and touched(fields[f + 1], spans) then
      listed[key] = true
      if redis.call('EXISTS', key) == 1 then
        out[#out + 1] = key
      else
        redis.call('HDEL', KEYS[i], key)
        redis.call('ZREM', KEYS[i + 1], key)
      end
    end
  end
end
return out

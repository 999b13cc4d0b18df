-- KEYS: entry, log position, log, generation keys (n), then (index, expiry) per tag
-- ARGV: value, ttl, n, expected generations (n), position, scope, index ttl
local n = tonumber(ARGV[3])
for i = 1, n do
  local current = redis.call('GET', KEYS[3 + i]) or '0'
  if current ~= ARGV[3 + i] then return { '0' } end
end
-- Creates logged since the value's position must be applied first: hand them back.
local expected = tonumber(ARGV[4 + n])
local raw_position = redis.call('GET', KEYS[2]) or '0'
local position = tonumber(raw_position)
if position ~= expected then
  local records = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[4 + n], raw_position)
  if position < expected or #records ~= position - expected then return { '0' } end
  table.insert(records, 1, raw_position)
  table.insert(records, 1, '2')
  return records
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local scope = ARGV[5 + n]
local index_ttl = tonumber(ARGV[6 + n])
local expires = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[2])
for i = 4 + n, #KEYS, 2 do
  prune(KEYS[i], KEYS[i + 1])
  redis.call('HSET', KEYS[i], KEYS[1], scope)
  redis.call('ZADD', KEYS[i + 1], expires, KEYS[1])
  for j = i, i + 1 do
    if redis.call('TTL', KEYS[j]) < index_ttl then redis.call('EXPIRE', KEYS[j], index_ttl) end
  end
end
return { '1' }

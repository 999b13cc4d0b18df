-- KEYS: entries; ARGV: per entry, the version read and the new value
-- Answers per entry: '1' replaced, '' gone, else the value that replaced the one read.
local out = {}
for i = 1, #KEYS do
  local version = redis.call('GETRANGE', KEYS[i], 0, 15)
  if version == '' then
    out[i] = ''
  elseif version == ARGV[2 * i - 1] then
    redis.call('SET', KEYS[i], ARGV[2 * i], 'KEEPTTL')
    out[i] = '1'
  else
    out[i] = redis.call('GET', KEYS[i])
  end
end
return out

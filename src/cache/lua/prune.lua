local function prune(index, expiry)
  local now = tonumber(redis.call('TIME')[1])
  local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 1000)
  for _, key in ipairs(dead) do
    redis.call('HDEL', index, key)
    redis.call('ZREM', expiry, key)
  end
end
local function scope_of(raw)
  local from, to, action = string.match(raw, '^(%-?%d+) (%-?%d+) (.*)$')
  return tonumber(from), tonumber(to), action
end
-- Reads a span count and that many (first, last, action) from ARGV at `a`; returns the spans and
-- where the next argument starts.
local function read_spans(a)
  local count = tonumber(ARGV[a]); a = a + 1
  local spans = {}
  for s = 1, count do
    spans[s] = { tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2] }
    a = a + 3
  end
  return spans, a
end
-- Does an entry's scope (as stored in an index) contain any written span? The same rule as
-- `Scope::is_touched_by`; an unreadable scope counts as untouched.
local function touched(raw_scope, spans)
  local from, to, action = scope_of(raw_scope)
  if from == nil then return false end
  for _, span in ipairs(spans) do
    if from <= span[2] and span[1] < to and (action == '' or action == span[3]) then
      return true
    end
  end
  return false
end

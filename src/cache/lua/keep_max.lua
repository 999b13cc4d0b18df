-- KEYS: a commit position; ARGV: a position, as fixed-width hex (strings compare like the
-- numbers). Keeps the larger, so publications arriving out of order never move it back.
local cur = redis.call('GET', KEYS[1])
if not cur or ARGV[1] > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1

-- Promote due delayed entries and remove up to 1000 entries whose TTL has
-- passed. KEYS: stream, expiry, delayed; ARGV: group
-- Returns {entries removed, 1 if more expired entries remain}
local stream, expiry, delayed, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
local now = now_ms()
promote(stream, expiry, delayed, now)
local ids = redis.call('ZRANGEBYSCORE', expiry, '-inf', secs(now), 'LIMIT', 0, 1000)
local n = 0
for _, id in ipairs(ids) do
  n = n + remove_entry(stream, group, expiry, id)
end
local more = 0
if #ids == 1000 then
  more = 1
end
return {n, more}

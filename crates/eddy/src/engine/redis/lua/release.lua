-- Give entries back for a later retry: keep them pending (delivery count
-- unchanged) but backdate their delivery time so that claimers, who reclaim
-- after min_idle ms, see them again `after` ms from now (server clock).
-- `after` is at most min_idle: Redis never dates a delivery in the future.
-- Only entries the consumer still owns are touched. A park of the same
-- delivery (park.lua) is replaced: its marker goes.
-- KEYS: stream, delayed; ARGV: group, consumer, after ms, min idle ms, ids...
-- Returns how many were released.
local stream, delayed, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local after, min_idle = tonumber(ARGV[3]), tonumber(ARGV[4])
if after > min_idle then
  after = min_idle
end
local at = now_ms() - (min_idle - after)
local n = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if p[1] then
    redis.call('ZREM', delayed, retry_marker(ARGV[i], p[1][4]))
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'TIME', at, 'RETRYCOUNT', p[1][4], 'JUSTID')
    n = n + 1
  end
end
return n

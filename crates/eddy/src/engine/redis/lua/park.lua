-- Give entries back for a retry later than the claimers' idle time (the
-- visibility timeout). Backdating the delivery (release.lua) cannot hold a
-- message back that long: Redis never dates a delivery in the future. So
-- the entry stays pending as it is, owned by the consumer with its
-- delivery count and fields, its idle time counted from now, and a marker
-- for this delivery in the delayed set says when it is due (see
-- retry_marker in common.lua): claims pass over it until then. Parking the
-- same delivery again moves its due time; a claim raises the count, so the
-- marker no longer applies. One script: the entry is never out of the
-- pending list, whenever the process dies.
-- Only entries the consumer still owns are parked.
-- KEYS: stream, delayed; ARGV: group, consumer, after ms, ids...
-- Returns how many were parked.
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local after = tonumber(ARGV[3])
check_type(stream, 'stream')
check_type(delayed, 'zset')
local due = now_ms() + after
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if p[1] then
    -- The marker first: out of memory, Redis refuses it, and nothing of
    -- this entry is written.
    redis.call('ZADD', delayed, due, retry_marker(ARGV[i], p[1][4]))
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n

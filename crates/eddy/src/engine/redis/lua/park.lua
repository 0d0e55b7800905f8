-- Give entries back for a retry later than the claimers' idle time (the
-- visibility timeout). Backdating the delivery (release.lua) cannot hold a
-- message back that long: Redis never dates a delivery in the future. So
-- the entry stays pending as it is, owned by the consumer with its
-- delivery count, and a marker in the delayed set keeps its lease renewed
-- until it is due, then makes it claimable (see tend_retry in
-- common.lua). The count is the pending entry's own, so max-deliveries and
-- dead-lettering stay exact; the entry keeps its id and fields.
-- Only entries the consumer still owns are parked.
-- KEYS: stream, delayed; ARGV: group, consumer, after ms, lease ms, ids...
-- Returns how many were parked.
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local after, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
check_type(stream, 'stream')
check_type(delayed, 'zset')
local now = now_ms()
local due = now + after
local n = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if p[1] then
    local marker = RETRY_TAG .. '||' .. ARGV[i] .. '|' .. p[1][4] .. '|' .. due .. '|' .. lease .. '|' .. consumer
    -- The marker first: out of memory, Redis refuses it, and nothing of
    -- this entry is written.
    redis.call('ZADD', delayed, math.min(due, now + renew_every(lease)), marker)
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n

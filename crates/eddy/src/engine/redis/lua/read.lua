-- Read new entries for a consumer without blocking: promote due delayed
-- entries, read, and remove (never return) entries whose TTL has passed.
-- KEYS: stream, expiry, delayed
-- ARGV: group, consumer, count
-- Returns {entries, next delayed due ms or -1, 1 if the TTL index exists}
local stream, expiry, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, count = ARGV[1], ARGV[2], ARGV[3]
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
local now = now_ms()
local next_due = promote(stream, expiry, delayed, now)
local has_expiry = redis.call('EXISTS', expiry)
-- Register the consumer even when nothing is delivered (Redis 7.0 only
-- does so on delivery; newer versions always do).
-- A missing stream or group is reported by XREADGROUP below (NOGROUP).
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)
local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, '>')
local out = {}
if res then
  for _, e in ipairs(res[1][2]) do
    if has_expiry == 1 and is_expired(expiry, e[1], now) then
      remove_entry(stream, group, expiry, e[1])
    else
      out[#out + 1] = e
    end
  end
end
return {out, next_due, has_expiry}

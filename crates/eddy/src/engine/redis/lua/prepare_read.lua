-- The first half of a non-blocking read, run in one MULTI/EXEC with the
-- XREADGROUP that follows it (so entries never pass through Lua): check
-- types, promote due delayed entries, register the consumer.
-- KEYS: stream, expiry, delayed
-- ARGV: group, consumer
-- Returns {next delayed due ms or -1, 1 if the TTL index exists}
local stream, expiry, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
local next_due = promote(stream, expiry, delayed, now_ms())
-- Register the consumer even when nothing is delivered (Redis 7.0 only
-- does so on delivery; newer versions always do).
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)
return {next_due, redis.call('EXISTS', expiry)}

-- The first half of a reclaim, pipelined with the XPENDING ... IDLE that
-- picks what to take; the XCLAIM that takes it follows from the client, so
-- claimed entries never pass through Lua (converting an entry's fields to
-- Lua and back cost more than the claim itself). Checks types before
-- anything is written and registers the claimer even if it takes nothing,
-- as a read does. It tends the parked retries first (see promote), so
-- that the XPENDING after it never sees one as idle before it is due,
-- even when nothing has read the queue for a while.
-- KEYS: stream, expiry, delayed; ARGV: group, consumer
-- Returns 1 if the TTL index exists (claimed entries must then be checked).
local stream, expiry, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
promote(stream, group, expiry, delayed, now_ms())
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)
return redis.call('EXISTS', expiry)

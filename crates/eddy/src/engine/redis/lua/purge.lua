-- Remove every entry of a queue (pending, delayed and TTL index too) and
-- recreate its group at the beginning. KEYS: stream, expiry, delayed; ARGV: group
local stream, expiry, delayed, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
check_type(stream, 'stream')
local n = 0
if redis.call('EXISTS', stream) == 1 then
  n = redis.call('XLEN', stream)
end
redis.call('DEL', stream, expiry, delayed)
redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
return n

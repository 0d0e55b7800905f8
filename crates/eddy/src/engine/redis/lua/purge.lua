-- Remove every entry of a queue (pending, delayed and TTL index too) and
-- recreate its group at the beginning. A deleted queue stays deleted. Every
-- key's type is checked first: a foreign key is never deleted.
-- KEYS: stream, expiry, delayed, meta; ARGV: group
local stream, expiry, delayed, meta, group = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
check_type(meta, 'hash')
if redis.call('EXISTS', meta) == 0 then
  return redis.error_reply('EDDY_NOQUEUE ' .. stream)
end
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
local n = 0
if redis.call('EXISTS', stream) == 1 then
  n = redis.call('XLEN', stream)
end
redis.call('DEL', stream, expiry, delayed)
redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
return n

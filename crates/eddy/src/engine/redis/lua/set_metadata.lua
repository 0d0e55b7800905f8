-- Set or remove one metadata field of an existing queue.
-- KEYS: meta; ARGV: field, '1' to set / '0' to remove, value
local meta, field = KEYS[1], ARGV[1]
if redis.call('EXISTS', meta) == 0 then
  return redis.error_reply('EDDY_NOQUEUE ' .. meta)
end
check_type(meta, 'hash')
if ARGV[2] == '1' then
  redis.call('HSET', meta, field, ARGV[3])
else
  redis.call('HDEL', meta, field)
end
return 1

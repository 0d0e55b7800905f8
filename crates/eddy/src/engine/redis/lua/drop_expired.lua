-- After a blocking read: remove the given delivered entries whose TTL has
-- passed. KEYS: stream, expiry; ARGV: group, ids...
-- Returns the ids removed.
local stream, expiry, group = KEYS[1], KEYS[2], ARGV[1]
check_type(stream, 'stream')
check_type(expiry, 'zset')
local now = now_ms()
local out = {}
for i = 2, #ARGV do
  if is_expired(expiry, ARGV[i], now) then
    remove_entry(stream, group, expiry, ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out

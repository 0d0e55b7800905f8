-- Acknowledge and delete entries. KEYS: stream, expiry; ARGV: group, ids...
-- Returns how many entries existed.
local stream, expiry, group = KEYS[1], KEYS[2], ARGV[1]
check_type(stream, 'stream')
check_type(expiry, 'zset')
local n = 0
for i = 2, #ARGV do
  n = n + remove_entry(stream, group, expiry, ARGV[i])
end
return n

-- Extend the lease on entries a consumer is still working on: reset their
-- idle time so nobody reclaims them. Only entries the consumer still owns
-- are touched (never steal back one that was reclaimed), and the delivery
-- count is unchanged (JUSTID).
-- KEYS: stream; ARGV: group, consumer, ids...
-- Returns how many leases were extended.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if p[1] then
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n

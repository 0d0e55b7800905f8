-- Delete queues: KEYS: registry, then per queue: stream, meta, expiry, delayed
-- Returns 1 if any key existed.
local registry = KEYS[1]
local n = 0
for i = 2, #KEYS, 4 do
  n = n + redis.call('DEL', KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3])
  redis.call('SREM', registry, KEYS[i])
end
if n > 0 then
  return 1
end
return 0

-- Delete queues: KEYS: the registry (when ARGV[1] is '1'; on a cluster it
-- is left out and the engine removes the entries itself), then per queue:
-- stream, meta, expiry, delayed.
-- Every key's type is checked before the first delete, so a foreign key
-- under the prefix fails the whole call and leaves every queue whole.
-- Returns 1 if any key existed.
local registry, first = nil, 1
if ARGV[1] == '1' then
  registry, first = KEYS[1], 2
  check_type(registry, 'set')
end
for i = first, #KEYS, 4 do
  check_type(KEYS[i], 'stream')
  check_type(KEYS[i + 1], 'hash')
  check_type(KEYS[i + 2], 'zset')
  check_type(KEYS[i + 3], 'zset')
end
local n = 0
for i = first, #KEYS, 4 do
  n = n + redis.call('DEL', KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3])
  if registry then
    redis.call('SREM', registry, KEYS[i])
  end
end
if n > 0 then
  return 1
end
return 0

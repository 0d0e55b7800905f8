-- Create a queue and its DLQ: streams, groups (from the beginning, so
-- entries sent before the first consumer are delivered), metadata, registry.
-- KEYS: stream, meta, dlq stream, dlq meta, registry (left out on a
--       cluster, where the engine adds the registry entries itself: the
--       registry is in another slot)
-- ARGV: group, dlq group
local stream, meta, dstream, dmeta, registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, dgroup = ARGV[1], ARGV[2]
check_type(stream, 'stream')
check_type(dstream, 'stream')
check_type(meta, 'hash')
check_type(dmeta, 'hash')
if registry then
  check_type(registry, 'set')
end
local created = secs(now_ms())
for _, sg in ipairs({{stream, group}, {dstream, dgroup}}) do
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', sg[1], sg[2], '0', 'MKSTREAM')
  if not ok and not string.find(tostring(err.err or err), 'BUSYGROUP', 1, true) then
    return redis.error_reply(tostring(err.err or err))
  end
end
redis.call('HSETNX', meta, 'created_at', created)
redis.call('HSETNX', meta, 'dlq', dstream)
redis.call('HSETNX', meta, 'consumer_group', group)
redis.call('HSETNX', dmeta, 'created_at', created)
redis.call('HSETNX', dmeta, 'main_queue', stream)
redis.call('HSETNX', dmeta, 'consumer_group', dgroup)
redis.call('HSETNX', dmeta, 'is_dlq', 'true')
if registry then
  redis.call('SADD', registry, stream, dstream)
end
return 1

-- Append entries to one or more queues, all or none. Every check (queue
-- exists, its stream exists, key types, maximum length) runs once per queue
-- before the first
-- write; Redis itself refuses a script's first write when it is out of
-- memory, so an OOM leaves nothing half-written either.
-- Returns per entry the new stream id, or '' if it went to the delayed set.
-- KEYS: per queue: meta, stream, expiry, delayed
-- ARGV[1]: '1' if any entry has a TTL or delay; then per entry:
--   '0': queue index, data     '1': queue index, data, ttl ms, delay ms, nonce
local q = #KEYS / 4
for i = 0, q - 1 do
  if redis.call('EXISTS', KEYS[i * 4 + 1]) == 0 then
    return redis.error_reply('EDDY_NOQUEUE ' .. KEYS[i * 4 + 2])
  end
  check_type(KEYS[i * 4 + 1], 'hash')
  check_type(KEYS[i * 4 + 2], 'stream')
  check_type(KEYS[i * 4 + 3], 'zset')
  check_type(KEYS[i * 4 + 4], 'zset')
  if redis.call('EXISTS', KEYS[i * 4 + 2]) == 0 then
    return redis.error_reply(no_stream(KEYS[i * 4 + 2]))
  end
end
local full = ARGV[1] == '1'
local step = full and 5 or 2
local n = (#ARGV - 1) / step
local adding = {}
for e = 0, n - 1 do
  local qi = tonumber(ARGV[2 + e * step])
  adding[qi] = (adding[qi] or 0) + 1
end
for qi, count in pairs(adding) do
  local max = redis.call('HGET', KEYS[qi * 4 - 3], 'max_length')
  if max and redis.call('XLEN', KEYS[qi * 4 - 2]) + count > tonumber(max) then
    return redis.error_reply('EDDY_QUEUE_FULL ' .. KEYS[qi * 4 - 2] .. ' holds its maximum of ' .. max .. ' entries')
  end
end
local out = {}
if not full then
  for e = 0, n - 1 do
    local qi = tonumber(ARGV[2 + e * 2])
    out[e + 1] = redis.call('XADD', KEYS[qi * 4 - 2], '*', 'data', ARGV[3 + e * 2])
  end
  return out
end
local now = now_ms()
for e = 0, n - 1 do
  local b = 2 + e * 5
  local qi = tonumber(ARGV[b])
  local stream, expiry, delayed = KEYS[qi * 4 - 2], KEYS[qi * 4 - 1], KEYS[qi * 4]
  local data, ttl, delay, nonce = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local expire_at = ''
  if ttl ~= '' then
    expire_at = secs(now + tonumber(ttl))
  end
  if delay ~= '' and tonumber(delay) > 0 then
    redis.call('ZADD', delayed, now + tonumber(delay), nonce .. '|' .. expire_at .. '|' .. data)
    out[e + 1] = ''
  else
    local id = redis.call('XADD', stream, '*', 'data', data)
    if expire_at ~= '' then
      redis.call('ZADD', expiry, expire_at, id)
    end
    out[e + 1] = id
  end
end
return out

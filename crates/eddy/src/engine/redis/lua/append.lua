-- Append entries to one or more queues, all or none. Every check (queue
-- exists, key types, maximum length) runs before the first write; Redis
-- itself refuses a script's first write when it is out of memory, so an
-- OOM leaves nothing half-written either.
-- KEYS: per entry: meta, stream, expiry, delayed
-- ARGV: per entry: data, ttl ms ('' = none), delay ms ('' = none), nonce
-- Returns per entry the new stream id, or '' if it went to the delayed set.
local n = #KEYS / 4
-- Checks run once per queue, however many of the batch's entries go to it.
local queues, adding = {}, {}
for i = 0, n - 1 do
  local meta, stream = KEYS[i * 4 + 1], KEYS[i * 4 + 2]
  if not queues[stream] then
    if redis.call('EXISTS', meta) == 0 then
      return redis.error_reply('EDDY_NOQUEUE ' .. stream)
    end
    check_type(stream, 'stream')
    check_type(KEYS[i * 4 + 3], 'zset')
    check_type(KEYS[i * 4 + 4], 'zset')
    queues[stream] = redis.call('HGET', meta, 'max_length') or false
  end
  adding[stream] = (adding[stream] or 0) + 1
end
-- Maximum lengths: this batch's appends per stream on top of XLEN.
for stream, max in pairs(queues) do
  if max and redis.call('XLEN', stream) + adding[stream] > tonumber(max) then
    return redis.error_reply('EDDY_QUEUE_FULL ' .. stream .. ' holds its maximum of ' .. max .. ' entries')
  end
end
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local stream, expiry, delayed = KEYS[i * 4 + 2], KEYS[i * 4 + 3], KEYS[i * 4 + 4]
  local data, ttl, delay, nonce = ARGV[i * 4 + 1], ARGV[i * 4 + 2], ARGV[i * 4 + 3], ARGV[i * 4 + 4]
  local expire_at = ''
  if ttl ~= '' then
    expire_at = secs(now + tonumber(ttl))
  end
  if delay ~= '' and tonumber(delay) > 0 then
    redis.call('ZADD', delayed, now + tonumber(delay), nonce .. '|' .. expire_at .. '|' .. data)
    out[#out + 1] = ''
  else
    local id = redis.call('XADD', stream, '*', 'data', data)
    if expire_at ~= '' then
      redis.call('ZADD', expiry, expire_at, id)
    end
    out[#out + 1] = id
  end
end
return out

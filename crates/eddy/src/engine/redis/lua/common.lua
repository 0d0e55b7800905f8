-- Shared helpers, prepended to every script that needs them.

-- The server's clock in epoch milliseconds: TTLs and delays never trust a
-- client's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Epoch milliseconds as LeanMQ's float seconds.
local function secs(ms)
  return string.format('%.3f', ms / 1000)
end

-- Fail before any write if a key holds another type than expected.
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE key ' .. key .. ' holds a ' .. t .. ', eddy expects a ' .. want})
  end
end

-- Acknowledge, delete and un-index one entry.
local function remove_entry(stream, group, expiry, id)
  redis.call('XACK', stream, group, id)
  redis.call('ZREM', expiry, id)
  return redis.call('XDEL', stream, id)
end

-- A queue's stream is gone but its metadata is there (someone DEL'd it):
-- writing to it would create a stream without the group, which no reader
-- can read. Sends fail; the queue must be recreated.
local function no_stream(stream)
  return 'EDDY_NOSTREAM ' .. stream
end

-- A retry due later than the visibility timeout waits pending, as its
-- consumer left it, with a marker in the delayed set for that delivery
-- (park.lua): "eddy-retry-later||<id>|<delivery count>", scored by its due
-- time. Claims pass over the entry until then (claim.lua). No delayed
-- send's member starts so: theirs start with a nonce of hex digits.
local RETRY_TAG = 'eddy-retry-later||'

local function retry_marker(id, count)
  return RETRY_TAG .. id .. '|' .. count
end

-- Move due delayed entries into the stream, and drop the markers of
-- parked retries that are due. A delayed send's member is
-- "<16-char nonce>|<expire-at seconds or empty>|<data>".
-- A stream deleted by hand is not recreated: its delayed entries wait
-- until the queue is.
-- Returns the next due time in ms, or -1.
local function promote(stream, expiry, delayed, now)
  if redis.call('EXISTS', delayed) == 0 or redis.call('EXISTS', stream) == 0 then
    return -1
  end
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
  -- Due markers go last: their entries are claimable now (or were settled
  -- meanwhile), and an XADD must stay the first write, which Redis refuses
  -- when out of memory.
  local markers = {}
  for _, m in ipairs(due) do
    if string.sub(m, 1, #RETRY_TAG) == RETRY_TAG then
      table.insert(markers, m)
    else
      local bar = string.find(m, '|', 18, true)
      local expire_at = string.sub(m, 18, bar - 1)
      -- Out of memory, Redis refuses a script's first write: leave the
      -- message delayed and let the read go on; try again in 100 ms.
      local ok, id = pcall(redis.call, 'XADD', stream, '*', 'data', string.sub(m, bar + 1))
      if not ok then
        return now + 100
      end
      if expire_at ~= '' then
        redis.call('ZADD', expiry, expire_at, id)
      end
      redis.call('ZREM', delayed, m)
    end
  end
  for _, m in ipairs(markers) do
    redis.call('ZREM', delayed, m)
  end
  local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if nxt[2] then
    return tonumber(nxt[2])
  end
  return -1
end

local function is_expired(expiry, id, now)
  local at = redis.call('ZSCORE', expiry, id)
  return at and tonumber(at) <= now / 1000
end
